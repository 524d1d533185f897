"""Interrupts and exact resume, on real subprocesses.

SIGINT/SIGTERM: the current step finishes, ``checkpoints/last`` is saved, one line with the
resume command, exit 130/143. SIGKILL at a random step: ``nlptasks resume`` continues from the
newest whole checkpoint, and the final weights are bitwise those of an unbroken run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlptasks.testing.processes import nlptasks_command, offline_env, run_nlptasks

ENV = offline_env()


def _args(model: Path, files: tuple[Path, Path], *extra: str) -> list[str]:
    train, dev = files
    return [
        "sentiment",
        f"model={model}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.mixed_precision=no",  # bitwise comparisons
        *extra,
    ]


# Three epochs of 13 steps (400 rows, batch 32), evaluations that move the best checkpoint,
# dropout on (the random state must resume too), a checkpoint every 2 steps.
RESUMABLE = ("train.max_steps=40", "train.batch_size=32", "train.eval_every=5",
             "train.save_every=2", "train.log_every=1", "train.learning_rate=1e-3")  # fmt: skip


def _start(processes: int, args: list[str], run_dir: Path) -> subprocess.Popen[str]:
    """``nlptasks run ARGS --json`` on ``processes`` processes, its events on stdout."""
    return subprocess.Popen(
        [*nlptasks_command(processes), "run", *args, "--output-dir", str(run_dir), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _wait_for_step(process: subprocess.Popen[str], step: int, kind: str = "step") -> None:
    """Read the run's JSON events until one of ``kind`` at ``step`` or later."""
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["type"] == kind and event["step"] >= step:
            return
    raise AssertionError(f"the run ended before step {step}: {process.stderr.read()}")  # type: ignore[union-attr]


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts its workers in sessions of
    their own, so a process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, queue = [], [pid]
    while queue:
        current = queue.pop()
        doomed.append(current)
        queue.extend(children.get(current, []))
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _cli(processes: int, *args: str) -> subprocess.CompletedProcess[str]:
    return run_nlptasks(*args, processes=processes, env=ENV, check=False)


