"""Tokens as a person reads them: sub-word markers become spaces or joins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# WordPiece continues a word with "##"; byte-level BPE starts one with "Ġ" (a space), and
# SentencePiece with "▁"; "Ċ" is a byte-level line break.
_MARKS = (("Ġ", " "), ("▁", " "), ("Ċ", "\n"), ("ĉ", "\t"))


def display_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each id's token, readable: byte-level BPE's ``Ġword`` -> `` word``, SentencePiece's
    ``▁word`` -> `` word``; WordPiece's ``##ing`` stays (the renderers glue it to the word
    before). One string per id, in order: sub-tokens are not merged into words, so
    attributions stay exactly IG's (one per model input)."""
    raw = tokenizer.convert_ids_to_tokens(list(ids))
    return [readable(token) for token in raw]


def readable(token: Any) -> str:
    text = str(token) if token is not None else ""
    for mark, replacement in _MARKS:
        text = text.replace(mark, replacement)
    return text
