"""Datasets for a run: local files, hub ids or plugin loaders, split and capped.

Returns a ``datasets.DatasetDict`` with ``train`` and ``eval`` splits. Everything goes through
``datasets`` so later ``map`` calls are cached by fingerprint between runs.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlptasks.errors import OFFLINE_HINT, DataError, first_line, hub_offline, hub_unreachable
from nlptasks.jsonl import JsonLineError, json_lines
from nlptasks.plugins.registry import get_registries

if TYPE_CHECKING:
    import datasets

    from nlptasks.recipes import DataConfig

# File suffix -> (datasets builder, extra builder arguments).
_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    # GLUE-style TSV files have unquoted text with stray quote characters: QUOTE_NONE (3).
    ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
    # Plain text keeps its line breaks: language models learn them (the rows are lines).
    ".txt": ("text", {"keep_linebreaks": True}),
    ".raw": ("text", {"keep_linebreaks": True}),  # WikiText's wiki.*.raw files
}


def cache_dir() -> Path:
    """nlptasks' own cache (converted models, prepared plugin datasets)."""
    root = os.environ.get("NLPTASKS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nlptasks"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


ReadSource = Callable[[str, Callable[[], "datasets.Dataset | None"]], "datasets.Dataset | None"]
"""A task's ``read_source`` bound to its recipe: ``(source, load) -> rows or None``."""


def load_splits(
    config: DataConfig,
    need_train: bool = True,
    read_source: ReadSource | None = None,
) -> datasets.DatasetDict:
    """Load the ``train`` and ``eval`` splits the recipe's data section describes.

    With ``need_train=False`` (evaluation only) the train split is loaded only when the eval
    split must be held out of it. ``read_source`` (a task's, ``ReadsSources``) gives the rows
    of each source (``train`` or ``eval``), one per example, from what the data section holds
    for it (``load()``) or from files only the task knows; it runs before eval data is held
    out and sizes are capped.
    """
    import datasets

    def read(source: str, load: Callable[[], datasets.Dataset | None]) -> datasets.Dataset | None:
        return read_source(source, load) if read_source is not None else load()

    # An eval file wins over every other eval source, whatever the training data is.
    evaluation = read("eval", lambda: load_file(config.eval_path) if config.eval_path else None)
    eval_given = evaluation is not None
    train = None
    if need_train or evaluation is None:
        # A named dataset holds both splits: loading the train source may find the eval one.
        found: dict[str, datasets.Dataset | None] = {}

        def load_train() -> datasets.Dataset | None:
            found["train"], found["eval"] = _load_train_source(config, evaluation, need_train)
            return found["train"]

        train = read("train", load_train)
        if not eval_given and found.get("eval") is not None:
            evaluation = read("eval", lambda: found["eval"])

    if evaluation is None:
        assert train is not None
        _check_not_empty(train, "training data")
        _check_room_to_hold_out(len(train), config.eval_fraction)
        # A fixed seed keeps the held-out split identical across runs and for `nlptasks eval`.
        # The lines of a text file are in order (one text): its tail is held out, not random
        # lines torn from their paragraphs.
        ordered = str(config.train_path or "").lower().endswith((".txt", ".raw"))
        held = train.train_test_split(
            test_size=config.eval_fraction,
            seed=None if ordered else config.split_seed,
            shuffle=not ordered,
        )
        train, evaluation = held["train"], held["test"]

    splits = {}
    if train is not None and need_train:
        if config.max_train_examples is not None:
            train = train.select(range(min(config.max_train_examples, len(train))))
        _check_not_empty(train, "training data")
        splits["train"] = train
    if config.max_eval_examples is not None:
        evaluation = evaluation.select(range(min(config.max_eval_examples, len(evaluation))))
    _check_not_empty(evaluation, "evaluation data")
    splits["eval"] = evaluation
    return datasets.DatasetDict(splits)


def _check_room_to_hold_out(rows: int, fraction: float) -> None:
    """Enough rows to hold out an eval split and keep one to train on (datasets' own error
    names sklearn's parameters, not the recipe's)."""
    # The sizes train_test_split computes.
    held_out = math.ceil(fraction * rows)
    kept = math.floor((1 - fraction) * rows)
    if held_out >= 1 and kept >= 1:
        return
    shown = f"{rows} row{'s' if rows != 1 else ''}"
    raise DataError(
        f"The training data has {shown}: too few to hold out an eval split "
        f"(data.eval_fraction={fraction:g}) and keep rows to train on. Give an eval file "
        f"(data.eval_path=FILE), or training data with more rows."
    )


def _load_train_source(
    config: DataConfig, evaluation: datasets.Dataset | None, need_train: bool
) -> tuple[datasets.Dataset | None, datasets.Dataset | None]:
    """The train split from a file or a named dataset, and its eval split if it names one."""
    train = None
    if config.train_path:
        train = load_file(config.train_path)
    elif config.dataset:
        loaded = _load_named(config)
        train = loaded.get(config.train_split)
        if evaluation is None and config.eval_split:
            if config.eval_split not in loaded:
                raise DataError(
                    f"Dataset '{config.dataset}' has no split '{config.eval_split}' (it has "
                    f"{', '.join(loaded)}). Set data.eval_split to one of them."
                )
            evaluation = loaded[config.eval_split]
        if train is None and (need_train or evaluation is None):
            raise DataError(
                f"Dataset '{config.dataset}' has no split '{config.train_split}' (it has "
                f"{', '.join(loaded)}). Set data.train_split to one of them."
            )
    else:
        raise DataError(
            "The recipe names no data. Set data.train_path=FILE (and data.eval_path=FILE) "
            "or data.dataset=NAME (see 'nlptasks list datasets')."
        )
    return train, evaluation


def load_file(path_text: str) -> datasets.Dataset:
    """Load one local data file by its suffix (csv, tsv, json, jsonl, parquet, txt, raw).

    A file that cannot be read is a DataError naming the file, the line (or byte) where it
    can, and the cause; a csv file whose rows hold several lines is checked for a stray quote
    that joined rows (see :func:`_check_rows_whole`).
    """
    import datasets

    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"Data file '{path_text}' does not exist. Check the path.")
    suffix = path.suffix.lower()
    if suffix not in _BUILDERS:
        raise DataError(
            f"Data file '{path_text}' has an unsupported type '{suffix or 'none'}'. Use one of "
            f"{', '.join(sorted(_BUILDERS))}."
        )
    if suffix == ".parquet":
        _check_parquet(path, path_text)
    else:
        _check_has_rows(path, path_text, suffix)
        # pyarrow's JSON reader keeps invalid UTF-8 in its strings (they fail much later,
        # in a tokenizer or an Arrow kernel): every text file is checked before it is read.
        _check_utf8(path, path_text)
    builder, kwargs = _BUILDERS[suffix]
    try:
        loaded = datasets.load_dataset(
            builder, data_files={"data": str(path.resolve())}, split="data", **kwargs
        )
    except Exception as exc:  # datasets raises many types for unreadable files
        raise DataError(_why_unreadable(exc, path, path_text, suffix)) from exc
    assert isinstance(loaded, datasets.Dataset)
    if suffix == ".csv":
        _check_rows_whole(path, path_text, len(loaded))
    return loaded


