"""A finished run's results: the final model, results.json (metrics, training summary, data
and provenance), predictions.jsonl, samples.jsonl and the model card; and what a later
``nlptasks eval`` of the run's model adds to it.

The runner passes what it prepared (:class:`FinishedRun`, :class:`RecordedEvaluation` say
which fields are read); nothing here imports the runner.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nlptasks.evaluation import uncertainty
from nlptasks.events import strict_json
from nlptasks.models import carry_license_files
from nlptasks.runs import card
from nlptasks.runs.data_identity import data_source, eval_identity
from nlptasks.runs.directory import IDENTITY_FIELDS, SCHEMA_VERSION, NotARunError, load_run
from nlptasks.runs.lock import card_lock
from nlptasks.runs.provenance import command_line, provenance
from nlptasks.runs.rundir import write_json, write_jsonl, write_text
from nlptasks.task import declared_metrics
from nlptasks.training import checkpoints, lora
from nlptasks.training.distributed import describe

if TYPE_CHECKING:
    from nlptasks.evaluation.evaluator import Evaluation
    from nlptasks.recipes import Recipe
    from nlptasks.training.trainer import TrainResult


class FinishedRun(Protocol):
    """What the results read of a run the runner prepared (its ``PreparedRun``)."""

    @property
    def task(self) -> Any: ...
    @property
    def recipe(self) -> Recipe: ...
    @property
    def model_path(self) -> str: ...
    @property
    def tokenizer(self) -> Any: ...
    @property
    def examples(self) -> Any: ...  # the splits as prepare_data returned them
    @property
    def features(self) -> Mapping[str, Any]: ...
    @property
    def accelerator(self) -> Any: ...


class RecordedEvaluation(Protocol):
    """What :func:`record_evaluation` reads of an ``nlptasks eval`` (the runner's
    ``EvalResult``)."""

    @property
    def metrics(self) -> dict[str, float]: ...
    @property
    def num_examples(self) -> int: ...
    @property
    def model_dir(self) -> str: ...
    @property
    def recipe(self) -> Recipe: ...
    @property
    def signatures(self) -> dict[str, str]: ...
    @property
    def intervals(self) -> dict[str, list[float]]: ...


def write_run(
    run_dir: Path,
    prepared: FinishedRun,
    model: Any,
    outcome: TrainResult,
    evaluation: Evaluation,
    started: float,
) -> dict[str, Any]:
    """Save the final model and write results.json, predictions.jsonl and the model card;
    return the results. ``evaluation`` is the final model's."""
    metrics = evaluation.metrics
    # The model folder appears whole or not at all: written aside, then renamed.
    final, tmp = run_dir / "model", run_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainable, total = lora.trainable_parameters(model)  # before merging LoRA adapters
    adapter = None
    if prepared.recipe.lora.enabled and prepared.recipe.lora.save_adapter:
        adapter = run_dir / ".adapter.tmp"
        shutil.rmtree(adapter, ignore_errors=True)
    # LoRA adapters are merged in: the saved model loads with plain transformers.
    lora.save_merged(model, tmp, adapter)
    prepared.tokenizer.save_pretrained(tmp)
    # The base model's terms (Gemma's) bind the fine-tuned one too: keep them with it.
    carry_license_files(getattr(model, "name_or_path", ""), tmp)
    checkpoints.swap_in(tmp, final)  # replaces a resumed run's earlier, unfinished save
    if adapter is not None:
        checkpoints.swap_in(adapter, run_dir / "adapter")
    summary = build_results(run_dir, prepared, outcome, metrics, started)
    found = uncertainty.of_evaluation(prepared.task, evaluation, prepared.recipe.train)
    summary["confidence_intervals"] = found.summary(prepared.recipe.train)
    if found.predictions:
        write_jsonl(run_dir / "predictions.jsonl", found.predictions)
        summary["predictions"] = "predictions.jsonl"
        # Which examples, as inputs and references: en->ro and ro->en of one file differ.
        summary["data"]["eval"]["examples_sha256"] = examples_sha256(found.predictions)
    if signatures := evaluation.signatures:
        summary["metric_signatures"] = signatures  # exactly how BLEU & co. were computed
    summary["train"]["trainable_parameters"] = trainable
    summary["train"]["parameters"] = total
    settings = prepared.recipe.lora
    if settings.enabled:
        summary["train"]["lora"] = {
            "r": settings.r,
            "alpha": settings.alpha,
            "dropout": settings.dropout,
            "target_modules": settings.target_modules or "peft's default for the model",
            "merged_into": "model/",
            "adapter": "adapter/" if settings.save_adapter else None,
        }
    write_text(
        run_dir / "README.md",
        card.run_model_card(prepared.recipe, prepared.task, summary, run_dir / "model"),
    )
    # results.json last: its presence says the run is complete (resume refuses such a run).
    write_json(run_dir / "results.json", summary)
    return summary


