"""Experiment trackers through accelerate: TensorBoard receives the run's values (read back
from its event files), a failing tracker leaves the run finished, and a tracker that is
unknown or not installed is refused in one line before training."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from accelerate.tracking import GeneralTracker
from click.testing import CliRunner

from nlptasks.cli import cli
from nlptasks.recipes import schema

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="the tensorboard extra is not installed (pip install -e '.[dev]' has it)",
)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _data(work: Path) -> tuple[Path, Path]:
    from tests.conftest import SST2

    train, dev = work / "train.tsv", work / "dev.tsv"
    for src, dst, n in ((SST2 / "train.tsv", train, 200), (SST2 / "dev.tsv", dev, 100)):
        dst.write_text("\n".join(src.read_text().splitlines()[: n + 1]) + "\n")
    return train, dev


def _settings(tiny_bert: Path, train: Path, dev: Path) -> list[str]:
    return [
        f"model={tiny_bert}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.batch_size=16",
        "train.max_steps=8",
        "train.log_every=2",
        "train.eval_every=4",
        "train.learning_rate=1e-3",
        "train.mixed_precision=no",
    ]


def _events(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {
        tag: [(s.step, s.value) for s in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def tracked_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `nlptasks run sentiment --report-to tensorboard` (seconds)."""
    work = tmp_path_factory.mktemp("tracked")
    run_dir = work / "run"
    code, output = invoke(
        "run",
        "sentiment",
        "--recipe",
        "minilm",
        *_settings(tiny_bert, *_data(work)),
        "track.project=tiny",
        "--report-to",
        "tensorboard",
        "--output-dir",
        str(run_dir),
        "--quiet",
    )
    assert code == 0, output
    return run_dir


@needs_tensorboard
def test_tensorboard_receives_the_logged_steps_evaluations_and_results(tracked_run: Path) -> None:
    events = _events(tracked_run)
    scalars = _scalars(tracked_run / "trackers" / "tiny" / "run")
    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == [2, 4, 6, 8]
    # Every logged step's curves, equal to events.jsonl's values (TensorBoard keeps float32).
    for key in ("loss", "learning_rate", "grad_norm", "examples_per_second", "tokens_per_second"):
        logged = scalars[f"train/{key}"]
        assert [step for step, _ in logged] == [2, 4, 6, 8], key
        expected = [pytest.approx(s[key], rel=1e-6) for s in steps]
        assert [value for _, value in logged] == expected, key
    assert all(s["grad_norm"] > 0 for s in steps)
    # Every evaluation's metrics with their interval, at its step.
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [4, 8]
    for name in ("accuracy", "macro_f1", "loss"):
        logged = scalars[f"eval/{name}"]
        assert logged == [(e["step"], pytest.approx(e["metrics"][name], rel=1e-6)) for e in evals]
        for end, bound in (("low", 0), ("high", 1)):
            logged = scalars[f"eval/{name}_{end}"]
            expected = [pytest.approx(e["intervals"][name][bound], rel=1e-6) for e in evals]
            assert [value for _, value in logged] == expected
    low, high = scalars["eval/accuracy_low"][-1][1], scalars["eval/accuracy_high"][-1][1]
    assert low <= scalars["eval/accuracy"][-1][1] <= high and low < high
    # The final results, and the resolved recipe as hyperparameters.
    results = json.loads((tracked_run / "results.json").read_text())
    accuracy = results["metrics"]["eval"]["accuracy"]
    assert scalars["final/accuracy"][-1][1] == pytest.approx(accuracy, rel=1e-6)
    # The final model's evaluation is one of those logged: the same interval as results.json.
    pairs = zip(scalars["eval/accuracy_low"], scalars["eval/accuracy_high"], strict=True)
    final_low, final_high = results["confidence_intervals"]["eval"]["accuracy"]
    assert any(
        (low, high) == (pytest.approx(final_low), pytest.approx(final_high))
        for (_, low), (_, high) in pairs
    )
    # accelerate's TensorBoardTracker writes them (add_hparams and a YAML copy) in folders
    # of their own under the run's.
    folder = tracked_run / "trackers" / "tiny" / "run"
    (saved,) = folder.glob("*/hparams.yml")
    hparams = yaml.safe_load(saved.read_text())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (written,) = {path.parent for path in folder.glob("*/events.out.tfevents.*")}
    accumulator = EventAccumulator(str(written))
    accumulator.Reload()
    assert accumulator.PluginTagToContent("hparams")  # TensorBoard's HPARAMS tab reads these
    assert hparams["task"] == "sentiment"
    assert hparams["train.learning_rate"] == pytest.approx(1e-3)
    assert hparams["track.to"] == "['tensorboard']"


class BrokenTracker(GeneralTracker):
    """A real accelerate tracker whose service fails mid-run (its log raises)."""

    name = "broken"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.finished = False

    @property
    def tracker(self) -> None:
        return None

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        self.config = values

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        self.calls += 1
        raise ConnectionError("tracking server unreachable")

    def finish(self) -> None:
        self.finished = True


@needs_tensorboard
def test_a_failing_tracker_is_dropped_with_one_warning_and_the_run_finishes(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nlptasks.runner import run

    broken = BrokenTracker()
    monkeypatch.setitem(schema.TRACKERS, "broken", broken)
    run_dir = tmp_path / "run"
    with pytest.warns(UserWarning, match="Tracker 'broken' failed") as caught:
        result = run(
            "sentiment",
            "minilm",
            [*_settings(tiny_bert, *_data(tmp_path)), "track.to=[broken, tensorboard]"],
            output_dir=str(run_dir),
        )
    assert broken.config["model"] == str(tiny_bert)  # it was started with the recipe
    assert broken.calls == 1  # dropped after its first failure: one warning
    assert sum("Tracker 'broken'" in str(w.message) for w in caught) == 1
    assert not broken.finished
    assert result.run_dir == run_dir
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    # The other tracker received everything.
    scalars = _scalars(run_dir / "trackers" / "sentiment" / "run")
    assert [step for step, _ in scalars["train/loss"]] == [2, 4, 6, 8]
    assert "final/accuracy" in scalars


def test_an_unknown_tracker_is_refused_in_one_line(tmp_path: Path) -> None:
    code, output = invoke("run", "sentiment", "--report-to", "tensorboard,nope")
    assert code == 1
    assert output.strip() == (
        "Error: unknown tracker 'nope' in --report-to; choose from tensorboard"
    )
    code, output = invoke("recipes", "show", "sentiment/minilm", "track.to=[nope]", "--resolved")
    assert code == 1
    assert "unknown tracker 'nope' in 'track.to'; choose from tensorboard" in output


def test_a_missing_tracker_package_is_refused_before_training(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    run_dir = tmp_path / "run"
    code, output = invoke(
        "run",
        "sentiment",
        "--recipe",
        "minilm",
        *_settings(tiny_bert, *_data(tmp_path)),
        "--report-to",
        "tensorboard",
        "--output-dir",
        str(run_dir),
    )
    assert code == 1
    assert output.strip() == (
        "Error: Tracker 'tensorboard' needs the tensorboard package: "
        "pip install 'nlptasks[tensorboard]'"
    )
    assert not run_dir.exists()