def _check_has_rows(path: Path, shown: str, suffix: str) -> None:
    """An empty or header-only file, said plainly (datasets' own message is cryptic)."""
    with path.open("rb") as handle:
        lines = [line for line in (handle.readline() for _ in range(64)) if line.strip()][:2]
    if not lines:
        raise DataError(f"Data file '{shown}' is empty. Point the recipe at a file with rows.")
    if len(lines) == 1 and suffix in (".csv", ".tsv"):
        raise DataError(
            f"Data file '{shown}' has a header row and no data. Point the recipe at a file "
            f"with rows."
        )


def _check_parquet(path: Path, shown: str) -> None:
    """A parquet file that is empty, is another format under a parquet name, or has no rows."""
    import pyarrow.parquet as pq

    size = path.stat().st_size
    if size == 0:
        raise DataError(f"Data file '{shown}' is empty. Point the recipe at a file with rows.")
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(max(size - 4, 0))
        tail = handle.read(4)
    if head != b"PAR1" or tail != b"PAR1":
        start = head.decode("ascii", "replace") if head.isascii() else head.hex()
        raise DataError(
            f"Cannot read '{shown}' as parquet: it is not a parquet file (a parquet file "
            f"starts and ends with 'PAR1'; this one starts with {start!r}). Save the data as "
            f"parquet, or give the file the suffix of its format (.csv, .jsonl, ...)."
        )
    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow: ArrowInvalid, OSError for a torn footer
        raise DataError(
            f"Cannot read '{shown}' as parquet: {first_line(exc)}. The file is damaged; write "
            f"it again."
        ) from exc
    if metadata.num_rows == 0 or metadata.num_columns == 0:
        raise DataError(
            f"Data file '{shown}' has no rows (a parquet file with "
            f"{metadata.num_columns} column{'s' if metadata.num_columns != 1 else ''} and 0 "
            f"rows). Point the recipe at a file with rows."
        )


