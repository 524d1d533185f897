"""Which data a run trained and evaluated on: readable names for the card and results.json,
and the identity of an evaluation's data (for local files, their SHA-256)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from nlptasks.recipes import Recipe


def data_source(recipe: Recipe) -> str:
    """A readable dataset name: ``sst2/train.tsv`` for files, else the dataset name. Files a
    task's options name (translation's ``options.source_path``) win, as they do in loading."""
    d = recipe.data
    if files := task_files(recipe, evaluation=False):
        return " + ".join(_short(path) for path in files)
    if d.train_path:
        return _short(Path(d.train_path))
    if d.dataset and d.dataset_config:
        return f"{d.dataset} ({d.dataset_config})"
    return d.dataset or "unknown"


def eval_split_name(recipe: Recipe) -> str:
    d = recipe.data
    if files := task_files(recipe, evaluation=True):
        return " + ".join(path.name for path in files)
    if d.eval_path:
        return Path(d.eval_path).name
    if task_files(recipe, evaluation=False):
        return f"held-out {d.eval_fraction:g} of the training files (seed {d.split_seed})"
    if d.eval_split:
        return d.eval_split
    return f"held-out {d.eval_fraction:g} of {d.train_split} (seed {d.split_seed})"


def eval_data_name(recipe: Recipe) -> str:
    """A readable name of the eval data itself (not of the training data)."""
    d = recipe.data
    if files := task_files(recipe, evaluation=True):
        return " + ".join(_short(path) for path in files)
    if d.eval_path:
        return _short(Path(d.eval_path))
    if not d.eval_split or d.train_path or task_files(recipe, evaluation=False):
        return data_source(recipe)  # held out of the training data (eval_split_name says so)
    return f"{d.dataset} ({d.dataset_config})" if d.dataset_config else d.dataset or "unknown"


def local_data(recipe: Recipe) -> bool:
    """Whether the run's data is local files (not a dataset by name)."""
    d = recipe.data
    return bool(
        task_files(recipe, True) or task_files(recipe, False) or d.eval_path or d.train_path
    )


def eval_identity(recipe: Recipe, examples: int) -> dict[str, Any]:
    """Which data an evaluation scored: name, split, number of examples and, for local files,
    their SHA-256 (the same name can hold other data on another day)."""
    files = task_files(recipe, evaluation=True) or (
        [Path(recipe.data.eval_path)] if recipe.data.eval_path else []
    )
    if not files and not recipe.data.eval_split:  # held out of the training files
        files = train_files(recipe)
    return {
        "name": eval_data_name(recipe),
        "split": eval_split_name(recipe),
        "examples": examples,
        "files": [str(path) for path in files],
        "sha256": files_sha256(files),
    }


def held_out(recipe: Recipe) -> bool:
    """Whether the eval data is held out of the training data (no eval file or split)."""
    return not (
        task_files(recipe, evaluation=True) or recipe.data.eval_path or recipe.data.eval_split
    )


def train_files(recipe: Recipe) -> list[Path]:
    """The local training files (a task's own ``*_path`` options win, as in loading)."""
    return task_files(recipe, evaluation=False) or (
        [Path(recipe.data.train_path)] if recipe.data.train_path else []
    )


def files_sha256(files: list[Path]) -> str | None:
    """One SHA-256 over the bytes of ``files`` in order; None when there are none or one is
    missing (a dataset by name has no bytes of its own to hash)."""
    if not files or not all(path.is_file() for path in files):
        return None
    hasher = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    return hasher.hexdigest()


def task_files(recipe: Recipe, evaluation: bool) -> list[Path]:
    """The data files a task's options name (fields ending in ``_path``; ``eval_*`` ones are
    evaluation data), in declaration order."""
    options = recipe.options
    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return []
    found = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.name.endswith("_path") and f.name.startswith("eval_") == evaluation and value:
            found.append(Path(str(value)))
    return found


def _short(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
