"""Parallel text -> ``source`` / ``target`` rows.

Four layouts reach the task:

- **line-aligned files** (``options.source_path`` / ``options.target_path``, as WMT's
  ``newstest2016.en`` / ``newstest2016.ro``): line *i* of one translates line *i* of the
  other, so their line counts must agree;
- **a tsv file** with two columns, source then target, with or without a header row;
- **a ``translation`` column** of ``{lang: text}`` dicts (the Hub's ``wmt16``, jsonl, parquet);
- **flat columns** named by the languages (``en``, ``ro``) or ``source`` / ``target``.

A pair with an empty side teaches nothing and breaks BLEU's alignment: it is skipped and
counted (``options.empty_pairs: skip``, the default, since real corpora such as Europarl have
a few) or is an error naming its line (``error``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import datasets

from nlptasks import DataError
from nlptasks.builtins.translation.languages import LANGUAGE_NAMES

EmptyPairs = Literal["skip", "error"]


def read_lines(path_text: str, key: str) -> list[str]:
    """The lines of a UTF-8 text file (line breaks removed; a byte-order mark, as Windows
    editors write, is not text)."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"{key} '{path_text}' does not exist. Check the path.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{key} '{path_text}' is not UTF-8 text (line {line}, byte offset {exc.start}: "
            f"0x{raw[exc.start]:02x}, {exc.reason}). Save it as UTF-8."
        ) from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def read_parallel(
    source_path: str, target_path: str, keys: tuple[str, str] = ("source", "target")
) -> datasets.Dataset:
    """Line-aligned files as ``source`` / ``target`` rows (with ``line``, from 1); different
    line counts are an error that names both."""
    sources = read_lines(source_path, f"options.{keys[0]}_path")
    targets = read_lines(target_path, f"options.{keys[1]}_path")
    if len(sources) != len(targets):
        raise DataError(
            f"The parallel files are not aligned: '{source_path}' has {len(sources)} lines and "
            f"'{target_path}' has {len(targets)}. Give files whose line i translates line i."
        )
    if not sources:
        raise DataError(f"'{source_path}' is empty. Point the recipe at a file with lines.")
    return datasets.Dataset.from_dict(
        {"source": sources, "target": targets, "line": list(range(1, len(sources) + 1))}
    )


def read_own_source(
    options: Any, train_path: str | None, eval_path: str | None, source: str
) -> datasets.Dataset | None:
    """The rows of one source (``train`` or ``eval``) from files the core's loaders do not
    read: the line-aligned files the options name, or a two-column tsv data file (one with
    columns of its own, or named by the options, is the core's to read); else None."""
    if source == "train":
        files, path, key = (options.source_path, options.target_path), train_path, "data.train_path"
        keys = ("source", "target")
    else:
        files = (options.eval_source_path, options.eval_target_path)
        path, key, keys = eval_path, "data.eval_path", ("eval_source", "eval_target")
    if files[0] and files[1]:
        return read_parallel(files[0], files[1], keys)
    named = options.source_column or options.target_column
    if path and path.lower().endswith(".tsv") and not named and tsv_columns(path) == 2:
        return read_tsv(
            path, key, (options.source_lang or "", "source"), (options.target_lang or "", "target")
        )
    return None


def tsv_columns(path_text: str) -> int:
    """How many tab-separated columns the first line of a file has (0 when it is empty)."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline().rstrip("\r\n")
    return len(first.split("\t")) if first else 0


def read_tsv(
    path_text: str, key: str, source_names: Sequence[str], target_names: Sequence[str]
) -> datasets.Dataset:
    """A two-column tsv as rows: source then target, or, when the first row is a header
    naming the columns (``source_names`` / ``target_names``, e.g. ``en`` / ``ro``), in the
    order the header says."""
    lines = read_lines(path_text, key)
    order = (0, 1)
    sources, targets, numbers = [], [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            sources.append("")  # an empty pair: counted or refused like any other
            targets.append("")
            numbers.append(number)
            continue
        cells = line.rstrip("\r").split("\t")
        if len(cells) != 2:
            raise DataError(
                f"'{path_text}' line {number} has {len(cells)} tab-separated columns, not 2 "
                f"(source, target). Fix the line."
            )
        if number == 1:
            names = [c.strip().lower() for c in cells]
            header = _header_order(names, source_names, target_names)
            if header is not None:
                order = header
                continue
            _refuse_other_languages(path_text, cells, source_names[0], target_names[0])
        sources.append(cells[order[0]])
        targets.append(cells[order[1]])
        numbers.append(number)
    if not sources:
        raise DataError(f"'{path_text}' has no pairs. Point the recipe at a file with rows.")
    return datasets.Dataset.from_dict({"source": sources, "target": targets, "line": numbers})


def _refuse_other_languages(path_text: str, cells: list[str], source: str, target: str) -> None:
    """A header row that names two languages, not the recipe's pair (it would be read as a
    pair of texts, and the file translates another pair).

    Names and locale codes (German, de_DE, deu_Latn) are a header. Bare codes are short words
    too ("it" / "es" is an English-Spanish pair): they are a header only when one names the
    recipe's source language, or its target in the source column; else the row is data.
    """
    if not (source and target):
        return
    found = [_language_of(cell) for cell in cells]
    if None in found:
        return
    bare = [cell.strip().lower() in LANGUAGE_NAMES for cell in cells]
    base_source, base_target = _language_of(source), _language_of(target)
    if any(bare) and not (found[0] in (base_source, base_target) or found[1] == base_source):
        return
    raise DataError(
        f"'{path_text}' line 1 names the languages {cells[0].strip()} and "
        f"{cells[1].strip()}, but the recipe translates {source} to {target}. Set "
        f"options.source_lang / options.target_lang to the file's languages, or use a "
        f"file of that pair."
    )


def _language_of(cell: str) -> str | None:
    """The language a header cell names (en, English, en_XX, eng_Latn), as its code in
    lower case (two letters where the code has them), or None."""
    text = cell.strip()
    lowered = text.lower()
    if lowered in LANGUAGE_NAMES:
        return lowered
    by_name = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
    if lowered in by_name:
        return by_name[lowered]
    if re.fullmatch(r"[a-z]{2,3}_[a-z]{2,4}", lowered):  # en_XX, eng_Latn (any case)
        return lowered.split("_")[0]
    return None


def _header_order(
    names: list[str], source_names: Sequence[str], target_names: Sequence[str]
) -> tuple[int, int] | None:
    """(source column, target column) when ``names`` is a header row, else None: the
    words ``source`` / ``target``, or the recipe's languages by code, name or locale code."""
    sources = {n.lower() for n in source_names} | {_language_of(n) for n in source_names}
    targets = {n.lower() for n in target_names} | {_language_of(n) for n in target_names}
    sources.discard(None)
    targets.discard(None)
    cells = [{name, _language_of(name)} - {None} for name in names]
    if cells[0] & sources and cells[1] & targets:
        return (0, 1)
    if cells[0] & targets and cells[1] & sources:
        return (1, 0)
    return None


