"""One run along the flow: recipe -> registry -> data -> task -> trainer -> results.

The CLI and the Python API (``nlptasks.run``) both call :func:`run`, so a run from a notebook
equals a run from the shell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlptasks.events import EventLog, QuietReporter, Reporter
from nlptasks.recipes import Recipe, dump_recipe, load_recipe
from nlptasks.registry import get_registries


@dataclass
class RunResult:
    """Where a run wrote its results, and its final metrics."""

    run_dir: Path | None
    metrics: dict[str, float]
    results: dict[str, Any]


def load_task(name: str) -> Any:
    """An instance of the registered task ``name``."""
    return get_registries().tasks.get(name).load()()


def run(
    task: str,
    recipe: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    output_dir: str | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Fine-tune and evaluate ``task`` with a recipe; write a new run directory."""
    resolved = load_recipe(task, recipe, overrides)
    return run_recipe(resolved, output_dir=output_dir, reporter=reporter)


@dataclass
class PreparedRun:
    """Everything a run needs before training: the task, model, tokenizer and features."""

    task: Any
    model_path: str
    model: Any
    tokenizer: Any
    features: dict[str, Any]
    accelerator: Any


def prepare_run(recipe: Recipe) -> PreparedRun:
    """Resolve the model, load and check the data, build the model, tokenise.

    Everything a user can get wrong fails here, before a run directory exists.
    """
    _quiet_libraries()
    from accelerate.utils import set_seed

    from nlptasks import data, models
    from nlptasks.trainer import make_accelerator

    task = load_task(recipe.task)
    _check_metric_for_best(recipe, task)
    model_path = models.resolve_model(recipe.model)
    splits = task.prepare_data(data.load_splits(recipe.data), recipe)
    set_seed(recipe.train.seed)  # the new head's initialisation is part of the run's seed
    model, tokenizer = task.build_model(model_path, recipe)
    accelerator = make_accelerator(recipe.train)
    with accelerator.main_process_first():
        # The main process tokenises first and fills the cache; the others read it.
        features = {name: task.preprocess(s, tokenizer, recipe) for name, s in splits.items()}
    return PreparedRun(task, model_path, model, tokenizer, features, accelerator)


def run_recipe(
    recipe: Recipe, output_dir: str | None = None, reporter: Reporter | None = None
) -> RunResult:
    """Run an already validated recipe (see :func:`run`)."""
    from nlptasks import results
    from nlptasks.trainer import Trainer

    started = time.time()
    prepared = prepare_run(recipe)
    task, model_path, model = prepared.task, prepared.model_path, prepared.model
    tokenizer, features, accelerator = prepared.tokenizer, prepared.features, prepared.accelerator

    run_name = recipe.run_name or f"{recipe.task}-{recipe.name or 'recipe'}"
    run_dir = _make_run_dir(accelerator, output_dir, recipe)
    main = accelerator.is_main_process
    recipe_yaml = dump_recipe(recipe)
    if main and run_dir is not None:
        (run_dir / "recipe.yaml").write_text(recipe_yaml, encoding="utf-8")
    events = EventLog(
        run_dir / "events.jsonl" if run_dir else None,
        reporter if main else QuietReporter(),
        enabled=main,
    )
    events.emit(
        "run_start",
        task=recipe.task,
        recipe=recipe.name,
        model=recipe.model,
        run_dir=str(run_dir) if run_dir else None,
        train_examples=len(features["train"]),
        eval_examples=len(features["eval"]),
        device=str(accelerator.device),
        num_processes=accelerator.num_processes,
    )
    try:
        trainer = Trainer(
            task,
            model,
            tokenizer,
            recipe.train,
            features["train"],
            features["eval"],
            events=events,
            checkpoint_dir=(run_dir / "checkpoints") if run_dir else None,
            accelerator=accelerator,
        )
        outcome = trainer.train()
        metrics = outcome.metrics or trainer.evaluate()
        summary: dict[str, Any] = {}
        if main and run_dir is not None:
            final = accelerator.unwrap_model(trainer.model)
            final.save_pretrained(run_dir / "model")
            tokenizer.save_pretrained(run_dir / "model")
            summary = {
                "task": recipe.task,
                "recipe": recipe.name,
                "model": recipe.model,
                "model_path": model_path,
                "run_dir": str(run_dir),
                "metrics": {"eval": metrics},
                "train": {
                    "steps": outcome.global_step,
                    "epochs": outcome.epochs,
                    "train_loss": outcome.train_loss,
                    "examples_seen": outcome.examples_seen,
                    "train_seconds": round(outcome.train_seconds, 2),
                    "examples_per_second": round(
                        outcome.examples_seen / max(outcome.train_seconds, 1e-9), 2
                    ),
                    "best_step": outcome.best_step,
                    "stopped_early": outcome.stopped_early,
                    "history": outcome.history,
                },
                "data": {
                    "train_examples": len(features["train"]),
                    "eval_examples": len(features["eval"]),
                    "source": _data_source(recipe),
                },
                "provenance": {
                    **results.provenance(
                        recipe.train.seed,
                        str(accelerator.device),
                        accelerator.num_processes,
                        recipe.train.mixed_precision,
                    ),
                    "started_at": started,
                    "duration_seconds": round(time.time() - started, 2),
                },
            }
            results.write_json(run_dir / "results.json", summary)
            (run_dir / "README.md").write_text(
                results.model_card(
                    run_name=run_name,
                    task=recipe.task,
                    pipeline_tag=task.pipeline_tag,
                    base_model=recipe.model,
                    dataset_name=_data_source(recipe),
                    dataset_split=_eval_split_name(recipe),
                    metrics=metrics,
                    recipe_yaml=recipe_yaml,
                    extra=task.model_card_info(),
                    train_summary={k: v for k, v in summary["train"].items() if k != "history"},
                ),
                encoding="utf-8",
            )
        events.emit("run_end", run_dir=str(run_dir) if run_dir else None, metrics=metrics)
    finally:
        events.close()
    accelerator.wait_for_everyone()
    return RunResult(run_dir, metrics, summary)


