"""Experiment trackers (``track:``, ``nlptasks run --report-to``) through accelerate's tracker
API: the resolved recipe as hyperparameters, then every logged step, evaluation and the final
results, on the main process only.

A tracker is fed from the run's event stream (:class:`~nlptasks.events.EventLog`), so it sees
exactly the values ``events.jsonl`` holds. A tracker that fails while the run goes on is
reported once and dropped: it never fails the run.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlptasks.errors import NlpTasksError
from nlptasks.recipes.schema import TRACKERS, Recipe, recipe_to_dict

if TYPE_CHECKING:
    from accelerate import Accelerator

    from nlptasks.events import Event

PACKAGES: dict[str, tuple[str, str]] = {"tensorboard": ("tensorboard", "tensorboard")}
"""Tracker name -> (the module it needs, the nlptasks extra that installs it)."""


def check_installed(names: list[str]) -> None:
    """Refuse, in one line and before any training, a tracker whose package is missing: a
    user who asked for a tracker expects its curves, not a run without them."""
    for name in names:
        if name not in TRACKERS:
            raise NlpTasksError(f"unknown tracker '{name}'; choose from {', '.join(TRACKERS)}")
        if name not in PACKAGES:
            continue
        module, extra = PACKAGES[name]
        try:
            importlib.import_module(module)
        except ImportError:
            raise NlpTasksError(
                f"Tracker '{name}' needs the {module} package: pip install 'nlptasks[{extra}]'"
            ) from None


def hyperparameters(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as flat ``section.key`` values of the types every tracker takes
    (numbers, strings, booleans): lists and absent values as their text."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, bool | int | float | str):
            flat[prefix] = value
        else:
            flat[prefix] = str(value)

    walk("", recipe_to_dict(recipe))
    return flat


class Trackers:
    """The run's trackers, started on the accelerator and fed from its events."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator

    @classmethod
    def start(cls, accelerator: Accelerator, recipe: Recipe, run_dir: Path) -> Trackers | None:
        """Start the recipe's trackers writing under ``track.dir`` (``RUN/trackers``); None
        when it names none or this is not the main process (only it logs)."""
        track = recipe.track
        if not track.to or not accelerator.is_main_process:
            return None
        from accelerate.tracking import filter_trackers

        # The run directory is only known after the accelerator was built (the model and data
        # are checked first): set its tracker folder and trackers now, as log_with and
        # project_dir would have. TensorBoard writes to LOGGING_DIR/<name given to
        # init_trackers>: the project is a folder, each run one run in it.
        folder = Path(track.dir).expanduser() if track.dir else run_dir / "trackers"
        project = track.project or recipe.task
        accelerator.project_configuration.set_directories(str(folder))
        accelerator.project_configuration.logging_dir = str(folder / project)
        accelerator.log_with = filter_trackers(
            [TRACKERS[name] for name in track.to], accelerator.logging_dir
        )
        try:
            accelerator.init_trackers(
                track.run_name or run_dir.name, config=hyperparameters(recipe)
            )
        except Exception as exc:  # a tracker's own failure never fails the run
            warnings.warn(
                f"The trackers did not start ({type(exc).__name__}: {exc}); the run goes on "
                f"without them.",
                stacklevel=2,
            )
            return None
        return cls(accelerator)

    def handle(self, event: Event) -> None:
        """Log what ``event`` holds, at its step (see :func:`values_of`)."""
        logged = values_of(event)
        if logged is None:
            return
        values, step = logged
        if not values:
            return
        # Each tracker on its own (accelerator.log would stop at the first that raises).
        for tracker in list(self.accelerator.trackers):
            try:
                tracker.log(values, step=step)
            except Exception as exc:  # a tracker's own failure, whatever its library raises
                self._drop(tracker, exc)

    def finish(self) -> None:
        """Close every tracker. Not ``accelerator.end_training()``: it also destroys the
        process group, which ``distributed.leave`` must keep (see there)."""
        for tracker in list(self.accelerator.trackers):
            try:
                tracker.finish()
            except Exception as exc:
                self._drop(tracker, exc)

    def _drop(self, tracker: Any, exc: Exception) -> None:
        self.accelerator.trackers.remove(tracker)
        warnings.warn(
            f"Tracker '{tracker.name}' failed ({type(exc).__name__}: {exc}); it is dropped "
            f"and the run goes on.",
            stacklevel=3,
        )


def values_of(event: Event) -> tuple[dict[str, float], int | None] | None:
    """The numbers a tracker receives for ``event`` and their step: the training curves of a
    ``step`` event, every metric of an ``eval`` with its interval (``METRIC_low``,
    ``METRIC_high``), the final results of
    ``run_end``; None for other events."""
    kind = event.get("type")
    if kind == "step":
        keys = (
            "loss",
            "learning_rate",
            "grad_norm",
            "examples_per_second",
            "tokens_per_second",
            "epoch",
        )
        values = {f"train/{key}": event.get(key) for key in keys}
        return _numbers(values), event.get("step")
    if kind == "eval":
        values = {f"eval/{key}": value for key, value in (event.get("metrics") or {}).items()}
        for key, (low, high) in (event.get("intervals") or {}).items():
            values[f"eval/{key}_low"], values[f"eval/{key}_high"] = low, high
        return _numbers(values), event["step"]
    if kind == "train_end":
        totals = ("train_seconds", "tokens_seen")
        return _numbers({f"train/{key}": event.get(key) for key in totals}), event.get("step")
    if kind == "run_end":
        metrics = event.get("metrics") or {}
        return _numbers({f"final/{key}": value for key, value in metrics.items()}), None
    return None


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    # Absent values (no grad norm without clipping, an undefined metric) are left out.
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
