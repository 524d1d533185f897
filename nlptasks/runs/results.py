"""The run directory: resolved recipe, results.json with provenance, final model, model card.

Every file is written atomically (a temporary name, then a rename), so an interruption never
leaves half a file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nlptasks.training import checkpoints

from nlptasks.training import lora

from nlptasks.evaluation import uncertainty
from nlptasks.data import cache_dir
from nlptasks.errors import RunDirectoryError
from nlptasks.events import strict_json
from nlptasks.models import base_model_id
from nlptasks.recipes import Recipe, TrainConfig, dump_recipe
from nlptasks.runs.directory import SCHEMA_VERSION
from nlptasks.task import declared_metrics

if TYPE_CHECKING:
    from nlptasks.runner import EvalResult, PreparedRun
    from nlptasks.training.trainer import TrainResult

PACKAGES = ("nlptasks", "torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers")


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


def write_run(
    run_dir: Path,
    prepared: PreparedRun,
    model: Any,
    outcome: TrainResult,
    metrics: dict[str, float],
    started: float,
) -> dict[str, Any]:
    """Save the final model and write results.json and the model card; return the results."""
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
    checkpoints.swap_in(tmp, final)  # replaces a resumed run's earlier, unfinished save
    if adapter is not None:
        checkpoints.swap_in(adapter, run_dir / "adapter")
    summary = build_results(run_dir, prepared, outcome, metrics, started)
    found = uncertainty.of_evaluation(
        prepared.task, prepared.evaluator, metrics, prepared.recipe.train
    )
    summary["confidence_intervals"] = found.summary(prepared.recipe.train)
    if found.predictions:
        write_jsonl(run_dir / "predictions.jsonl", found.predictions)
        summary["predictions"] = "predictions.jsonl"
    if signatures := getattr(prepared.evaluator, "signatures", None):
        summary["metric_signatures"] = dict(signatures)  # exactly how BLEU & co. were computed
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
    write_text(run_dir / "README.md", run_model_card(prepared, summary))
    # results.json last: its presence says the run is complete (resume refuses such a run).
    write_json(run_dir / "results.json", summary)
    return summary


def build_results(
    run_dir: Path,
    prepared: PreparedRun,
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
        "recipe": recipe.name,
        "model": recipe.model,
        "model_path": prepared.model_path,
        "run_dir": str(run_dir),
        "metrics": {"eval": metrics},
        # The task's headline metric (leaderboards rank by it), whatever picked the best
        # checkpoint of this run (train.metric_for_best).
        "main_metric": prepared.task.main_metric,
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


def record_evaluation(task: Any, result: EvalResult) -> Path | None:
    """``nlptasks eval`` of a run's model adds its results to the run's model card (the
    model-index keeps every evaluation; one of the same data and metric is replaced) and a
    line to the run's ``evaluations.jsonl``. Returns the card updated, if any."""
    from nlptasks.runs import card
    from nlptasks.runs.directory import NotARunError, load_run

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
    data = card_eval_data(recipe, result.num_examples)
    found = card.eval_results(
        recipe.task, task.pipeline_tag, data, result.metrics, result.intervals
    )
    write_text(path, str(card.add_eval_results(path, found)))
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
    return path


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


def _local_data(recipe: Recipe) -> bool:
    d = recipe.data
    return bool(
        task_files(recipe, True) or task_files(recipe, False) or d.eval_path or d.train_path
    )


def card_eval_data(recipe: Recipe, examples: int | None) -> Any:
    """The model-index ``dataset`` of an evaluation with this recipe (the run's card and
    every ``nlptasks eval`` build it here, so the same data is the same entry)."""
    from nlptasks.runs import card

    local = _local_data(recipe)
    name = eval_data_name(recipe)
    kind = name if local else (recipe.data.dataset or name)
    config = None if local else recipe.data.dataset_config
    return card.EvalData(name, kind, eval_split_name(recipe), config, examples)


def hub_datasets(recipe: Recipe) -> list[str]:
    """The Hub dataset ids a run used (the card's ``datasets``): none for local files or a
    dataset that an nlptasks plugin registered (its name is no Hub id)."""
    from nlptasks.plugins.registry import get_registries

    dataset = recipe.data.dataset
    if not dataset or _local_data(recipe) or dataset in get_registries().datasets:
        return []
    return [dataset]


def eval_identity(recipe: Recipe, examples: int) -> dict[str, Any]:
    """Which data an evaluation scored: name, split, number of examples and, for local files,
    their SHA-256 (the same name can hold other data on another day)."""
    files = task_files(recipe, evaluation=True) or (
        [Path(recipe.data.eval_path)] if recipe.data.eval_path else []
    )
    if not files and not recipe.data.eval_split:  # held out of the training files
        files = task_files(recipe, evaluation=False) or (
            [Path(recipe.data.train_path)] if recipe.data.train_path else []
        )
    digest = None
    if files and all(path.is_file() for path in files):
        hasher = hashlib.sha256()
        for path in files:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    hasher.update(block)
        digest = hasher.hexdigest()
    return {
        "name": eval_data_name(recipe),
        "split": eval_split_name(recipe),
        "examples": examples,
        "files": [str(path) for path in files],
        "sha256": digest,
    }


