"""The real SmolLM2-135M-Instruct (pip package, converted once) on public-domain text."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlptasks.cli import cli
from nlptasks.models import resolve_model
from nlptasks.runner import run

pytestmark = pytest.mark.slow


def test_the_preset_converts_once_and_fine_tunes(tmp_path: Path) -> None:
    listed = CliRunner().invoke(cli, ["list", "models", "--json"])
    assert listed.exit_code == 0
    row = next(r for r in json.loads(listed.output) if r["name"] == "smollm2-135m")
    assert row["plugin"] == "generation"

    folder = Path(resolve_model("smollm2-135m"))  # converts (about 20-60 s)
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert Path(resolve_model("smollm2-135m")) == folder
    assert weights.stat().st_mtime_ns == stamp  # not converted again

    result = run(
        "generation",
        "smollm2",
        [
            "data.max_train_examples=4",  # four Bible chapters
            "data.max_eval_examples=2",  # two chapters of the held-out books
            "options.block_size=64",
            "train.max_steps=2",
            "train.batch_size=2",
            "generation.max_new_tokens=5",
        ],
        output_dir=str(tmp_path / "run"),
    )
    assert math.isfinite(result.metrics["perplexity"]) and result.metrics["perplexity"] > 1
    samples = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 and json.loads(samples[0])["before"]
