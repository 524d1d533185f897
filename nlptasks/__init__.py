"""nlptasks: fine-tune, evaluate, compare and use transformer models; every task is a plugin.

The public API for users and plugin authors. Importing it stays light (no torch): heavy
modules load when a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nlptasks.data import cache_dir, fingerprint, resolve_column
from nlptasks.errors import (
    ConfigError,
    DataError,
    DuplicateNameError,
    ModelError,
    NlpTasksError,
    PluginError,
    RunDirectoryError,
    RunInterrupted,
    UnknownNameError,
)
from nlptasks.hookspecs import hookimpl, hookspec
from nlptasks.models import load_pretrained, resolve_model
from nlptasks.recipes import DataConfig, Recipe, TrainConfig, load_recipe
from nlptasks.task import Task

if TYPE_CHECKING:
    from nlptasks.events import Reporter
    from nlptasks.runner import RunResult

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataConfig",
    "DataError",
    "DuplicateNameError",
    "ModelError",
    "NlpTasksError",
    "PluginError",
    "Recipe",
    "RunDirectoryError",
    "RunInterrupted",
    "Task",
    "TrainConfig",
    "UnknownNameError",
    "__version__",
    "cache_dir",
    "fingerprint",
    "hookimpl",
    "hookspec",
    "load_pretrained",
    "load_recipe",
    "resolve_column",
    "resolve_model",
    "run",
]


def run(
    task: str,
    recipe: str | None = None,
    *overrides: str,
    output_dir: str | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Fine-tune and evaluate, exactly like ``nlptasks run``; returns the run's metrics and
    directory. ``reporter`` defaults to none (quiet); pass ``RichReporter()`` for a display.

    Example: ``nlptasks.run("sentiment", "minilm", "train.epochs=1")``.
    """
    from nlptasks.runner import run as _run

    return _run(task, recipe, list(overrides), output_dir=output_dir, reporter=reporter)
