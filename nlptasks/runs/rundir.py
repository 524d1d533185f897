"""Making run directories and writing their files.

A run directory is always new (never an earlier run's), its output folder is checked for
room before anything loads, and every file is written atomically (a temporary name, then a
rename), so an interruption never leaves half a file. ``directory.py`` reads finished runs
back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from nlptasks.data import cache_dir
from nlptasks.errors import RunDirectoryError
from nlptasks.events import strict_json
from nlptasks.recipes import Recipe, TrainConfig, dump_recipe


def new_run_dir(output_dir: str | Path, task: str, recipe: str, exact: bool = False) -> Path:
    """Create a new, empty run directory; never reuse an existing one.

    With ``exact`` the directory is ``output_dir`` itself (``--output-dir``) and must not exist
    yet; otherwise it is ``output_dir/<task>-<recipe>-<timestamp>``, suffixed if taken.
    """
    output_dir = Path(output_dir).expanduser()  # "~/runs" is the home folder's runs
    if exact:
        path = Path(output_dir)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only disk
            raise RunDirectoryError(
                f"Cannot create the folder '{path.parent}' ({exc.strerror}). Choose another "
                f"--output-dir."
            ) from None
        try:
            path.mkdir()
        except FileExistsError:
            raise RunDirectoryError(
                f"Output directory '{path}' already exists; runs never overwrite earlier "
                f"results. Choose a new --output-dir or remove that one."
            ) from None
        return path
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{task}-{_slug(recipe)}-{stamp}"
    for attempt in range(1000):
        path = root / (base if attempt == 0 else f"{base}-{attempt + 1}")
        try:
            path.mkdir()  # atomic: two runs started in the same second get different folders
            return path
        except FileExistsError:
            continue
    raise RunDirectoryError(f"Cannot create a new run directory under '{root}'.")


def check_room(output: str | Path, model_path: str, train: TrainConfig) -> None:
    """Before anything loads: the output folder must be writable and have room for the
    checkpoints and the final model (estimated from the model's files: weights, and twice
    that again for the optimizer's moments, per checkpoint)."""
    folder = Path(output).expanduser().resolve()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(
            f"Cannot write to '{existing}' (the output folder would go there). Choose another "
            f"output_dir (or --output-dir)."
        )
    cache = cache_dir()
    if not os.access(cache, os.W_OK | os.X_OK):
        raise RunDirectoryError(
            f"Cannot write to the cache '{cache}'. Set NLPTASKS_CACHE to a writable folder."
        )
    local = Path(model_path).expanduser()
    if not local.is_dir():
        return  # a Hub model: its size is not known before it is downloaded
    weights = sum(p.stat().st_size for p in local.glob("*") if p.suffix in (".safetensors", ".bin"))
    # last, best, numbered copies and the one being written, each 3x the weights (the
    # optimizer keeps two moments), plus the final model.
    kept = (3 + (train.save_total_limit or 0)) if train.save_checkpoints else 0
    needed = weights * (1 + 3 * kept)
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise RunDirectoryError(
            f"The run needs about {needed / 1e9:.1f} GB in '{existing}' (model and "
            f"checkpoints) but {free / 1e9:.1f} GB are free. Free some space, choose another "
            f"output_dir, or set train.save_checkpoints=false."
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "recipe"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    """Strict JSON: an undefined metric (NaN, infinity) is written as null, which every JSON
    reader accepts (Python's NaN is not JSON)."""
    write_text(path, json.dumps(strict_json(data), indent=2, default=str) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line, atomically."""
    write_text(
        path, "".join(json.dumps(strict_json(row), ensure_ascii=False) + "\n" for row in rows)
    )


def recipe_yaml(recipe: Recipe) -> str:
    """The resolved recipe as the run directory keeps it (re-runnable with ``--recipe``)."""
    return dump_recipe(recipe)
