"""nlptasks: fine-tune, evaluate, compare and use transformer models; every task is a plugin.

The public API for users and plugin authors. Importing it stays light (no torch): heavy
modules load when a run starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nlptasks.data import cache_dir, fingerprint, load_file, resolve_column
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
from nlptasks.models import load_pretrained, position_limit, resolve_model, tokenizer_digest
from nlptasks.plugins.hookspecs import hookimpl, hookspec
from nlptasks.recipes import (
    DataConfig,
    GenerationConfig,
    NoOptions,
    Recipe,
    TrainConfig,
    build_dataclass,
    load_recipe,
    register_recipe_folder,
)
from nlptasks.task import (
    Batch,
    Collates,
    EvalContext,
    Explains,
    Generates,
    MetricSpec,
    Outputs,
    ReadsSources,
    Record,
    Scores,
    Step,
    Task,
    TaskInfo,
    WritesSamples,
)
from nlptasks.version import __version__

if TYPE_CHECKING:
    from nlptasks.batching import (
        PAD_INDEX,
        collate_for,
        concat_padded,
        length_sorted_batches,
        pad_features,
        predict_batches,
    )
    from nlptasks.evaluation.adapter import StatisticsMetric
    from nlptasks.evaluation.heads import unwrapped
    from nlptasks.events import Reporter
    from nlptasks.generating import (
        generate_texts,
        generation_kwargs,
        render_chat,
        sampling_seed,
        seeded,
    )
    from nlptasks.runner import EvalResult, RunResult
    from nlptasks.serving import serve

# Names whose modules import torch: loaded on first use, so `import nlptasks` (and so
# `nlptasks --help`) stays light.
_LAZY = {
    "PAD_INDEX": "nlptasks.batching",
    "collate_for": "nlptasks.batching",
    "concat_padded": "nlptasks.batching",
    "length_sorted_batches": "nlptasks.batching",
    "pad_features": "nlptasks.batching",
    "predict_batches": "nlptasks.batching",
    "generate_texts": "nlptasks.generating",
    "generation_kwargs": "nlptasks.generating",
    "render_chat": "nlptasks.generating",
    "sampling_seed": "nlptasks.generating",
    "seeded": "nlptasks.generating",
    "StatisticsMetric": "nlptasks.evaluation.adapter",
    "unwrapped": "nlptasks.evaluation.heads",
    "EvalResult": "nlptasks.runner",
    "RunResult": "nlptasks.runner",
    "serve": "nlptasks.serving",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nlptasks' has no attribute '{name}'")


__all__ = [
    "Batch",
    "Outputs",
    "Record",
    "PAD_INDEX",
    "Collates",
    "ConfigError",
    "DataConfig",
    "DataError",
    "DuplicateNameError",
    "EvalContext",
    "EvalResult",
    "Explains",
    "GenerationConfig",
    "Generates",
    "MetricSpec",
    "ModelError",
    "NlpTasksError",
    "NoOptions",
    "PluginError",
    "ReadsSources",
    "Recipe",
    "RunDirectoryError",
    "RunInterrupted",
    "RunResult",
    "Scores",
    "StatisticsMetric",
    "Step",
    "Task",
    "TaskInfo",
    "TrainConfig",
    "UnknownNameError",
    "WritesSamples",
    "__version__",
    "build_dataclass",
    "cache_dir",
    "collate_for",
    "concat_padded",
    "evaluate",
    "fingerprint",
    "generate_texts",
    "generation_kwargs",
    "render_chat",
    "hookimpl",
    "hookspec",
    "length_sorted_batches",
    "load_file",
    "load_pretrained",
    "load_recipe",
    "pad_features",
    "position_limit",
    "predict",
    "predict_batches",
    "register_recipe_folder",
    "resolve_column",
    "resolve_model",
    "run",
    "sampling_seed",
    "seeded",
    "serve",
    "tokenizer_digest",
    "unwrapped",
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


def evaluate(task: str, model_dir: str, recipe: str | None = None, *overrides: str) -> EvalResult:
    """Evaluate a trained model, exactly like ``nlptasks eval``; returns an ``EvalResult``
    (``metrics``, ``num_examples``, the resolved ``recipe``, ``mixed_precision``).

    The data is the model's own run recipe's unless ``recipe`` or ``overrides`` say otherwise.
    Example: ``nlptasks.evaluate("sentiment", "runs/RUN/model", None, "data.eval_path=dev.tsv")``.
    """
    from nlptasks.runner import evaluate_model

    return evaluate_model(task, model_dir, recipe, list(overrides))


def predict(
    task: str,
    model_dir: str,
    records: Sequence[Mapping[str, Any] | str],
    *,
    batch_size: int | None = None,
    mixed_precision: str | None = None,
    overrides: Sequence[str] = (),
    explain: bool = False,
) -> list[dict[str, Any]]:
    """Predictions of a trained model, exactly like ``nlptasks predict``: one dict per record,
    in input order. Records hold the task's input fields (``{"text": ...}`` for sentiment; a
    plain string is fine for a task with one field). ``overrides`` change the model's recipe
    like ``--set`` (``["options.null_score_diff_threshold=1.5"]``).

    ``explain=True`` adds each prediction's ``explanation`` (token attributions; a task
    that implements ``Explains``, and captum: ``pip install 'nlptasks[explain]'``).

    Example: ``nlptasks.predict("sentiment", "runs/RUN/model", ["A gripping film."])``.
    """
    from nlptasks.runner import predict as _predict

    return _predict(
        task, model_dir, records, batch_size, mixed_precision, overrides, explain=explain
    )