def _check_utf8(path: Path, shown: str) -> None:
    """The first byte that is not UTF-8, with its offset and line, in a DataError."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1  # bytes and line breaks before the current chunk
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(1 << 22)
            pending = len(decoder.getstate()[0])  # an unfinished character from before
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # exc.object is the unfinished character's bytes followed by this chunk.
                where = offset - pending + exc.start
                line = lines + exc.object[: exc.start].count(b"\n")
                byte = exc.object[exc.start]
                raise DataError(
                    f"Cannot read '{shown}': it is not UTF-8 (line {line}, byte offset "
                    f"{where}: 0x{byte:02x}, {exc.reason}). Save it as UTF-8."
                ) from None
            if not chunk:
                return
            offset += len(chunk)
            lines += chunk.count(b"\n")


def _why_unreadable(exc: BaseException, path: Path, shown: str, suffix: str) -> str:
    """What is wrong with a file datasets could not read, and where: a ragged csv/tsv row,
    an unclosed quote, a broken JSON line; else the library's own reason (the innermost
    one: the outer is "An error occurred while generating the dataset")."""
    kind = suffix[1:]
    found = None
    if suffix in (".csv", ".tsv"):
        found = _csv_problem(exc, path, "\t" if suffix == ".tsv" else ",", suffix == ".tsv")
    elif suffix in (".json", ".jsonl"):
        found = _json_problem(path, suffix == ".jsonl")
    if found is not None:
        return f"Cannot read '{shown}' as {kind}: {found}"
    why = first_line(_innermost(exc))
    return f"Cannot read '{shown}' as {kind}: {why}. Check the file's format."


def _innermost(exc: BaseException) -> BaseException:
    """The exception at the root of a chain (the one that says what broke)."""
    seen = {id(exc)}
    while True:
        cause = exc.__cause__ or exc.__context__
        if cause is None or id(cause) in seen:
            return exc
        seen.add(id(cause))
        exc = cause


def _chain_text(exc: BaseException) -> str:
    texts = [str(exc)]
    while (cause := exc.__cause__ or exc.__context__) is not None and len(texts) < 20:
        texts.append(str(cause))
        exc = cause
    return "\n".join(texts)


def _csv_problem(exc: BaseException, path: Path, delimiter: str, tsv: bool) -> str | None:
    """A ragged row or a quote that never closes, from pandas' message (or a scan)."""
    text = _chain_text(exc)
    if m := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text):
        expected, line, saw = m.groups()
        cells = "tab-separated cells" if tsv else "comma-separated fields"
        fix = (
            "Remove the extra tabs from that line (a tsv cell cannot hold a tab)"
            if tsv
            else 'Put fields that hold commas in quotes ("a, b")'
        )
        return (
            f"line {line} has {saw} {cells} where the header has {expected}. {fix}, or fix "
            f"the line."
        )
    if "EOF inside string" in text or "EOF following" in text:
        line = _unclosed_quote_line(path, delimiter)
        where = f"line {line}" if line else "a line"
        return (
            f'{where} starts a field with a quote (") that is never closed, so every line '
            f'after it would be one field. Double the quote ("") if it is part of the text, '
            f"or close it."
        )
    return None


def _unclosed_quote_line(path: Path, delimiter: str) -> int | None:
    """The line where a quoted field opens that runs to the end of the file."""
    with _no_field_limit(), path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        start = 1
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error:
            return start
    return None


