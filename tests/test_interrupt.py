"""SIGINT/SIGTERM: the current step finishes, the last checkpoint is saved, one line, exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_last_checkpoint_and_exits_cleanly(
    signum: int, tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, dev = sst2_small
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nlptasks",
            "run",
            "sentiment",
            f"model={tiny_bert}",
            f"data.train_path={train}",
            f"data.eval_path={dev}",
            "train.max_steps=100000",
            "train.log_every=1",
            "train.batch_size=8",
            "--output-dir",
            str(run_dir),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line)["type"] == "step":
            break
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    name = signal.Signals(signum).name
    assert len(lines) == 1 and lines[0].startswith(f"Error: Interrupted by {name} at step")
    assert "Traceback" not in stderr
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-2]["type"] == "checkpoint" and events[-1]["type"] == "interrupted"
    assert (run_dir / "checkpoints/last/model.safetensors").is_file()
    state = json.loads((run_dir / "checkpoints/last/trainer_state.json").read_text())
    assert state["step"] == events[-1]["step"] >= 1
    assert (run_dir / "recipe.yaml").is_file()
    assert not (run_dir / "results.json").exists()  # no results claimed for an unfinished run