def _same_weights(a: Path, b: Path, folder: str = "model") -> None:
    left = load_file(str(a / folder / "model.safetensors"))
    right = load_file(str(b / folder / "model.safetensors"))
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), name  # bitwise, not approximately


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_last_checkpoint_and_exits_cleanly(
    signum: int, tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = _args(tiny_bert, sst2_small, "train.max_steps=100000", "train.log_every=1",
                 "train.batch_size=8")  # fmt: skip
    process = _start(1, args, run_dir)
    _wait_for_step(process, 1)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr  # 130 for SIGINT, 143 for SIGTERM
    lines = [line for line in stderr.splitlines() if line.strip()]
    name = signal.Signals(signum).name
    assert len(lines) == 1 and lines[0].startswith(f"Error: Interrupted by {name} at step")
    assert lines[0].endswith(f"Resume with: nlptasks resume {run_dir}")
    assert "Traceback" not in stderr
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-2]["type"] == "checkpoint" and events[-1]["type"] == "interrupted"
    assert (run_dir / "checkpoints/last/model.safetensors").is_file()
    state = json.loads((run_dir / "checkpoints/last/trainer_state.json").read_text())
    assert state["step"] == events[-1]["step"] >= 1
    assert (run_dir / "recipe.yaml").is_file()
    assert not (run_dir / "results.json").exists()  # no results claimed for an unfinished run


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_resume_after_a_kill_is_bitwise_the_unbroken_run(
    how: str, tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    args = _args(tiny_bert, sst2_small, *RESUMABLE)
    unbroken = _cli(1, "run", *args, "--output-dir", str(tmp_path / "a"), "-q")
    assert unbroken.returncode == 0, unbroken.stderr

    broken = tmp_path / "b"
    process = _start(1, args, broken)
    step = random.Random(os.getpid()).randint(3, 17)  # anywhere, mid-epoch or not
    _wait_for_step(process, step)
    if how == "SIGKILL":
        _kill_tree(process.pid)  # no handler runs: only saved checkpoints count
    else:
        process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert not (broken / "results.json").exists()

    resumed = _cli(1, "resume", str(broken), "-q")
    assert resumed.returncode == 0, resumed.stderr
    _same_weights(tmp_path / "a", broken)  # the final model: the best checkpoint
    _same_weights(tmp_path / "a", broken, "checkpoints/last")  # and the weights of step 40
    first = json.loads((tmp_path / "a/results.json").read_text())
    again = json.loads((broken / "results.json").read_text())
    assert again["metrics"] == first["metrics"]
    assert again["train"]["train_loss"] == first["train"]["train_loss"]
    assert again["train"]["examples_seen"] == first["train"]["examples_seen"]
    events = [json.loads(x) for x in (broken / "events.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "run_start"]
    assert len(starts) == 2 and starts[1]["resumed_from"].endswith("checkpoints/last")
    # Resuming a finished run is refused in one line.
    again_resumed = _cli(1, "resume", str(broken))
    assert again_resumed.returncode == 1 and "finished already" in again_resumed.stderr


@pytest.mark.slow
def test_two_processes_resume_bitwise(sst2_small: tuple[Path, Path], tmp_path: Path) -> None:
    from nlptasks.testing import make_tiny_bert
    from tests.conftest import sst2_rows

    model = make_tiny_bert(tmp_path / "tiny", [t for t, _ in sst2_rows("train", 2000)])
    args = _args(model, sst2_small, *RESUMABLE, "train.batch_size=16")
    unbroken = _cli(2, "run", *args, "--output-dir", str(tmp_path / "a"), "-q")
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    broken = tmp_path / "b"
    process = _start(2, args, broken)
    _wait_for_step(process, 9)
    _kill_tree(process.pid)
    process.communicate(timeout=120)
    resumed = _cli(2, "resume", str(broken), "-q")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_weights(tmp_path / "a", broken)
    _same_weights(tmp_path / "a", broken, "checkpoints/last")


def test_a_corrupt_last_checkpoint_falls_back_with_a_message(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = _args(tiny_bert, sst2_small, "train.max_steps=4", "train.eval_every=2",
                 "train.batch_size=16", "train.learning_rate=1e-12")  # fmt: skip
    process = _start(1, [*args[:-1], "train.max_steps=100000"], run_dir)
    _wait_for_step(process, 5)
    _kill_tree(process.pid)
    process.communicate(timeout=120)
    weights = run_dir / "checkpoints/last/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a disk that filled up mid-write
    from nlptasks.training.checkpoints import find_resumable

    with pytest.warns(
        UserWarning, match=r"unusable checkpoints: last \(model.safetensors .*from best"
    ):
        path, state = find_resumable(run_dir / "checkpoints")
    assert path.name == "best"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_the_final_save_leaves_a_whole_run(
    signum: int, tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGTERM or SIGINT while results and the model are written: the save finishes and the run is
    complete, so it exits 0 (a scheduler must not requeue it) with a warning."""
    run_dir = tmp_path / "run"
    args = _args(tiny_bert, sst2_small, "train.max_steps=3", "train.batch_size=16")
    process = _start(1, args, run_dir)
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line)["type"] == "train_end":
            process.send_signal(signum)
            break
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "the run finished and its results are complete" in stderr
    for name in ("results.json", "README.md", "model/model.safetensors", "model/config.json"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".*.tmp"))
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "run_end"


def test_a_second_sigint_stops_at_once(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = _args(tiny_bert, sst2_small, "train.max_steps=100000", "train.log_every=1",
                 "train.batch_size=8", "train.eval_every=1000")  # fmt: skip
    process = _start(1, args, run_dir)
    _wait_for_step(process, 2)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)  # impatient: no waiting for the step or the save
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not (run_dir / "results.json").exists()
    # Whatever was on disk is whole: a checkpoint is either absent or complete.
    last = run_dir / "checkpoints" / "last"
    if last.exists():
        assert (last / "trainer_state.json").is_file()
