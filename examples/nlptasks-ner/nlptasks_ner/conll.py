"""CoNLL files: one ``token ... tag`` line per word (the tag is the last column), a blank line
between sentences, ``-DOCSTART-`` lines ignored: the CoNLL-2003 layout."""

from __future__ import annotations

import re
from pathlib import Path

import nlptasks

SUFFIXES = (".conll", ".iob", ".iob2", ".bio")
COMMENT = re.compile(r"#\s*[\w-]+\s*=")


def is_conll(path: str | None) -> bool:
    return bool(path) and str(path).lower().endswith(SUFFIXES)


def read_conll(path: str | Path, key: str) -> dict[str, list[list[str]]]:
    """``{"tokens": [...], "ner_tags": [...]}`` with one list per sentence."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise nlptasks.DataError(f"{key}: no file '{path}'. Fix the path.") from None
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []
    for number, line in enumerate([*lines, ""], 1):
        # Tabs and spaces only: a no-break space may be part of a token.
        fields = [f for f in re.split(r"[ \t]+", line.strip(" \t\r\n")) if f]
        if fields and COMMENT.match(line):
            continue  # CoNLL-U style comments: "# sent_id = 1", "# text = ..."
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                tokens.append(words)
                tags.append(labels)
                words, labels = [], []
            continue
        if len(fields) < 2:
            raise nlptasks.DataError(
                f"{path}, line {number}: '{line.strip()}' has a token but no tag. Write "
                f"'TOKEN TAG' (the tag in the last column), one word per line."
            )
        words.append(fields[0])
        labels.append(fields[-1])
    if not tokens:
        raise nlptasks.DataError(f"{path} ({key}) holds no sentence. Check the file.")
    return {"tokens": tokens, "ner_tags": tags}