def _json_problem(path: Path, lines: bool) -> str | None:
    """The first line that is not a JSON object (jsonl), or where a json file breaks."""
    if not lines:
        try:
            json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            return (
                f"it is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}). "
                f"Fix the file there (or write one object a line, as .jsonl)."
            )
        return None
    with path.open(encoding="utf-8-sig") as handle:
        try:
            for number, value in json_lines(handle):
                if not isinstance(value, dict):
                    kind = {list: "a list", str: "a string", bool: "true/false"}.get(
                        type(value), "a number" if value is not None else "null"
                    )
                    return (
                        f"line {number} is {kind}, not a JSON object. Write one object a line "
                        f'({{"text": ..., ...}}).'
                    )
        except JsonLineError as bad:
            return (
                f"line {bad.number} is not valid JSON ({bad.error.msg}, column "
                f"{bad.error.colno}). Check the file's format at that line: one JSON object a "
                f"line."
            )
    return None


class _no_field_limit:
    """Python's csv module refuses fields over 128 KB; a data file may hold longer texts."""

    def __enter__(self) -> None:
        self.old = csv.field_size_limit()
        csv.field_size_limit(2**31 - 1)

    def __exit__(self, *exc: object) -> None:
        csv.field_size_limit(self.old)


def _check_rows_whole(path: Path, shown: str, rows: int) -> None:
    """A csv file read as fewer rows than it has lines: a stray quote that joined rows is an
    error naming its lines; a quoted field that really spans lines is said in a warning.

    A quote at the start of a field opens a quoted field, which runs to the next quote: a
    sentence that starts with one (``"Great fun, for all,1``) swallows the rows after it
    without a word from pandas. That next quote is then rarely a closing one (it opens a word,
    ``a "classic" film``), so the record is damaged: text after its closing quote, or another
    number of fields than the header. A well-formed quoted field is never refused, whatever
    its lines look like (a paragraph's middle line may well hold a comma).
    """
    lines_with_text = _line_count(path)
    if rows + 1 >= lines_with_text:
        return  # a header and one line a row: nothing was joined
    records = _csv_records(path)
    header = next(records, None)
    joined = [record for record in records if record[1] > record[0]]
    if header is None or not joined:
        return  # blank lines only
    fields = len(header[2])
    for first, last, cells, raw in joined:
        if len(cells) != fields or _quote_damaged(raw):
            raise DataError(
                f"Cannot read '{shown}' as csv: line {first} starts a field with a quote "
                f'(") that closes only on line {last}, so lines {first}-{last} were read as '
                f"one row ({lines_with_text - 1} lines, {rows} rows). Double the quote "
                f'("") if it is part of the text, or close it on its line.'
            )
    first, last, _, _ = joined[0]
    warnings.warn(
        f"'{shown}': {len(joined)} row(s) hold quoted text of several lines (the first on "
        f"lines {first}-{last}), so its {lines_with_text - 1} lines are {rows} rows. If a "
        f'quote there was meant as text, double it ("").',
        stacklevel=3,
    )


def _quote_damaged(raw: str) -> bool:
    """A record whose closing quote is followed by more text than a delimiter or the line's
    end (csv and pandas keep that text silently; strict csv refuses it)."""
    try:
        with _no_field_limit():
            for _ in csv.reader(io.StringIO(raw, newline=""), strict=True):
                pass
    except csv.Error:
        return True
    return False


def _line_count(path: Path) -> int:
    """Lines in a file that hold something (blank ones are no rows)."""
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            count += bool(line.strip())
    return count


def _csv_records(path: Path) -> Iterator[tuple[int, int, list[str], str]]:
    """(first line, last line, cells, raw text) of each record, as pandas splits them.

    The lines are the ones csv reads (LF, CRLF or CR; not str.splitlines' form feeds or
    line separators), so the numbers named are the file's.
    """
    with _no_field_limit(), path.open(encoding="utf-8-sig", newline="") as handle:
        taken: list[str] = []

        def lines() -> Iterator[str]:
            for line in handle:
                taken.append(line)
                yield line

        reader = csv.reader(lines())
        first = 1
        for cells in reader:
            raw = "".join(taken)
            taken.clear()
            if cells:
                yield first, reader.line_num, cells, raw
            first = reader.line_num + 1