def build_results(
    run_dir: Path,
    prepared: FinishedRun,
    outcome: TrainResult,
    metrics: dict[str, float],
    started: float,
) -> dict[str, Any]:
    """The content of results.json: metrics, training summary, data and provenance."""
    recipe, accelerator = prepared.recipe, prepared.accelerator
    train_seconds = max(outcome.train_seconds - outcome.eval_seconds, 1e-9)
    train_features = prepared.features["train"]
    # Tokens seen: features seen times their mean length (padding not counted).
    lengths = train_features["length"] if "length" in train_features.column_names else []
    mean_length = sum(lengths) / len(lengths) if lengths else 0.0
    return {
        "schema_version": SCHEMA_VERSION,
        "task": recipe.task,
        # Who computed the statistics: compare refuses runs whose statistics differ.
        "task_plugin": task_plugin(recipe.task),
        "recipe": recipe.name,
        "model": recipe.model,
        "model_path": prepared.model_path,
        "run_dir": str(run_dir),
        "metrics": {"eval": metrics},
        # The task's headline metric (leaderboards rank by it), whatever picked the best
        # checkpoint of this run (train.metric_for_best).
        "main_metric": prepared.task.info.main_metric,
        # Which way is better, so results can be ranked without the task's plugin.
        "metric_directions": {
            name: "higher" if spec.greater_is_better else "lower"
            for name, spec in declared_metrics(prepared.task).items()
        },
        "hyperparameters": {
            "learning_rate": recipe.train.learning_rate,
            "epochs": recipe.train.epochs,
            "max_steps": recipe.train.max_steps,
            "batch_size": recipe.train.batch_size,
            "lora": recipe.lora.enabled,
            "seed": recipe.train.seed,
            "metric_for_best": recipe.train.metric_for_best,
        },
        "train": {
            "steps": outcome.global_step,
            "epochs": outcome.epochs,
            "train_loss": outcome.train_loss,
            "examples_seen": outcome.examples_seen,
            "train_seconds": round(outcome.train_seconds, 2),
            "eval_seconds": round(outcome.eval_seconds, 2),
            # Training throughput: features (QA windows) per second of the training loop,
            # evaluations left out (as transformers' train_samples_per_second without eval).
            "examples_per_second": round(
                outcome.examples_seen / max(outcome.train_seconds - outcome.eval_seconds, 1e-9),
                2,
            ),
            # Paid once; with train.compile it is the compilation (issue 20).
            "first_step_seconds": (
                None if outcome.first_step_seconds is None else round(outcome.first_step_seconds, 3)
            ),
            "peak_memory_mb_per_process": outcome.peak_memory_mb,
            "state_memory_mb_per_process": outcome.state_memory_mb,
            "distributed": describe(recipe.distributed)
            if accelerator.num_processes > 1
            else {"strategy": "single"},
            "best_step": outcome.best_step,
            "stopped_early": outcome.stopped_early,
            "history": outcome.history,
        },
        "data": {
            "train_examples": len(prepared.examples["train"]),
            "eval_examples": len(prepared.examples["eval"]),
            # Features differ from examples where one example becomes several (QA windows).
            "train_features": len(prepared.features["train"]),
            "eval_features": len(prepared.features["eval"]),
            "source": data_source(recipe),
            "eval": eval_identity(recipe, len(prepared.examples["eval"])),
        },
        "throughput": {
            "train_examples_per_second": round(outcome.examples_seen / train_seconds, 2),
            "train_tokens_per_second": round(
                outcome.examples_seen * mean_length / train_seconds, 2
            ),
            "eval_seconds": round(outcome.eval_seconds, 2),
        },
        "provenance": {
            **provenance(
                recipe.train.seed,
                str(accelerator.device),
                accelerator.num_processes,
                accelerator.mixed_precision,
                requested_precision=recipe.train.mixed_precision,
            ),
            "started_at": started,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "duration_seconds": round(dt.datetime.now().timestamp() - started, 2),
            "command": command_line(),
        },
    }


