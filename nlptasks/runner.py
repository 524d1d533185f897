"""One run along the flow: recipe -> registry -> data -> task -> trainer -> results; and the
``eval`` and ``predict`` verbs.

``run_recipe`` reads like a table of contents (torchtune's ``recipe_main``): check what can be
checked before loading, prepare (data, model, features), open the run directory, train, take
the final evaluation, write the results. Each step is one function below it.

The CLI and the Python API (``nlptasks.run`` / ``evaluate`` / ``predict``) all call these
functions, so a run from a notebook equals a run from the shell.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from accelerate.utils import broadcast_object_list, set_seed

from nlptasks import data, model_fit, models
from nlptasks.batching import collate_for
from nlptasks.errors import (
    ConfigError,
    DataError,
    NlpTasksError,
    PluginError,
    RunDirectoryError,
    RunInterrupted,
    clip,
    did_you_mean,
    first_line,
)
from nlptasks.evaluation import uncertainty
from nlptasks.evaluation.evaluator import Evaluation, Evaluator
from nlptasks.events import EventLog, QuietReporter, Reporter
from nlptasks.explain import explanation_problems, require_captum
from nlptasks.plugins.registry import load_task
from nlptasks.recipes import (
    GenerationConfig,
    LoraConfig,
    Recipe,
    load_recipe,
    read_yaml,
    with_absolute_paths,
)
from nlptasks.runs import directory, results, rundir, trained_with
from nlptasks.runs import events as run_events
from nlptasks.runs import lock as run_lock
from nlptasks.runs import status as run_status
from nlptasks.task import Explains, ReadsSources, WritesSamples, declared_metrics
from nlptasks.training import checkpoints, lora, precision, tracking
from nlptasks.training.distributed import full_state_dict, is_sharded
from nlptasks.training.tokenise_once import features_once
from nlptasks.training.trainer import StopRequests, Trainer, make_accelerator


@dataclass
class RunResult:
    """Where a run wrote its results, and its final metrics."""

    run_dir: Path | None
    metrics: dict[str, float]
    results: dict[str, Any]


@dataclass
class EvalResult:
    """The metrics of a trained model on a recipe's eval data (``nlptasks eval``)."""

    metrics: dict[str, float]
    num_examples: int
    model_dir: str
    recipe: Recipe
    mixed_precision: str
    main_process: bool = True
    """False on the other processes of a multi-process evaluation (they get the metrics too)."""
    signatures: dict[str, str] = field(default_factory=dict)
    """How metrics were computed (sacreBLEU's signature), by metric name."""
    intervals: dict[str, list[float]] = field(default_factory=dict)
    """95% bootstrap interval ``[low, high]`` of each metric (main process only)."""


