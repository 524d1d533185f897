"""Real multi-process training with torchrun (2 CPU processes over gloo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlptasks.testing import make_tiny_bert
from nlptasks.testing.processes import run_nlptasks
from tests.conftest import sst2_rows

pytestmark = pytest.mark.slow


def test_two_processes_equal_one_process_with_the_global_batch(
    sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, dev = sst2_small
    model = make_tiny_bert(tmp_path / "tiny", [t for t, _ in sst2_rows("train", 3000)], dropout=0)
    common = [
        f"model={model}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.max_steps=4",
        "train.learning_rate=1e-3",
        "train.group_by_length=false",
        "data.max_eval_examples=99",  # uneven across 2 processes: the last round is padded
        "train.mixed_precision=no",  # weights compared to 1e-4: bf16 rounding would hide that
        "--quiet",
    ]
    run_nlptasks(
        "run", "sentiment", *common, "train.batch_size=16", "-o", str(tmp_path / "ddp"), processes=2
    )
    run_nlptasks("run", "sentiment", *common, "train.batch_size=32", "-o", str(tmp_path / "single"))

    ddp_results = json.loads((tmp_path / "ddp/results.json").read_text())
    single_results = json.loads((tmp_path / "single/results.json").read_text())
    assert ddp_results["provenance"]["num_processes"] == 2
    assert ddp_results["train"]["examples_seen"] == single_results["train"]["examples_seen"] == 128
    # Only the main process writes: one run directory, one line per event.
    events = (tmp_path / "ddp/events.jsonl").read_text().splitlines()
    assert sum(json.loads(e)["type"] == "run_start" for e in events) == 1
    # Each step of 2 x 16 sees the same 32 examples as one step of 32: same weights.
    a = load_file(str(tmp_path / "ddp/model/model.safetensors"))
    b = load_file(str(tmp_path / "single/model/model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-4)
    assert ddp_results["metrics"]["eval"]["accuracy"] == pytest.approx(
        single_results["metrics"]["eval"]["accuracy"], abs=0.011
    )
    # the padding examples must count neither in the metrics nor in the loss
    assert ddp_results["metrics"]["eval"]["loss"] == pytest.approx(
        single_results["metrics"]["eval"]["loss"], rel=1e-4
    )
    assert ddp_results["train"]["train_loss"] == pytest.approx(
        single_results["train"]["train_loss"], rel=1e-3
    )


def test_accumulation_with_uneven_targets_across_two_processes() -> None:
    """Micro-batches of 0, 5, 0, 9 targets on one process and 3, 11, 2, 0 on the other give
    the gradient of one batch of all 30 targets, with one gradient all-reduce per window."""
    done = run_nlptasks(processes=2, module="tests.ddp_accumulation")
    [lines] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert sorted(line["rank"] for line in lines) == [0, 1], done.stdout
    for line in lines:
        assert line["all_reduces"] == 1, line
        assert line["error"] < 1e-6, line
