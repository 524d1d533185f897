"""Counterfactual swaps: find the identity terms a text mentions and replace them with another
group's, whole words only, keeping the case of each word.

A text counts as a mention of a group when every term of the dimension it contains belongs to
that group; a text that mentions two groups (``he`` and ``she``) is left out, because a swap
in one direction would make it mention only one. Swaps go from whatever group a text
mentions to every other group, so both directions come from real text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from nlptasks.probes.wordlists import Dimension

# After these words a determiner cannot stand: "gave her the book" -> him, not his.
_NOT_A_NOUN = frozenset(
    str.split(
        "the a an to and or but in on at for with from by of that this these those is was are "
        "were be been as if so than then when while because about into onto over under after "
        "before again too very not no"
    )
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class Mention:
    """Which group of a dimension a text mentions, and by which terms."""

    group: str
    terms: tuple[str, ...]


@cache
def _pattern(dimension: Dimension) -> re.Pattern[str]:
    terms = sorted({t for ts in dimension.groups.values() for t in ts}, key=len, reverse=True)
    flags = 0 if dimension.case_sensitive else re.IGNORECASE
    # Lookarounds, not \b: a hyphen joins words ("Christian-Democrat" is not "Christian"),
    # while an apostrophe ends one ("he's" mentions "he").
    return re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, terms)) + r")(?![\w-])", flags)


@cache
def _group_of(dimension: Dimension) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for group, terms in dimension.groups.items():
        for term in terms:
            found.setdefault(_key(dimension, term), set()).add(group)
    return found


def _key(dimension: Dimension, word: str) -> str:
    return word if dimension.case_sensitive else word.lower()


def mention(dimension: Dimension, text: str) -> Mention | None:
    """The one group ``text`` mentions, or None (no term, or terms of several groups)."""
    groups: set[str] = set()
    terms: list[str] = []
    owners = _group_of(dimension)
    for match in _pattern(dimension).finditer(text):
        word = match.group(1)
        groups |= owners.get(_key(dimension, word), set())
        terms.append(word)
    if len(groups) != 1:
        return None
    return Mention(next(iter(groups)), tuple(terms))


def mentions_any(dimension: Dimension, text: str) -> bool:
    """Whether ``text`` holds any term of ``dimension`` (of one group or several)."""
    return _pattern(dimension).search(text) is not None


def swap(dimension: Dimension, text: str, source: str, target: str) -> str:
    """``text`` with each term of group ``source`` replaced by the ``target`` term of the
    same slot, whole words only, in the case of the word replaced."""
    from_terms = dimension.groups[source]
    to_terms = dimension.groups[target]
    kinds = dimension.slot_kinds or ("",) * len(from_terms)

    def replace(match: re.Match[str]) -> str:
        word = match.group(1)
        slots = [i for i, t in enumerate(from_terms) if _key(dimension, t) == _key(dimension, word)]
        if not slots:
            return word  # a term of another group (never, for a text that mentions one)
        slot = _resolve(slots, kinds, _next_word(match.string, match.end()))
        return _same_case(word, to_terms[slot])

    return _pattern(dimension).sub(replace, text)


def swap_record(
    dimension: Dimension,
    record: Mapping[str, str],
    fields: Sequence[str],
    source: str,
    target: str,
) -> dict[str, str]:
    """``record`` with its ``fields`` swapped (the same swap in every field: a question and
    its context keep referring to the same person)."""
    swapped = dict(record)
    for field in fields:
        value = record.get(field)
        if isinstance(value, str):
            swapped[field] = swap(dimension, value, source, target)
    return swapped


def _next_word(text: str, end: int) -> str | None:
    rest = text[end:]
    if not rest[:1].isspace():
        return None  # punctuation (or the end) right after: the word stands alone
    found = _WORD.match(rest.lstrip())
    return found.group(0).lower() if found else None


def _resolve(slots: list[int], kinds: Sequence[str], following: str | None) -> int:
    """Of the slots a term stands in, the one its next word points to: a determiner before
    a noun ("her car" -> his), a pronoun or object elsewhere ("saw her." -> him)."""
    if len(slots) == 1:
        return slots[0]
    noun_follows = following is not None and following not in _NOT_A_NOUN
    for slot in slots:
        if (kinds[slot] == "det") == noun_follows:
            return slot
    return slots[0]


def _same_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement
