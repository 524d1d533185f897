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


def token_style(tokenizer: Any) -> str:
    """How the tokenizer marks words, for the renderers to join tokens for display:
    ``"wordpiece"`` (a word's later pieces start with ``##``), ``"marked"`` (byte-level BPE
    ``Ġ`` or SentencePiece ``▁``: a token carries its own leading space, so tokens join with
    nothing between them) or ``"plain"`` (tokens are separated by a space)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(getattr(backend, "model", None)).__name__
    if kind == "WordPiece":
        return "wordpiece"
    try:
        pieces = [str(t) for t in tokenizer.tokenize("a b c")]
    except Exception:  # a tokenizer that cannot tokenize plain text: no joining
        return "plain"
    if any(p[:1] in ("Ġ", "▁") for p in pieces) or kind in ("BPE", "Unigram"):
        return "marked"
    if any(p.startswith("##") for p in tokenizer.tokenize("unaffordableness")):
        return "wordpiece"
    return "plain"