def _load_named(config: DataConfig) -> dict[str, datasets.Dataset]:
    import datasets

    name = config.dataset
    assert name is not None
    regs = get_registries()
    if name in regs.datasets:
        loaded = regs.datasets.get(name).load()(config)
    else:
        looks_like_path = os.sep in name and name.count("/") != 1
        if looks_like_path or Path(name).exists():
            raise DataError(
                f"data.dataset '{name}' looks like a file path. Use data.train_path={name}."
            )
        if hub_unreachable():
            raise DataError(
                f"Dataset '{name}' is not a registered dataset and the Hub cannot be reached. "
                f"{OFFLINE_HINT} with local files (data.train_path=FILE data.eval_path=FILE) or "
                f"an offline recipe (see 'nlptasks list datasets')."
            )
        try:
            loaded = datasets.load_dataset(name, config.dataset_config)
        except Exception as exc:
            why = "the Hub is offline (HF_HUB_OFFLINE=1)" if hub_offline() else first_line(exc)
            raise DataError(
                f"Dataset '{name}' is not a registered dataset and could not be loaded from "
                f"the Hub: {why}. Use local files (data.train_path=FILE data.eval_path=FILE) "
                f"or an offline recipe (see 'nlptasks list datasets')."
            ) from exc
    if isinstance(loaded, datasets.Dataset):
        return {config.train_split: loaded}
    return dict(loaded)


def _check_not_empty(dataset: datasets.Dataset, what: str) -> None:
    if len(dataset) == 0:
        raise DataError(f"The {what} is empty. Point the recipe at a file with rows.")


def resolve_column(
    dataset: datasets.Dataset,
    wanted: str | None,
    candidates: tuple[str, ...],
    key: str,
    nested: bool = False,
) -> str:
    """The column to use for ``key``: ``wanted`` if set, else the first candidate present.

    A column holds one value a row (a text, a label): lists, objects or JSON of mixed kinds
    are a DataError unless ``nested`` (a column of chat messages, say).
    """
    columns = list(dataset.column_names)
    if wanted is not None:
        if wanted not in columns:
            raise DataError(
                f"Column '{wanted}' ({key}) is not in the data; it has {', '.join(columns)}. "
                f"Set {key}=COLUMN.{_header_hint(columns)}"
            )
        found = wanted
    else:
        found = next((name for name in candidates if name in columns), "")
        if not found:
            raise DataError(
                f"No column for {key} (looked for {', '.join(candidates)}); the data has "
                f"{', '.join(columns)}. Set {key}=COLUMN.{_header_hint(columns)}"
            )
    if not nested:
        _check_single_values(dataset, found, key)
    return found


def _header_hint(columns: list[str]) -> str:
    """A csv/tsv file without a header row has its first row's values as column names."""
    if any(not name.isidentifier() or name.isdigit() for name in columns):
        return (
            " (Its column names look like values: if the file has no header row, add one "
            "naming the columns.)"
        )
    return ""


def _check_single_values(dataset: datasets.Dataset, column: str, key: str) -> None:
    """A column of lists, objects or mixed JSON, said with its first value (the tasks read
    one value a row; Arrow's own error is a kernel that has no match)."""
    import datasets

    feature = dataset.features.get(column)
    if feature is None or isinstance(feature, (datasets.Value, datasets.ClassLabel)):
        return
    if isinstance(feature, dict):
        holds = "objects"
    elif isinstance(feature, (datasets.List, datasets.LargeList, datasets.Sequence, list)):
        holds = "lists"
    elif isinstance(feature, datasets.Json):
        holds = ""  # the kinds it mixes, below
    else:
        return  # images, audio: a task that reads them knows them
    values = list(dataset[column])  # a column of lists, objects or JSON: read it whole
    kinds = list(dict.fromkeys(_kind(v) for v in values if v is not None))
    # A JSON column mixes kinds in its file: this split may hold one kind of them only.
    holds = holds or f"values of several kinds ({', '.join(kinds)}{', ...' * (len(kinds) < 2)})"
    # The value to show: a list or object first, else one of another kind than the first.
    odd = [v for v in values if _kind(v) not in ("text", "number", "null")]
    odd = odd or [v for v in values if _kind(v) not in (kinds[0], "null")]
    example = ""
    if odd:
        shown = json.dumps(odd[0], default=str)
        example = f", such as {shown if len(shown) <= 40 else shown[:37] + '...'}"
    raise DataError(
        f"Column '{column}' ({key}) holds {holds}{example}: the task reads one text or "
        f"label of one kind a row. Write one value a row, or set {key}=COLUMN."
    )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    names = {str: "text", list: "list", dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def fingerprint(*parts: Any) -> str:
    """A stable fingerprint for ``Dataset.map(new_fingerprint=...)``.

    datasets hashes the mapped function otherwise, and a fast tokenizer's hash changes after
    use, which would defeat the cache between runs.
    """
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