def to_pairs(
    split: datasets.Dataset,
    source_lang: str,
    target_lang: str,
    columns: tuple[str | None, str | None],
    where: str,
) -> datasets.Dataset:
    """``source`` / ``target`` columns from any of the layouts (see the module's doc)."""
    names = set(split.column_names)
    source_column, target_column = columns
    if source_column or target_column:
        for key, column in (
            ("options.source_column", source_column),
            ("options.target_column", target_column),
        ):
            if not column or column not in names:
                raise DataError(
                    f"{key} is '{column}', which the {where} data does not have (it has "
                    f"{', '.join(sorted(names))}). Set both options.source_column and "
                    f"options.target_column to columns it has."
                )
        assert source_column and target_column
        return _select(split, source_column, target_column)
    if {"source", "target"} <= names:
        return split
    if "translation" in names:
        # One batch read: iterating a column reads it row by row (17 s for WMT16's 600k).
        translations = split.select_columns(["translation"])[:]["translation"]
        _check_translations(translations, source_lang, target_lang, where)
        # A pair without one of the languages has an empty side: drop_empty skips it (and
        # counts it) or refuses it, as options.empty_pairs says.
        pairs = split.map(
            lambda row: {
                "source": row["translation"].get(source_lang) or "",
                "target": row["translation"].get(target_lang) or "",
            },
            remove_columns=["translation"],
        )
        return pairs
    if {source_lang, target_lang} <= names:
        return _select(split, source_lang, target_lang)
    raise DataError(
        f"The {where} data has no parallel text: looked for a 'translation' column, columns "
        f"'{source_lang}' and '{target_lang}', or 'source' and 'target'; it has "
        f"{', '.join(sorted(names))}. Set options.source_column and options.target_column."
    )


def _check_translations(
    translations: Sequence[Any], source_lang: str, target_lang: str, where: str
) -> None:
    """Every row a ``{language: text}`` dict, and each language in some of them (a file of
    another pair is refused; a row without one of them is an empty pair)."""
    have: set[str] = set()
    for number, pair in enumerate(translations, 1):
        if not isinstance(pair, Mapping):
            raise DataError(
                f"Row {number} of the {where} data's 'translation' column holds "
                f"{type(pair).__name__ if pair is not None else 'null'}, not a "
                f"{{language: text}} dict. Write rows as "
                f'{{"translation": {{"{source_lang}": ..., "{target_lang}": ...}}}}.'
            )
        have.update(lang for lang, text in pair.items() if text is not None)
    missing = [lang for lang in (source_lang, target_lang) if lang not in have]
    if missing:
        raise DataError(
            f"The {where} data's translations have no '{missing[0]}' text (they have "
            f"{', '.join(sorted(have)) or 'none'}). Set options.source_lang / "
            f"options.target_lang to languages it has, or use a file of that pair."
        )


def _select(split: datasets.Dataset, source: str, target: str) -> datasets.Dataset:
    renamed = {k: v for k, v in ((source, "source"), (target, "target")) if k != v}
    clashes = [v for v in renamed.values() if v in split.column_names and v not in renamed]
    if clashes:
        split = split.remove_columns(clashes)
    return split.rename_columns(renamed)


def drop_empty(split: datasets.Dataset, policy: EmptyPairs, where: str) -> datasets.Dataset:
    """The pairs whose sides both hold text; empty ones are skipped and counted, or refused
    (``policy='error'``), naming the first one's line (or row)."""
    sources, targets = split["source"], split["target"]
    lines = split["line"] if "line" in split.column_names else None
    bad = [i for i, (s, t) in enumerate(zip(sources, targets, strict=True)) if not _text(s, t)]
    if not bad:
        return split
    first = bad[0]
    place = f"line {lines[first]}" if lines is not None else f"row {first + 1}"
    if policy == "error":
        side = "source" if not _text(sources[first], "x") else "target"
        raise DataError(
            f"The {where} data's {place} has an empty {side}. Remove the pair, or set "
            f"options.empty_pairs=skip to skip such pairs (they are counted)."
        )
    warnings.warn(
        f"Skipped {len(bad)} of {len(split)} {where} pairs with an empty side (the first at "
        f"{place}; options.empty_pairs=skip).",
        stacklevel=2,
    )
    bad_set = set(bad)
    return split.select([i for i in range(len(split)) if i not in bad_set])


def _text(*values: Any) -> bool:
    return all(isinstance(v, str) and v.strip() for v in values)
