"""The structured event stream of a run, and the reporters that show it.

Every step, evaluation and checkpoint is an event: a JSON-serialisable dict with ``type`` and
``time``. An :class:`EventLog` appends each event to ``events.jsonl``, hands it to the
``on_event`` plugin hook (trackers are plugins) and to one reporter: a rich progress display,
JSON lines on stdout (``--json``) or nothing (``--quiet``).
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from nlptasks.plugins.manager import call_hook

if TYPE_CHECKING:
    from rich.console import Console

Event = dict[str, Any]


def strict_json(data: Any) -> Any:
    """``data`` with every NaN or infinite float as None: JSON has no NaN (Python writes a bare
    ``NaN`` that strict readers refuse), and an undefined metric reads as null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(v) for v in data]
    return data


class Reporter(Protocol):
    """Shows events to a person or a script."""

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class QuietReporter:
    """Shows nothing (``--quiet``)."""

    def handle(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


class JsonReporter:
    """One JSON object per line on stdout (``--json``), for scripts."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def handle(self, event: Event) -> None:
        self.stream.write(json.dumps(strict_json(event), default=str) + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class RichReporter:
    """A live progress bar: step, epoch, loss, learning rate, examples/s and ETA.

    When ``console`` (default: stderr) is not a terminal, e.g. a log file, CI or a pipe, it
    prints one plain line per logged step instead, since a redrawn bar there is noise.
    """

    def __init__(self, console: Console | None = None) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        # A notebook is no terminal for rich, but shows a live bar well.
        self.live = console.is_terminal or console.is_jupyter
        self._progress: Any = None
        self._task_id: Any = None

    def _start(self, total: int) -> None:
        if not self.live:  # plain lines instead (step_line)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]:.2f}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} ex/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._progress.start()
        self._task_id = self._progress.add_task(
            "train", total=total, epoch=0.0, loss="-", lr="-", speed="-"
        )

    def _print(self, text: str) -> None:
        # soft_wrap: a line longer than the console's width stays one line in a log file.
        self.console.print(text, soft_wrap=True)

    def handle(self, event: Event) -> None:
        kind = event["type"]
        if kind == "run_start":
            windows = ""
            features = (event.get("train_features"), event.get("eval_features"))
            if None not in features and features != (
                event["train_examples"],
                event["eval_examples"],
            ):
                windows = f" ({features[0]} / {features[1]} features)"
            self._print(
                f"[bold]nlptasks[/] {event['task']} · recipe {event['recipe']} · model "
                f"{event['model']} · {event['train_examples']} train / "
                f"{event['eval_examples']} eval examples{windows} · device {event['device']}"
            )
            if event.get("parameters"):
                trainable, total = event["trainable_parameters"], event["parameters"]
                self._print(
                    f"parameters: {trainable:,} trainable of {total:,} "
                    f"({100 * trainable / total:.2f}%)"
                )
        elif kind == "train_start":
            self._start(event["total_steps"])
        elif kind == "step" and not self.live:
            self._print(self.step_line(event))
        elif kind == "step" and self._progress is not None:
            self._progress.update(
                self._task_id,
                completed=event["step"],
                epoch=event["epoch"],
                loss=f"{event['loss']:.4f}",
                lr=f"{event['learning_rate']:.2e}",
                speed=f"{event['examples_per_second']:.1f}",
            )
        elif kind == "eval":
            metrics = ", ".join(
                f"{k} {v:.4f}" for k, v in event["metrics"].items() if isinstance(v, float)
            )
            self._print(f"eval @ step {event['step']}: {metrics}")
        elif kind == "early_stop":
            self._print(f"early stopping at step {event['step']}: {event['reason']}")
        elif kind == "train_end":
            self.close()

    def advance(self, step: int, epoch: float) -> None:
        """Move the bar between logged steps; without a terminal, print nothing."""
        if self._progress is not None:
            self._progress.update(self._task_id, completed=step, epoch=epoch)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @staticmethod
    def step_line(event: Event) -> str:
        """A ``step`` event as one plain line: step/total, epoch, loss, lr, ex/s and ETA."""
        eta = datetime.timedelta(seconds=round(event["eta_seconds"]))
        return (
            f"step {event['step']}/{event['total_steps']} · epoch {event['epoch']:.2f} · "
            f"loss {event['loss']:.4f} · lr {event['learning_rate']:.2e} · "
            f"{event['examples_per_second']:.1f} ex/s · eta {eta}"
        )


class EventLog:
    """Writes events to ``events.jsonl``, the ``on_event`` hook and a reporter."""

    def __init__(
        self, path: Path | None, reporter: Reporter | None = None, enabled: bool = True
    ) -> None:
        # Under several processes only the main one writes and reports (enabled=True).
        self.enabled = enabled
        self.reporter = reporter or QuietReporter()
        self._failed_plugins: set[str] = set()
        self._file = path.open("a", encoding="utf-8") if (path and enabled) else None
        self.observers: list[Callable[[Event], None]] = []
        """In-process consumers of every event after the plugins (the run's trackers)."""

    def emit(self, type: str, **fields: Any) -> Event:
        event: Event = {"type": type, "time": round(time.time(), 3), **fields}
        if not self.enabled:
            return event
        if self._file is not None:
            self._file.write(json.dumps(strict_json(event), default=str) + "\n")
            self._file.flush()
        self._notify_plugins(event)
        for observer in self.observers:
            observer(event)
        self.reporter.handle(event)
        return event

    def _notify_plugins(self, event: Event) -> None:
        # A tracker that fails (say, its server is down) is reported once and then left out;
        # it never stops the run.
        call_hook(
            "on_event",
            event=event,
            skip=self._failed_plugins,
            on_failure=lambda plugin_name, exc: self._failed_plugins.add(plugin_name),
        )

    def progress(self, **fields: Any) -> None:
        """Between logged steps: move the live display only (no file line, no hook)."""
        if self.enabled and isinstance(self.reporter, RichReporter):
            self.reporter.advance(**fields)

    def close(self) -> None:
        self.reporter.close()
        if self._file is not None:
            self._file.close()
            self._file = None