def command_line() -> str | None:
    """The nlptasks command this process runs, when it is one (not a notebook's Python)."""
    import shlex
    import sys

    program = Path(sys.argv[0]).name if sys.argv else ""
    if program == "nlptasks" or sys.argv[0].endswith(("nlptasks/cli/__init__.py", "nlptasks/__main__.py")):
        return shlex.join(["nlptasks", *sys.argv[1:]])
    return None


def run_model_card(prepared: PreparedRun, summary: dict[str, Any]) -> str:
    """The model card of a finished run (README.md of the run directory)."""
    recipe, task = prepared.recipe, prepared.task
    card_data = getattr(task, "model_card_data", None)
    return model_card(
        run_name=recipe.run_name or f"{recipe.task}-{recipe.name or 'recipe'}",
        task=recipe.task,
        pipeline_tag=task.pipeline_tag,
        base_model=base_model_id(recipe.model),
        model_name=recipe.model,
        dataset_name=data_source(recipe),
        dataset_split=eval_split_name(recipe),
        eval_data=card_eval_data(recipe, summary["data"]["eval_examples"]),
        datasets=hub_datasets(recipe),
        metrics=summary["metrics"]["eval"],
        intervals=summary.get("confidence_intervals", {}).get("eval"),
        recipe_yaml=recipe_yaml(recipe),
        extra=task.model_card_info(),
        front_matter=dict(card_data()) if callable(card_data) else {},
        train_summary={k: v for k, v in summary["train"].items() if k != "history"},
        license=recipe.license,
        command=reproduce_command(recipe),
        train_examples=summary["data"]["train_examples"],
    )


def reproduce_command(recipe: Recipe) -> str:
    """The command that re-runs this exact recipe: recipe.yaml holds every resolved value
    (absolute data paths included), so it does from any directory."""
    exact = f"# exactly, from the run directory\nnlptasks run {recipe.task} --recipe recipe.yaml"
    given = command_line()
    return f"# as it was run\n{given}\n{exact}" if given else exact


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


def usage(task: str, pipeline_tag: str) -> str:
    """The card's usage snippets: nlptasks always; a transformers pipeline where transformers
    still has one for the task (version 5 removed question-answering and translation)."""
    text = f"```bash\nnlptasks predict {task} --model PATH/TO/model --input inputs.jsonl\n```\n\n"
    try:
        from transformers.pipelines import SUPPORTED_TASKS
    except ImportError:  # pragma: no cover - transformers is a dependency
        SUPPORTED_TASKS = {}
    if pipeline_tag in SUPPORTED_TASKS:
        text += (
            "```python\nfrom transformers import pipeline\n"
            f'pipe = pipeline("{pipeline_tag}", model="PATH/TO/model")\n```\n\n'
        )
    return text


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


def provenance(
    seed: int,
    device: str,
    num_processes: int,
    mixed_precision: str,
    requested_precision: str | None = None,
) -> dict[str, Any]:
    """Versions, hardware and source revision, so a result can be traced and reproduced.

    ``mixed_precision`` is what ran; ``requested_precision`` what the recipe asked (``auto``).
    """
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": {"python": platform.python_version(), **versions},
        "seed": seed,
        "device": device,
        "num_processes": num_processes,
        "mixed_precision": mixed_precision,
        "mixed_precision_requested": requested_precision or mixed_precision,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": _gpu_name(),
        "git_commit": git_commit(Path.cwd()),
    }


def _gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``'s git repository, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def model_card(
    *,
    run_name: str,
    task: str,
    pipeline_tag: str,
    base_model: str | None,
    model_name: str,
    dataset_name: str,
    dataset_split: str,
    metrics: dict[str, float],
    recipe_yaml: str,
    extra: dict[str, Any],
    train_summary: dict[str, Any],
    front_matter: dict[str, Any] | None = None,
    dataset_type: str | None = None,
    dataset_config: str | None = None,
    intervals: dict[str, list[float]] | None = None,
    eval_data: Any = None,
    datasets: list[str] | None = None,
    license: str | None = None,
    command: str | None = None,
    train_examples: int | None = None,
) -> str:
    """A README.md with Hub model-index front matter (the leaderboard format), built with
    huggingface_hub's ModelCard.

    ``base_model`` is a Hub id (None for a local model: the Hub would reject a path);
    ``front_matter`` adds task keys such as ``language`` (never replacing ours)."""
    from nlptasks.runs import card

    data = eval_data or card.EvalData(
        dataset_name, dataset_type or dataset_name, dataset_split, dataset_config
    )
    content = card.CardContent(
        run_name=run_name,
        task=task,
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        model_name=model_name,
        train_data=dataset_name,
        # The Hub's `datasets` lists dataset ids: local files have none.
        datasets=datasets if datasets is not None else ([dataset_type] if dataset_type else []),
        license=license,
        recipe_yaml=recipe_yaml,
        command=command or f"nlptasks run {task} --recipe recipe.yaml",
        train_summary=train_summary,
        extra=extra,
        front_matter=dict(front_matter or {}),
        train_examples=train_examples,
    )
    results = card.eval_results(task, pipeline_tag, data, metrics, intervals)
    return str(card.build_card(content, results))
