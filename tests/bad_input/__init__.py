"""The bad-input table, one module per class of faults (``tests/test_bad_input.py`` runs them).

Each module has ``add_files(f)``, which writes the files its cases need under ``f["root"]``
(beside the shared ones: ``f["model"]`` a tiny BERT, ``f["run"]`` a finished sentiment run
no case may touch, ``f["train"]`` / ``f["dev"]`` good SST-2 files), and ``CASES``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

Files = dict[str, Path]
# (name, arguments from the files, exit code, texts the one-line message must hold)
Case = tuple[str, Callable[[Files], list[str]], int, tuple[str, ...]]


def write(f: Files, name: str, text: str | bytes) -> Path:
    """A file under the table's root folder."""
    path = f["root"] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _areas() -> list[ModuleType]:
    from tests.bad_input import data, models, plugin_promises, recipes, runs

    return [models, recipes, data, runs, plugin_promises]


AREAS = _areas()
