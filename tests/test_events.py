"""The reporters: plain lines for logs, a live bar for terminals, JSON lines, nothing."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from nlptasks.events import EventLog, JsonReporter, QuietReporter, RichReporter


def _step(step: int, loss: float, eta: float) -> dict[str, Any]:
    return {
        "type": "step",
        "time": 1700000000.0 + step,
        "step": step,
        "total_steps": 20,
        "epoch": step / 8,
        "loss": loss,
        "learning_rate": 1e-3 * (1 - step / 20),
        "examples_per_second": 123.456,
        "elapsed_seconds": step * 0.5,
        "eta_seconds": eta,
    }


EVENTS: list[dict[str, Any]] = [
    {
        "type": "run_start",
        "time": 1700000000.0,
        "task": "sentiment",
        "recipe": "minilm",
        "model": "tiny-bert",
        "train_examples": 400,
        "eval_examples": 200,
        "device": "cpu",
    },
    {"type": "train_start", "time": 1700000000.1, "total_steps": 20, "steps_per_epoch": 8},
    _step(5, 0.693147, 7.4),
    _step(10, 0.51234, 3725.6),
    {
        "type": "eval",
        "time": 1700000011.0,
        "step": 10,
        "epoch": 1.25,
        "metrics": {"loss": 0.5, "accuracy": 0.75, "macro_f1": 0.7321},
        "is_best": True,
    },
    _step(15, 0.4, 2.5),
    _step(20, 0.387651, 0.0),
    {
        "type": "early_stop",
        "time": 1700000021.0,
        "step": 20,
        "reason": "accuracy did not improve for 2 evaluations",
    },
    {"type": "train_end", "time": 1700000021.5, "step": 20, "best_step": 10},
]

PLAIN_LINES = [
    "nlptasks sentiment · recipe minilm · model tiny-bert · 400 train / 200 eval examples"
    " · device cpu",
    "step 5/20 · epoch 0.62 · loss 0.6931 · lr 7.50e-04 · 123.5 ex/s · eta 0:00:07",
    "step 10/20 · epoch 1.25 · loss 0.5123 · lr 5.00e-04 · 123.5 ex/s · eta 1:02:06",
    "eval @ step 10: loss 0.5000, accuracy 0.7500, macro_f1 0.7321",
    "step 15/20 · epoch 1.88 · loss 0.4000 · lr 2.50e-04 · 123.5 ex/s · eta 0:00:02",
    "step 20/20 · epoch 2.50 · loss 0.3877 · lr 0.00e+00 · 123.5 ex/s · eta 0:00:00",
    "early stopping at step 20: accuracy did not improve for 2 evaluations",
]


def _feed(reporter: RichReporter) -> None:
    # Between logged steps the trainer moves the display through EventLog.progress.
    log = EventLog(None, reporter)
    for event in EVENTS:
        if event["type"] == "step":
            for step in range(event["step"] - 4, event["step"]):
                log.progress(step=step, epoch=step / 8)
        reporter.handle(event)
    reporter.close()


def test_without_a_terminal_one_plain_line_per_step() -> None:
    out = io.StringIO()
    # A narrow console: the lines must still not be wrapped.
    reporter = RichReporter(console=Console(file=out, force_terminal=False, width=40))
    assert not reporter.live
    _feed(reporter)
    assert out.getvalue().splitlines() == PLAIN_LINES
    assert "\x1b" not in out.getvalue()


def test_without_a_terminal_advance_prints_nothing() -> None:
    out = io.StringIO()
    reporter = RichReporter(console=Console(file=out, force_terminal=False))
    reporter.handle(EVENTS[1])  # train_start
    for step in range(1, 5):
        reporter.advance(step=step, epoch=step / 8)
    assert out.getvalue() == ""


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_on_a_terminal_a_live_bar() -> None:
    out = io.StringIO()
    reporter = RichReporter(console=Console(file=out, force_terminal=True, width=160))
    assert reporter.live
    _feed(reporter)
    text = _strip_ansi(out.getvalue())
    assert "20/20" in text  # the bar's final state: every step done
    assert "loss 0.3877" in text
    assert "eval @ step 10: loss 0.5000, accuracy 0.7500, macro_f1 0.7321" in text
    assert "early stopping at step 20" in text
    assert "step 5/20 ·" not in text  # no plain step lines on a terminal
    assert reporter._progress is None  # train_end stopped the live display


def test_json_reporter_writes_one_object_per_event() -> None:
    stream = io.StringIO()
    reporter = JsonReporter(stream)
    events = [*EVENTS, {"type": "checkpoint", "time": 1.0, "path": Path("x")}]
    for event in events:
        reporter.handle(event)
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(events)
    parsed = [json.loads(line) for line in lines]
    assert parsed[:-1] == EVENTS
    assert parsed[-1] == {"type": "checkpoint", "time": 1.0, "path": "x"}


def test_quiet_reporter_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = QuietReporter()
    for event in EVENTS:
        reporter.handle(event)
    reporter.close()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
