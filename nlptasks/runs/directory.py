"""Finding run directories and reading finished ones back: the run a path lies in,
results.json, predictions.jsonl (for eval, compare, leaderboard, verify and export)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlptasks.errors import NlpTasksError
from nlptasks.jsonl import JsonLineError, json_lines
from nlptasks.runs.lock import in_use
from nlptasks.runs.status import failure

SCHEMA_VERSION = 1
# Fields of a prediction row that say which example it is (the same in two runs of one
# eval set): compare pairs rows by them, leaderboards group runs by them.
IDENTITY_FIELDS = ("id", "text", "question", "source", "reference", "references")
"""results.json's schema version; the JSON Schema is nlptasks/schemas/results.schema.json."""


class NotARunError(NlpTasksError):
    """A folder that is not a finished nlptasks run (of a schema this version reads)."""


# What every run directory holds from its start (written before its first step).
RUN_FILES = ("recipe.yaml", "events.jsonl")


def is_run(folder: Path, files: tuple[str, ...] = RUN_FILES) -> bool:
    """Whether ``folder`` holds a run's ``files``."""
    return all((folder / name).is_file() for name in files)


def run_of(model_dir: str | Path, files: tuple[str, ...] = RUN_FILES) -> Path | None:
    """The run directory a model folder lies in (``RUN/model``, ``RUN/checkpoints/NAME``), or
    None for a folder outside a run. ``files``: what that run must hold."""
    folder = Path(model_dir).expanduser().resolve()
    candidates = [folder.parent]
    if folder.parent.name == "checkpoints":
        candidates.append(folder.parent.parent)
    return next((run for run in candidates if is_run(run, files)), None)


def enclosing_run(path: str | Path) -> Path | None:
    """The run directory ``path`` is (or lies inside), if any."""
    folder = Path(path).expanduser().resolve()
    return next((run for run in (folder, *folder.parents) if is_run(run)), None)


@dataclass
class Run:
    """A finished run directory and its results.json."""

    path: Path
    results: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.results["task"])

    @property
    def metrics(self) -> dict[str, float | None]:
        return dict(self.results["metrics"]["eval"])

    def predictions(self) -> list[dict[str, Any]]:
        """The rows of predictions.jsonl, or a one-line error saying why there are none."""
        path = self.path / "predictions.jsonl"
        if not path.is_file():
            raise NotARunError(
                f"{self.path} has no predictions.jsonl: its task saves no per-example "
                f"statistics, or the run predates them. Re-run it with this nlptasks."
            )
        rows = []
        with path.open(encoding="utf-8") as handle:
            try:
                for number, row in json_lines(handle):
                    if not isinstance(row, dict) or not isinstance(row.get("statistics"), dict):
                        raise NotARunError(f"{path}, line {number}, has no 'statistics' object.")
                    rows.append(row)
            except JsonLineError as bad:
                raise NotARunError(
                    f"{path}, line {bad.number}, is not JSON ({bad.error.msg})."
                ) from None
        if not rows:
            raise NotARunError(f"{path} is empty: the run scored no example.")
        return rows


def results_schema() -> dict[str, Any]:
    """The JSON Schema of results.json (shipped in the package)."""
    from importlib.resources import files

    text = (files("nlptasks") / "schemas" / "results.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_problems(results: Any) -> list[str]:
    """Where ``results`` breaks the schema: ``path: message`` lines, none when it is valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(results_schema())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(results), key=lambda e: list(e.absolute_path))
    ]


def load_run(path: str | Path) -> Run:
    """The run at ``path``, or :class:`NotARunError` naming what is missing."""
    folder = Path(path)
    results_file = folder / "results.json"
    if not folder.is_dir():
        raise NotARunError(f"{folder} is not a folder. Give a run directory (runs/TASK-...).")
    if not results_file.is_file():
        if in_use(folder):  # training or resuming now: resuming it would be refused
            raise NotARunError(
                f"{folder} is running (in use by another nlptasks process); it has no results "
                f"yet. Wait for it to finish."
            )
        if (how := failure(folder)) is not None:
            raise NotARunError(
                f"{folder} is a run that failed {how}; it has no results to read. "
                f"'nlptasks resume {folder}' says whether it can continue."
            )
        raise NotARunError(
            f"{folder} has no results.json: it is not a finished nlptasks run (an unfinished "
            f"one continues with 'nlptasks resume {folder}')."
        )
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotARunError(f"{results_file} is not valid JSON ({exc}).") from None
    if not isinstance(results, dict):
        raise NotARunError(f"{results_file} does not hold a results object.")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise NotARunError(
            f"{results_file} has schema_version {version!r}; this nlptasks reads "
            f"{SCHEMA_VERSION}. Re-run it, or evaluate its model with 'nlptasks eval'."
        )
    if problems := schema_problems(results):
        raise NotARunError(f"{results_file} does not follow the results schema ({problems[0]}).")
    return Run(folder, results)
