"""Datasets for a run: local files, hub ids or plugin loaders, split and capped.

Returns a ``datasets.DatasetDict`` with ``train`` and ``eval`` splits. Everything goes through
``datasets`` so later ``map`` calls are cached by fingerprint between runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlptasks.errors import OFFLINE_HINT, DataError, first_line, hub_offline, hub_unreachable
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
    """Load one local data file by its suffix (csv, tsv, json, jsonl, parquet, txt, raw)."""
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
    _check_has_rows(path, path_text, suffix)
    builder, kwargs = _BUILDERS[suffix]
    try:
        loaded = datasets.load_dataset(
            builder, data_files={"data": str(path.resolve())}, split="data", **kwargs
        )
    except Exception as exc:  # datasets raises many types for unreadable files
        raise DataError(
            f"Cannot read '{path_text}' as {suffix[1:]}: {first_line(exc)}. Check the file's "
            f"format."
        ) from exc
    assert isinstance(loaded, datasets.Dataset)
    return loaded


def _check_has_rows(path: Path, shown: str, suffix: str) -> None:
    """An empty or header-only file, said plainly (datasets' own message is cryptic)."""
    if suffix == ".parquet":
        return
    with path.open("rb") as handle:
        lines = [line for line in (handle.readline() for _ in range(64)) if line.strip()][:2]
    if not lines:
        raise DataError(f"Data file '{shown}' is empty. Point the recipe at a file with rows.")
    if len(lines) == 1 and suffix in (".csv", ".tsv"):
        raise DataError(
            f"Data file '{shown}' has a header row and no data. Point the recipe at a file "
            f"with rows."
        )


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
    dataset: datasets.Dataset, wanted: str | None, candidates: tuple[str, ...], key: str
) -> str:
    """The column to use for ``key``: ``wanted`` if set, else the first candidate present."""
    columns = list(dataset.column_names)
    if wanted is not None:
        if wanted not in columns:
            raise DataError(
                f"Column '{wanted}' ({key}) is not in the data; it has {', '.join(columns)}. "
                f"Set {key}=COLUMN."
            )
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise DataError(
        f"No column for {key} (looked for {', '.join(candidates)}); the data has "
        f"{', '.join(columns)}. Set {key}=COLUMN."
    )


def fingerprint(*parts: Any) -> str:
    """A stable fingerprint for ``Dataset.map(new_fingerprint=...)``.

    datasets hashes the mapped function otherwise, and a fast tokenizer's hash changes after
    use, which would defeat the cache between runs.
    """
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