def task_plugin(task: str) -> dict[str, str | None]:
    """The plugin that registered ``task``: its name, distribution and version (nlptasks'
    own for a built-in task)."""
    from nlptasks.plugins.manager import plugin_infos
    from nlptasks.plugins.registry import get_registries

    tasks = get_registries().tasks
    plugin = tasks.get(task).plugin if task in tasks else None
    info = next((i for i in plugin_infos() if i.name == plugin), None)
    return {
        "name": plugin,
        "distribution": info.distribution if info else None,
        "version": info.version if info else None,
    }


def examples_sha256(rows: list[dict[str, Any]]) -> str:
    """One SHA-256 over what identifies each scored example (its input and reference fields,
    the ones ``compare`` pairs by), in order."""
    hasher = hashlib.sha256()
    for row in rows:
        identity = {key: row[key] for key in IDENTITY_FIELDS if key in row}
        hasher.update(json.dumps(identity, sort_keys=True, default=str).encode() + b"\n")
    return hasher.hexdigest()


def record_evaluation(task: Any, result: RecordedEvaluation) -> Path | None:
    """``nlptasks eval`` of a run's model adds its results to the run's model card (the
    model-index keeps every evaluation; one of the same data and metric is replaced) and a
    line to the run's ``evaluations.jsonl``. Returns the card updated, if any."""
    folder = Path(result.model_dir)
    # Only RUN/model of a finished run of this task: never a folder of someone else's, and
    # never an exported folder (it is exactly what a hub receives).
    if folder.name != "model":
        return None
    run_dir = folder.parent
    try:
        run = load_run(run_dir)
    except NotARunError:
        return None
    path = run_dir / "README.md"
    if run.task != result.recipe.task or not path.is_file():
        return None
    recipe = result.recipe
    data = card.card_eval_data(recipe, result.num_examples)
    found = card.eval_results(
        recipe.task, task.info.pipeline_tag, data, result.metrics, result.intervals
    )
    # Evaluations of one model may run at once (shared run lock): each reads the card and
    # writes it back with its results added, in turn, so none is lost.
    with card_lock(run_dir):
        write_text(path, str(_card_with(path, found, run, task)))
        _append_evaluation(run_dir, recipe, result)
    return path


def _append_evaluation(run_dir: Path, recipe: Any, result: RecordedEvaluation) -> None:
    line = {
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": eval_identity(recipe, result.num_examples),
        "metrics": result.metrics,
        "confidence_intervals": result.intervals,
        "metric_signatures": result.signatures,
        "command": command_line(),
    }
    with (run_dir / "evaluations.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(strict_json(line)) + "\n")


def _card_with(path: Path, found: list[Any], run: Any, task: Any) -> Any:
    """The run's card with ``found`` added; a card that does not parse (edited by hand, cut
    short) is rebuilt from the run's recipe.yaml and results.json, with a warning: the
    evaluation is never lost to a broken README.md."""
    try:
        return card.add_eval_results(path, found)
    except Exception as exc:  # yaml, ValueError, UnicodeDecodeError: huggingface_hub's many
        from nlptasks.recipes import load_recipe

        warnings.warn(
            f"{path} did not parse as a model card ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc).strip() else 'no detail'}); it was "
            f"rewritten from the run's recipe.yaml and results.json, with this evaluation.",
            stacklevel=3,
        )
        recipe = load_recipe(run.task, str(run.path / "recipe.yaml"))
        rebuilt = path.with_name(f".{path.name}.rebuilt")
        try:
            rebuilt.write_text(
                card.run_model_card(recipe, task, run.results, run.path / "model"), encoding="utf-8"
            )
            return card.add_eval_results(rebuilt, found)
        finally:
            rebuilt.unlink(missing_ok=True)


def write_samples(
    path: Path, before: list[dict[str, Any]] | None, after: list[dict[str, Any]]
) -> None:
    """``samples.jsonl``: per sample, its input and the output before and after fine-tuning
    (``before`` is None for a resumed run)."""
    lines = []
    for i, sample in enumerate(after):
        row = {k: v for k, v in sample.items() if k != "output"}
        row["before"] = before[i].get("output") if before and i < len(before) else None
        row["after"] = sample.get("output")
        lines.append(json.dumps(row, ensure_ascii=False))
    write_text(path, "\n".join(lines) + "\n")