def evaluate_model(
    task_name: str,
    model_dir: str,
    recipe: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, float]:
    """Metrics of a trained model on the eval split of a recipe's data.

    The data defaults to the recipe the model was trained with (``recipe.yaml`` next to a run's
    ``model/``), else the task's default recipe; ``overrides`` change it.
    """
    _quiet_libraries()
    from nlptasks import data
    from nlptasks.trainer import Trainer, make_accelerator

    task = load_task(task_name)
    beside = Path(model_dir).parent / "recipe.yaml"
    if recipe is None and beside.is_file():
        recipe = str(beside)
    resolved = load_recipe(task_name, recipe, list(overrides))
    model, tokenizer = task.load_trained(model_dir)
    splits = data.load_splits(resolved.data, need_train=False)
    splits = task.prepare_data(splits, resolved, trained_model=model)
    features = task.preprocess(splits["eval"], tokenizer, resolved)
    trainer = Trainer(
        task,
        model,
        tokenizer,
        resolved.train,
        None,
        features,
        accelerator=make_accelerator(resolved.train),
    )
    trainer.model = trainer.accelerator.prepare(model)
    return trainer.evaluate()


def predict(task_name: str, model_dir: str, inputs: list[Any]) -> list[Any]:
    """Predictions of a trained model for raw inputs."""
    _quiet_libraries()
    task = load_task(task_name)
    model, tokenizer = task.load_trained(model_dir)
    return list(task.predict(model, tokenizer, inputs))


def _check_metric_for_best(recipe: Recipe, task: Any) -> None:
    from nlptasks.errors import ConfigError, did_you_mean

    wanted = recipe.train.metric_for_best
    known = tuple(getattr(task, "metric_names", ()))
    if wanted is not None and known and wanted not in known:
        raise ConfigError(
            recipe.name or "recipe",
            [
                f"'train.metric_for_best' is '{wanted}', which task '{recipe.task}' does not "
                f"report.{did_you_mean(wanted, known)} It reports {', '.join(known)}."
            ],
        )


def _make_run_dir(accelerator: Any, output_dir: str | None, recipe: Recipe) -> Path | None:
    """The main process creates the run directory; the others learn whether that worked,
    so a refusal is the same one-line error everywhere instead of a hang or a crash."""
    from accelerate.utils import broadcast_object_list

    from nlptasks.errors import NlpTasksError
    from nlptasks.results import new_run_dir

    outcome: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            if output_dir is not None:
                path = new_run_dir(output_dir, recipe.task, recipe.name or "recipe", exact=True)
            else:
                path = new_run_dir(recipe.output_dir, recipe.task, recipe.name or "recipe")
            outcome = [("ok", str(path))]
        except NlpTasksError as exc:
            outcome = [("error", str(exc))]
    if accelerator.num_processes > 1:
        broadcast_object_list(outcome, from_process=0)
    status, text = outcome[0]
    if status == "error":
        raise NlpTasksError(text)
    return Path(text) if accelerator.is_main_process else None


def _data_source(recipe: Recipe) -> str:
    """A readable dataset name: ``sst2/train.tsv`` for files, else the dataset name."""
    d = recipe.data
    if d.train_path:
        path = Path(d.train_path)
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    if d.dataset and d.dataset_config:
        return f"{d.dataset} ({d.dataset_config})"
    return d.dataset or "unknown"


def _eval_split_name(recipe: Recipe) -> str:
    d = recipe.data
    if d.eval_path:
        return Path(d.eval_path).name
    if d.eval_split:
        return d.eval_split
    return f"held-out {d.eval_fraction:g} of {d.train_split} (seed {d.split_seed})"


def _quiet_libraries() -> None:
    # Library chatter (new-head warnings, progress bars of datasets) drowns our display.
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