def run(
    task: str,
    recipe: str | None = None,
    overrides: Sequence[str] = (),
    output_dir: str | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Fine-tune and evaluate ``task`` with a recipe; write a new run directory."""
    resolved = load_recipe(task, recipe, list(overrides))
    return run_recipe(resolved, output_dir=output_dir, reporter=reporter)


@dataclass
class PreparedRun:
    """Everything a run needs before training: the task, model, data and evaluator."""

    task: Any
    recipe: Recipe
    model_path: str
    model: Any
    tokenizer: Any
    examples: Any
    """The splits as ``prepare_data`` returned them (a ``datasets.DatasetDict``)."""
    features: dict[str, Any]
    accelerator: Any
    evaluator: Any
    collate: Any


def prepare_run(recipe: Recipe) -> PreparedRun:
    """Resolve the model, load and check the data, build the model, tokenise.

    Everything a user can get wrong fails here, before a run directory exists.
    """
    quiet_libraries()
    task = load_task(recipe.task)
    model_path = models.resolve_model(recipe.model)
    model_fit.check_model_fits(task, model_path, "run")  # before data and weights
    splits = data.load_splits(recipe.data, read_source=source_reader(task, recipe))
    splits = task.prepare_data(splits, recipe)
    # After prepare_data: a task's metrics may depend on its options (SQuAD 2.0 adds some).
    _check_metric_for_best(recipe, task)
    set_seed(recipe.train.seed)  # the new head's initialisation is part of the run's seed
    with models.remote_code(recipe.trust_remote_code):
        model, tokenizer = task.build_model(model_path, recipe)
    model_fit.check_built_model(task, model, tokenizer, model_path, "run")
    if recipe.train.attn_implementation:
        _set_attention(model, recipe.train.attn_implementation, recipe)
    if recipe.lora.enabled:
        model = lora.add_adapters(model, recipe.lora, recipe.name or "recipe")
    elif recipe.lora != LoraConfig():
        warnings.warn(
            "The recipe sets lora.* but not lora.enabled=true: training is full fine-tuning.",
            stacklevel=2,
        )
    accelerator = make_accelerator(recipe.train, recipe.distributed)
    features = features_once(
        accelerator,
        splits,
        lambda split: task.preprocess(split, tokenizer, recipe),
        recipe.distributed.data_timeout_minutes,
    )
    collate = collate_for(task, tokenizer)
    evaluator = Evaluator(
        task, tokenizer, recipe, splits["eval"], features["eval"], accelerator, collate
    )
    return PreparedRun(
        task,
        recipe,
        model_path,
        model,
        tokenizer,
        splits,
        features,
        accelerator,
        evaluator,
        collate,
    )


def run_recipe(
    recipe: Recipe,
    output_dir: str | None = None,
    reporter: Reporter | None = None,
    resume_dir: Path | None = None,
) -> RunResult:
    """Run an already validated recipe (see :func:`run`); with ``resume_dir``, continue that
    run directory from its newest whole checkpoint (see :func:`resume`)."""
    started = time.time()
    # The run directory's recipe.yaml must name the same files from any working directory.
    recipe = with_absolute_paths(recipe)
    checkpoint = _check_before_loading(recipe, output_dir, resume_dir)
    prepared = prepare_run(recipe)
    run_dir, lock = _open_run_dir(prepared, output_dir, resume_dir)
    # The run is locked from its first file to its last: no other process writes into it
    # (a resume, an eval's card update) or reads it half-written (an export) meanwhile.
    with lock:
        main = prepared.accelerator.is_main_process
        events = EventLog(
            run_dir / "events.jsonl", reporter if main else QuietReporter(), enabled=main
        )
        trackers = tracking.Trackers.start(prepared.accelerator, prepared.recipe, run_dir)
        if trackers is not None:
            events.observers.append(trackers.handle)
        # The signal handler covers the whole run, the final save included: a signal there
        # lets the (short) save finish, so the run directory is whole either way.
        with StopRequests() as stop:
            try:
                _announce(events, prepared, run_dir, checkpoint)
                trainer = _make_trainer(prepared, events, run_dir)
                trainer.eval_intervals = trackers is not None  # they plot every interval
                # Samples from before fine-tuning (not on a resumed run: its model is trained).
                before = _samples_before(prepared) if main and checkpoint is None else None
                outcome = trainer.train(stop=stop, resume_from=checkpoint)
                evaluation = _final_evaluation(trainer, outcome)
                final = _final_model(prepared, trainer)  # every process: a collective
                summary: dict[str, Any] = {}
                if main:
                    summary = _write_results(
                        prepared, final, outcome, evaluation, run_dir, before, started
                    )
                    run_status.write_status(run_dir, "finished")
                events.emit("run_end", run_dir=str(run_dir), metrics=evaluation.metrics)
            except RunInterrupted as exc:
                if main:  # its own "interrupted" event is written
                    _mark(run_dir, "interrupted", first_line(exc))
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {first_line(exc)}"
                # A full disk may refuse these lines too; the error itself still reaches
                # the user.
                with contextlib.suppress(Exception):
                    events.emit("failed", error=error)
                if main:
                    _mark(run_dir, "failed", error)
                if prepared.accelerator.num_processes > 1 and _lost_a_peer(exc):
                    raise NlpTasksError(_peer_lost_message(prepared, run_dir, exc)) from exc
                raise
            finally:
                events.close()
                if trackers is not None:
                    trackers.finish()
            prepared.accelerator.wait_for_everyone()
    if stop.signal_name is not None:
        # The run is complete: exit 0 (a scheduler must not requeue it), and say so.
        warnings.warn(
            f"{stop.signal_name} arrived while the results were written; the run finished and "
            f"its results are complete in {run_dir}.",
            stacklevel=2,
        )
    return RunResult(run_dir if main else None, evaluation.metrics, summary)


def _lost_a_peer(exc: BaseException) -> bool:
    """Whether a collective failed because another process (or its node) is gone."""
    import torch.distributed as dist

    # gloo reports a peer gone as a RuntimeError from its transport; NCCL's watchdog as a
    # DistNetworkError (or it aborts the process). Other collective errors are bugs.
    if isinstance(exc, (dist.DistNetworkError, dist.DistStoreError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        sign in text
        for sign in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    )


def _peer_lost_message(prepared: PreparedRun, run_dir: Path, exc: BaseException) -> str:
    import os

    processes = prepared.accelerator.num_processes
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
    if per_node < processes:
        how = "the same launch command on every node, with 'resume RUN' for 'run ...'"
    else:
        how = f"torchrun --nproc_per_node {per_node} -m nlptasks.cli resume {run_dir}"
    return (
        f"Process {prepared.accelerator.process_index} lost the others (a process or its node "
        f"stopped: {first_line(exc)}); every process stops, and the last whole checkpoint "
        f"stays. Resume with the same number of processes: {how}"
    )


def _check_before_loading(
    recipe: Recipe, output_dir: str | None, resume_dir: Path | None
) -> Path | None:
    """What fails without loading anything: the precision this machine can run, an output
    folder that is new, room on disk, and (for a resume) a whole checkpoint to resume from,
    which this returns. (The recipe and the command's flags are checked before this.)"""
    precision.resolve(recipe.train.mixed_precision)
    tracking.check_installed(recipe.track.to)
    if resume_dir is None and output_dir is not None and Path(output_dir).expanduser().exists():
        raise RunDirectoryError(
            f"Output directory '{output_dir}' already exists; runs never overwrite earlier "
            f"results. Choose a new --output-dir or remove that one."
        )
    output = resume_dir or (Path(output_dir).parent if output_dir else Path(recipe.output_dir))
    rundir.check_room(output, models.resolve_model(recipe.model), recipe.train)
    if resume_dir is None:
        return None
    checkpoint, _ = checkpoints.find_resumable(resume_dir / "checkpoints")
    return checkpoint


def _open_run_dir(
    prepared: PreparedRun, output_dir: str | None, resume_dir: Path | None
) -> tuple[Path, contextlib.ExitStack[bool | None]]:
    """The run directory, on every process (all take part in checkpoints), and its lock,
    held: a resumed run's own (:func:`resume` holds its lock), or a new one holding the
    resolved recipe, locked before its first file (the main process writes and locks)."""
    held = contextlib.ExitStack()
    if resume_dir is not None:
        if prepared.accelerator.is_main_process:
            run_status.write_status(resume_dir, "running")
        return resume_dir, held
    run_dir = _make_run_dir(prepared.accelerator, output_dir, prepared.recipe)
    if prepared.accelerator.is_main_process:
        with contextlib.ExitStack() as on_failure:
            on_failure.push(held)
            held.enter_context(run_lock.run_lock(run_dir, doing="train in it"))
            run_status.write_status(run_dir, "running")
            rundir.write_text(run_dir / "recipe.yaml", rundir.recipe_yaml(prepared.recipe))
            on_failure.pop_all()
    return run_dir, held


def _mark(run_dir: Path, state: str, error: str) -> None:
    """Record in status.json how the run ended without results, and say the folder stays."""
    step = run_events.last_step(run_dir)
    with contextlib.suppress(OSError):  # a full disk: the error itself still reaches the user
        run_status.write_status(run_dir, state, error=error, step=step)
    if state == "failed":
        warnings.warn(
            f"The run failed; its folder {run_dir} is kept, marked failed in status.json "
            f"(leaderboard skips it, and 'nlptasks resume' says why).",
            stacklevel=3,
        )


def _announce(
    events: EventLog, prepared: PreparedRun, run_dir: Path, checkpoint: Path | None
) -> None:
    """The ``run_start`` event: what is about to be trained, on what, with what data."""
    recipe, accelerator = prepared.recipe, prepared.accelerator
    trainable, total = lora.trainable_parameters(prepared.model)
    events.emit(
        "run_start",
        task=recipe.task,
        recipe=recipe.name,
        model=recipe.model,
        run_dir=str(run_dir),
        train_examples=len(prepared.examples["train"]),
        eval_examples=len(prepared.examples["eval"]),
        train_features=len(prepared.features["train"]),
        eval_features=len(prepared.features["eval"]),
        trainable_parameters=trainable,
        parameters=total,
        device=str(accelerator.device),
        num_processes=accelerator.num_processes,
        mixed_precision=accelerator.mixed_precision,
        resumed_from=str(checkpoint) if checkpoint else None,
        # What the run trains with: a resume of an edited recipe.yaml is refused against it.
        trained_with=trained_with.record(recipe),
    )


def _make_trainer(prepared: PreparedRun, events: EventLog, run_dir: Path) -> Trainer:
    return Trainer(
        prepared.task,
        prepared.model,
        prepared.tokenizer,
        prepared.recipe.train,
        prepared.features["train"],
        prepared.evaluator,
        events=events,
        checkpoint_dir=run_dir / "checkpoints",
        accelerator=prepared.accelerator,
        collate=prepared.collate,
    )


def _samples_before(prepared: PreparedRun) -> list[dict[str, Any]] | None:
    # On the run's device (training would move it there anyway).
    return _samples(prepared, prepared.model.to(prepared.accelerator.device))


def _final_model(prepared: PreparedRun, trainer: Trainer) -> Any:
    """The trained model as a plain transformers model on the main process (None on the
    others). A sharded model's weights are gathered one tensor at a time into the main
    process's CPU memory and loaded into a fresh copy of the recipe's model, so saving,
    samples and the card see an ordinary model."""
    accelerator = prepared.accelerator
    if not is_sharded(accelerator):
        return accelerator.unwrap_model(trainer.model)
    weights = full_state_dict(accelerator, trainer.model)
    model, problem = None, ""
    if weights is not None:
        recipe = prepared.recipe
        with models.remote_code(recipe.trust_remote_code):
            model, _ = prepared.task.build_model(prepared.model_path, recipe)
        outcome = model.load_state_dict(weights, strict=False)
        # Tied weights (the decoder = the embeddings) may be gathered once: not missing.
        tied = set(getattr(model, "_tied_weights_keys", None) or [])
        missing = [k for k in outcome.missing_keys if k not in tied]
        if outcome.unexpected_keys or missing:
            problem = (
                f"The gathered weights do not fit the model (missing {missing[:3]}, "
                f"unexpected {outcome.unexpected_keys[:3]}); the checkpoints/last shards are "
                f"whole: nlptasks consolidate them."
            )
    # Every process learns whether the main one succeeded: none is left waiting.
    [problem] = broadcast_object_list([problem])
    if problem:
        raise NlpTasksError(problem)
    return model


def _write_results(
    prepared: PreparedRun,
    final: Any,
    outcome: Any,
    evaluation: Evaluation,
    run_dir: Path,
    before: list[dict[str, Any]] | None,
    started: float,
) -> dict[str, Any]:
    """Samples, model, card, results.json and predictions.jsonl of the finished run (the
    main process only); ``final`` is the trained model, unwrapped."""
    after = _samples(prepared, final)
    if after:
        results.write_samples(run_dir / "samples.jsonl", before, after)
    return results.write_run(run_dir, prepared, final, outcome, evaluation, started)


def _samples(prepared: PreparedRun, model: Any) -> list[dict[str, Any]] | None:
    """The task's sample outputs (``Task.samples``, optional) of ``model``, generated under
    ``torch.inference_mode`` in the run's precision; None for a task without samples."""
    if not isinstance(prepared.task, WritesSamples):
        return None
    was_training = model.training
    model.eval()
    try:
        with precision.inference(prepared.accelerator.mixed_precision, model):
            return list(prepared.task.samples(model, prepared.tokenizer, prepared.recipe))
    finally:
        if was_training:
            model.train()


def resume(run_dir: str | Path, reporter: Reporter | None = None) -> RunResult:
    """Continue an interrupted run in its own directory, exactly where its newest whole
    checkpoint stopped (model, optimizer, scheduler, random state, position in the data)."""
    folder = Path(run_dir).expanduser()
    recipe_file = folder / "recipe.yaml"
    if not recipe_file.is_file():
        raise NlpTasksError(
            f"'{run_dir}' is not a run directory (it has no recipe.yaml). Pass the folder a run "
            f"printed, e.g. runs/sentiment-minilm-20261129-101500."
        )
    if (folder / "results.json").exists():
        raise NlpTasksError(
            f"Run '{run_dir}' finished already (it has results.json); nothing to resume. Start "
            f"a new run to train more."
        )
    task = read_yaml(recipe_file).get("task")
    if not task:
        raise NlpTasksError(f"{recipe_file} names no task. Start a new run instead.")
    with run_lock.run_lock(folder, doing="resume it"):
        recipe = load_recipe(str(task), str(recipe_file))
        trained_with.check_resume(folder, with_absolute_paths(recipe))
        _say_how_it_ended(folder)
        # status.json says "running" only once the early checks pass (_open_run_dir): a
        # refused resume (no whole checkpoint, missing data) keeps the state the run had.
        try:
            return run_recipe(recipe, reporter=reporter, resume_dir=folder)
        except DataError as exc:
            raise DataError(
                f"{exc} (The path comes from {recipe_file}: if the data moved, edit it there.)"
            ) from exc


def _say_how_it_ended(folder: Path) -> None:
    """A failed run resumes from its newest whole checkpoint, saying what happened; one that
    failed before its first checkpoint is refused with the cause."""
    how = run_status.failure(folder)
    if how is None:
        return
    try:
        checkpoint, state = checkpoints.find_resumable(folder / "checkpoints")
    except NlpTasksError:
        raise NlpTasksError(
            f"Run '{folder}' failed {how} and saved no checkpoint; there is nothing to "
            f"resume. Fix the cause and start a new run."
        ) from None
    warnings.warn(
        f"Run '{folder}' failed {how}. Resuming from its checkpoint {checkpoint.name} (step "
        f"{state['step']}); if the cause is in the recipe, start a new run instead.",
        stacklevel=3,
    )


def source_reader(task: Any, recipe: Recipe) -> data.ReadSource | None:
    """The task's optional ``read_source`` bound to the recipe (files only it can read)."""
    return functools.partial(task.read_source, recipe) if isinstance(task, ReadsSources) else None


def _final_evaluation(trainer: Trainer, outcome: Any) -> Evaluation:
    """The final model's evaluation, generation metrics included: the best checkpoint may
    come from an evaluation that did not generate (``generation.every``), and one from
    before a resume is not held in memory; either way the final model is evaluated again
    (every process decides alike)."""
    evaluation: Evaluation | None = outcome.evaluation
    assert trainer.evaluator is not None  # a run always has eval data
    if evaluation is None or (trainer.evaluator.can_generate and not evaluation.generated):
        return trainer.evaluate(generate=True)
    return evaluation


def evaluate_model(
    task_name: str,
    model_dir: str,
    recipe: str | None = None,
    overrides: Sequence[str] = (),
) -> EvalResult:
    """Metrics of a trained model on the eval split of a recipe's data.

    The data defaults to the recipe the model was trained with (the run's ``recipe.yaml``,
    found from ``RUN/model`` and ``RUN/checkpoints/NAME``), else the task's default recipe;
    ``overrides`` change it.
    """
    quiet_libraries()
    task = load_task(task_name)
    resolved = model_recipe(task_name, model_dir, recipe, overrides)
    run_dir = directory.run_of(model_dir)
    if run_dir is None:
        return _evaluate(task, model_dir, resolved)
    # Shared: evaluations of one model run side by side (each on its own eval set), but not
    # while the run trains. The card update takes its own short lock (results.py).
    writes = Path(model_dir).expanduser().resolve().name == "model"
    doing = "add this evaluation to its card" if writes else "read its checkpoint"
    with run_lock.run_lock(run_dir, exclusive=False, doing=doing):
        trained_with.check_eval_split(run_dir, _results_of(run_dir), with_absolute_paths(resolved))
        return _evaluate(task, model_dir, resolved)


def _results_of(run_dir: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _evaluate(task: Any, model_dir: str, resolved: Recipe) -> EvalResult:
    model_fit.check_model_fits(task, model_dir, "eval")  # before the weights load
    with models.remote_code(resolved.trust_remote_code):
        model, tokenizer = task.build_model(model_dir, resolved, trained=True)
    model_fit.check_built_model(task, model, tokenizer, model_dir, "eval")
    model.eval()
    splits = data.load_splits(
        resolved.data, need_train=False, read_source=source_reader(task, resolved)
    )
    splits = task.prepare_data(splits, resolved, trained_model=model)
    features = task.preprocess(splits["eval"], tokenizer, resolved)
    accelerator = make_accelerator(resolved.train)
    evaluator = Evaluator(
        task,
        tokenizer,
        resolved,
        splits["eval"],
        features,
        accelerator,
        collate_for(task, tokenizer),
    )
    evaluation = evaluator.evaluate(accelerator.prepare(model), generate=True)
    result = EvalResult(
        evaluation.metrics,
        len(splits["eval"]),
        model_dir,
        resolved,
        accelerator.mixed_precision,
        accelerator.is_main_process,
        evaluation.signatures,
    )
    if accelerator.is_main_process:
        found = uncertainty.of_evaluation(task, evaluation, resolved.train)
        result.intervals = {name: [i.low, i.high] for name, i in found.intervals.items()}
        results.record_evaluation(task, result)
    return result


def predict(
    task_name: str,
    model_dir: str,
    records: Sequence[Mapping[str, Any] | str],
    batch_size: int | None = None,
    mixed_precision: str | None = None,
    overrides: Sequence[str] = (),
    labels: Sequence[str] | None = None,
    stream: Any = None,
    explain: bool = False,
) -> list[dict[str, Any]]:
    """Predictions of a trained model, one per record, in input order.

    A record is a dict with the task's input fields (a bare string is fine for a task with one
    field). Runs under ``torch.inference_mode`` in the precision of the model's recipe unless
    ``mixed_precision`` says otherwise; ``overrides`` change that recipe (e.g. generation
    settings); ``labels`` name each record's origin in error messages (``in.jsonl line 3``).
    ``stream(text)`` receives generated text as it comes, from a task that generates.
    ``explain``: each prediction gains an ``explanation`` (the task's ``Explains.explain``,
    in float32 with gradients, after the predictions).
    """
    if isinstance(records, (str, bytes)):
        raise NlpTasksError(
            "predict takes a list of records, not one string. Write [text] for a single one."
        )
    task = load_task(task_name)
    if explain:  # before the model loads: these are one-line answers in a second
        _check_explains(task)
    checked = check_records(task, records, labels)  # before the model loads, too
    if not checked:
        return []
    predictor = load_predictor(task_name, model_dir, batch_size, mixed_precision, overrides)
    return predictor.predict(checked, labels, stream, explain)


@dataclass
class Predictor:
    """A trained model loaded once for many ``predict`` calls (``nlptasks predict`` makes
    one for its records; ``nlptasks serve`` keeps one for every request). Not thread-safe:
    one thread at a time runs the model."""

    task: Any
    model_dir: str
    recipe: Recipe
    """The model's recipe as resolved for predicting (its run's, with the overrides)."""
    precision: str
    model: Any
    tokenizer: Any

    def predict(
        self,
        records: Sequence[Mapping[str, Any] | str],
        labels: Sequence[str] | None = None,
        stream: Any = None,
        explain: bool = False,
        generation: GenerationConfig | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """What ``nlptasks predict`` prints for ``records``, one dict each, in input order.
        ``generation`` replaces the recipe's decoding settings for this call, ``batch_size``
        its records per batch."""
        if explain:
            _check_explains(self.task)
        checked = check_records(self.task, records, labels)
        if not checked:
            return []
        recipe = self.recipe
        if generation is not None or batch_size is not None:
            recipe = copy.deepcopy(recipe)
            if generation is not None:
                recipe.generation = generation
            if batch_size is not None:
                recipe.train.eval_batch_size = batch_size
        task, model, tokenizer = self.task, self.model, self.tokenizer
        with precision.inference(self.precision, model):  # the output head in float32
            found = task.predict(model, tokenizer, checked, recipe, stream)
        predictions = checked_predictions(task.info.name, found, len(checked))
        if explain:
            explanations = task.explain(model, tokenizer, checked, recipe, predictions)
            for prediction, explanation in zip(
                predictions,
                _checked_explanations(task.info.name, explanations, len(checked)),
                strict=True,
            ):
                prediction["explanation"] = explanation
        return predictions


def load_predictor(
    task_name: str,
    model_dir: str,
    batch_size: int | None = None,
    mixed_precision: str | None = None,
    overrides: Sequence[str] = (),
) -> Predictor:
    """Load a trained model for predicting: its run's recipe (refusing a model trained for
    another task) with ``overrides``, checked to fit the task before and after its weights
    load, in eval mode, on the GPU when there is one."""
    quiet_libraries()
    task = load_task(task_name)
    if batch_size is not None and batch_size < 1:
        raise NlpTasksError(f"The batch size must be at least 1, not {batch_size}.")
    resolved = model_recipe(task_name, model_dir, None, overrides)
    if batch_size is not None:
        resolved.train.eval_batch_size = batch_size
    chosen = (
        precision.resolve(mixed_precision, "mixed_precision (--mixed-precision)")
        if mixed_precision is not None
        else precision.resolve(resolved.train.mixed_precision)
    )
    model_fit.check_model_fits(task, model_dir, "predict")  # before the weights load
    with models.remote_code(resolved.trust_remote_code):
        model, tokenizer = task.build_model(model_dir, resolved, trained=True)
    model_fit.check_built_model(task, model, tokenizer, model_dir, "predict")
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return Predictor(task, model_dir, resolved, chosen, model, tokenizer)


def _check_explains(task: Any) -> None:
    """A task that can explain, and captum installed; else a one-line error naming the fix."""
    if not isinstance(task, Explains):
        raise PluginError(
            f"Task '{task.info.name}' cannot explain its predictions; drop --explain, or give "
            f"the task an explain() method (the nlptasks.Explains protocol, docs/explain.md)."
        )
    require_captum()


def _checked_explanations(task: str, found: Any, expected: int) -> list[dict[str, Any]]:
    """One valid explanation per record (``nlptasks.explain.schema``), or a PluginError."""
    results = list(found) if isinstance(found, (list, tuple)) else None
    if results is None or len(results) != expected:
        got = f"{len(results)} explanations" if results is not None else type(found).__name__
        raise PluginError(
            f"Task '{task}': explain() gave {got} for {expected} records; give one dict per "
            f"record, in input order."
        )
    for number, result in enumerate(results, 1):
        problems = explanation_problems(result)
        if problems:
            raise PluginError(
                f"Task '{task}': explain()'s result for record {number} is broken: "
                f"{'; '.join(problems)}."
            )
    return results


def checked_predictions(task: str, found: Any, expected: int) -> list[dict[str, Any]]:
    """One JSON object per record, or a one-line PluginError: output line i must answer
    input i, and what is printed must be JSON."""
    results = list(found) if isinstance(found, (list, tuple)) else None
    if results is None or len(results) != expected:
        got = f"{len(results)} results" if results is not None else type(found).__name__
        raise PluginError(
            f"Task '{task}': predict() gave {got} for {expected} records; give one dict per "
            f"record, in input order."
        )
    for number, result in enumerate(results, 1):
        try:
            if not isinstance(result, dict):
                raise TypeError(f"a {type(result).__name__}, not a dict")
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PluginError(
                f"Task '{task}': predict()'s result for record {number} is not a JSON object "
                f"({exc}); give plain str/int/float values."
            ) from None
    return results


def check_records(
    task: Any,
    records: Sequence[Mapping[str, Any] | str],
    labels: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
) -> list[Mapping[str, Any]]:
    """Records with every input field the task declares; one line naming what is missing
    (and where: ``labels[i]``, else ``input i``). ``only``: check just these of the fields
    (those added since ``records`` were checked)."""
    fields = task.info.input_fields
    checking = fields if only is None else tuple(only)
    name = task.info.name
    checked: list[Mapping[str, Any]] = []
    for number, record in enumerate(records, 1):
        where = labels[number - 1] if labels else f"Input {number}"
        if isinstance(record, str):
            if len(fields) != 1:
                raise NlpTasksError(
                    f"{where} is a plain string, but task '{name}' needs the fields "
                    f"{', '.join(fields)}. Give a JSON object with them."
                )
            record = {fields[0]: record}
        if not isinstance(record, Mapping):
            raise NlpTasksError(
                f"{where} is {type(record).__name__}, not an object. Give a JSON object "
                f"with {', '.join(fields)}."
            )
        missing = [f for f in checking if f not in record or record[f] is None]
        if missing:
            raise NlpTasksError(
                f"{where} has no '{missing[0]}' field (task '{name}' needs "
                f"{', '.join(fields)}). Add it."
            )
        not_text = [f for f in checking if not isinstance(record[f], str)]
        if not_text:
            kind = type(record[not_text[0]]).__name__
            raise NlpTasksError(
                f"{where} has a '{not_text[0]}' that is {kind}, not text. Give a string."
            )
        empty = [f for f in checking if not record[f].strip()]
        if empty:
            raise NlpTasksError(f"{where} has an empty '{empty[0]}'. Give it text.")
        broken = [f for f in checking if not is_unicode(record[f])]
        if broken:
            # JSON's "\ud800" escape gives such a string; a tokenizer fails on it with a
            # TypeError, and a served batch it joined would fail for every request in it.
            raise NlpTasksError(
                f"{where} has a '{broken[0]}' that is not valid Unicode (a lone surrogate, "
                f"such as JSON's \\ud800 escape alone). Send UTF-8 text."
            )
        checked.append(record)
    return checked


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: no lone surrogates (``"\\ud800"`` parsed
    from JSON is one), which tokenizers and JSON answers cannot handle."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def model_recipe(
    task_name: str, model_dir: str, recipe: str | None, overrides: Sequence[str] = ()
) -> Recipe:
    """The recipe for using a trained model: ``recipe`` if given, else its run's own
    (refusing a model trained for another task), else the task's default."""
    if recipe is None:
        # recipe.yaml is all this reads: a model folder beside one counts, events or not.
        run = directory.run_of(model_dir, files=("recipe.yaml",))
        recipe = str(run / "recipe.yaml") if run is not None else None
        trained_for = read_yaml(Path(recipe)).get("task") if recipe else None
        if trained_for and trained_for != task_name:
            raise NlpTasksError(
                f"Model '{model_dir}' was trained for task '{trained_for}' (its run's "
                f"recipe.yaml says so), not '{task_name}'. Use 'nlptasks ... {trained_for} "
                f"--model {model_dir}'."
            )
    return load_recipe(task_name, recipe, list(overrides))


def _set_attention(model: Any, name: str, recipe: Recipe) -> None:
    """The recipe's attention kernel on the built model (transformers checks the name)."""
    source = recipe.name or "recipe"
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        raise ConfigError(
            source,
            [
                f"'train.attn_implementation' ({name}): this model ({type(model).__name__}) "
                f"does not switch attention kernels; remove the setting"
            ],
        )
    try:
        setter(name)
        _try_a_training_forward(model)
    except Exception as exc:  # noqa: BLE001 - any kernel failure is this setting's
        raise ConfigError(
            source,
            [
                f"'train.attn_implementation={name}' does not work here ({first_line(exc)}); "
                f"use sdpa or eager, or remove the setting"
            ],
        ) from None


def _try_a_training_forward(model: Any) -> None:
    """One tiny forward in training mode: some kernels are accepted by name and fail only
    when they run (flex_attention refuses dropout), which would be a traceback at step 1."""
    was_training = model.training
    model.train()
    try:
        # Its own RNG: the check must not move the run's dropout masks.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            ids = torch.tensor([[1, 2, 3, 4]], device=model.device)
            if getattr(model.config, "is_encoder_decoder", False):
                model(input_ids=ids, decoder_input_ids=ids)
            else:
                model(input_ids=ids)
    finally:
        model.train(was_training)


def _check_metric_for_best(recipe: Recipe, task: Any) -> None:
    wanted = recipe.train.metric_for_best
    known = tuple(declared_metrics(task))
    if wanted is not None and wanted not in known:
        raise ConfigError(
            recipe.name or "recipe",
            [
                f"'train.metric_for_best' is '{wanted}', which task '{recipe.task}' does not "
                f"report.{did_you_mean(wanted, known)} It reports {', '.join(known)}."
            ],
        )
    # expect: is read by 'verify' after the run; a misspelt metric must not wait that long.
    bounds = recipe.expect.min | recipe.expect.max if recipe.expect is not None else {}
    unknown = [name for name in bounds if name not in known]
    if unknown:
        kind = "min" if unknown[0] in recipe.expect.min else "max"  # type: ignore[union-attr]
        raise ConfigError(
            recipe.name or "recipe",
            [
                f"'expect.{kind}.{clip(unknown[0])}' names a metric task '{recipe.task}' does "
                f"not report.{did_you_mean(unknown[0], known)} It reports {', '.join(known)}."
            ],
        )


def _make_run_dir(accelerator: Any, output_dir: str | None, recipe: Recipe) -> Path:
    """The main process creates the run directory; the others learn whether that worked,
    so a refusal is the same one-line error everywhere instead of a hang or a crash."""
    outcome: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            if output_dir is not None:
                path = rundir.new_run_dir(
                    output_dir, recipe.task, recipe.name or "recipe", exact=True
                )
            else:
                path = rundir.new_run_dir(recipe.output_dir, recipe.task, recipe.name or "recipe")
            outcome = [("ok", str(path))]
        except NlpTasksError as exc:
            outcome = [("error", str(exc))]
    if accelerator.num_processes > 1:
        broadcast_object_list(outcome, from_process=0)
    status, text = outcome[0]
    if status == "error":
        raise NlpTasksError(text)
    return Path(text)


def quiet_libraries() -> None:
    # Library chatter (new-head warnings, progress bars of datasets) drowns our display.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
