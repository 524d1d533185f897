"""A run in use is locked for everyone, a failed run says so, and what a run records stays
true: real processes holding a run, real torn checkpoints, real cards and exports."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import ModelCard

from nlptasks.cli import cli
from nlptasks.runs.lock import run_lock
from nlptasks.runs.status import read_status
from nlptasks.testing.processes import nlptasks_command, offline_env

ENV = offline_env()


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _train(model: Path, files: tuple[Path, Path], run: Path, *extra: str) -> list[str]:
    train, dev = files
    return ["run", "sentiment", f"model={model}", f"data.train_path={train}",
            f"data.eval_path={dev}", "train.max_steps=2", *extra, "-o", str(run), "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    root = tmp_path_factory.mktemp("lock")
    lines = (Path(__file__).parents[1] / "../shared/data/sst2/train.tsv").read_text().splitlines()
    (root / "data").mkdir()
    train, dev = root / "data/train.tsv", root / "data/dev.tsv"
    train.write_text("\n".join(lines[:101]) + "\n")
    dev.write_text("\n".join([lines[0], *lines[101:141]]) + "\n")
    # The command names the data through a symlink: recipe.yaml records the resolved path,
    # the command line (results.json, the card) the one typed.
    (root / "dlink").symlink_to(root / "data")
    typed = (root / "dlink/train.tsv", root / "dlink/dev.tsv")
    # A process of its own: results.json records the command line of an nlptasks process.
    done = _cli(*_train(tiny_bert, typed, root / "run"))
    assert done.returncode == 0, done.stderr
    return root / "run"


def _copy(run: Path, target: Path, unfinished: bool = False) -> Path:
    shutil.copytree(run, target)
    if unfinished:
        (target / "results.json").unlink()
    return target


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*nlptasks_command(1), *args], capture_output=True, text=True, env=ENV, timeout=300
    )


def test_a_training_run_holds_its_run_until_it_ends(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = _train(tiny_bert, sst2_small, run, "train.max_steps=100000", "train.batch_size=8",
                  "train.log_every=1", "train.save_every=1")[:-1] + ["--json"]  # fmt: skip
    process = subprocess.Popen(
        [*nlptasks_command(1), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ENV,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:  # until a checkpoint exists
            if json.loads(line)["type"] == "checkpoint":
                break
        last = str(run / "checkpoints/last")
        for command in (["resume", str(run)], ["eval", "sentiment", "-m", last]):
            done = _cli(*command)
            lines = [x for x in done.stderr.splitlines() if x.strip()]
            assert done.returncode == 1 and len(lines) == 1, done.stderr
            assert "is in use by another nlptasks process" in lines[0]
        assert read_status(run)["state"] == "running"
        events = [json.loads(x)["type"] for x in (run / "events.jsonl").read_text().splitlines()]
        assert events.count("run_start") == 1  # nobody else wrote into the run
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert read_status(run)["state"] == "interrupted"
    with run_lock(run):  # the kernel dropped the lock with the process
        pass


def test_a_process_holding_a_finished_run_blocks_writers_and_readers(
    finished: Path, tmp_path: Path
) -> None:
    run = _copy(finished, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; h = open(sys.argv[1], 'a+'); "
         "fcntl.flock(h, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
         str(run / ".lock")], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, output = _invoke("eval", "sentiment", "-m", str(run / "model"))
        assert code == 1 and "is in use" in output and "add this evaluation" in output
        code, output = _invoke("export", str(run), str(tmp_path / "hub"))
        assert code == 1 and "is in use" in output and not (tmp_path / "hub").exists()
    finally:
        holder.kill()
        holder.wait()
    code, output = _invoke("export", str(run), str(tmp_path / "hub"))
    assert code == 0, output


def test_a_failed_run_is_marked_and_resume_says_why(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="marked failed in status.json"):
        code, output = _invoke(
            *_train(
                tiny_bert,
                sst2_small,
                run,
                "train.learning_rate=1e30",
                "train.mixed_precision=no",
                "train.max_steps=3",
            )  # fmt: skip
        )
    assert code == 1 and "NaN" in output
    status = read_status(run)
    assert status["state"] == "failed" and "NaN" in status["error"]
    code, output = _invoke("resume", str(run))
    assert code == 1 and "failed" in output and "saved no checkpoint" in output


def test_a_torn_checkpoint_falls_back_to_the_one_named(finished: Path, tmp_path: Path) -> None:
    run = _copy(finished, tmp_path / "run", unfinished=True)
    optimizer = run / "checkpoints/last/optimizer.json"
    text = optimizer.read_bytes()
    optimizer.write_bytes(text.replace(b"[", b" ", 1))  # same size, other content
    with pytest.warns(UserWarning, match=r"last \(optimizer.json was altered.*Resuming from best"):
        code, output = _invoke("resume", str(run), "-q")
    assert code == 0, output
    assert (run / "results.json").is_file()


def test_a_resume_of_an_untouched_or_moved_run_is_accepted(finished: Path, tmp_path: Path) -> None:
    run = _copy(finished, tmp_path / "run", unfinished=True)
    recipe = run / "recipe.yaml"
    train = Path(next(x for x in recipe.read_text().splitlines() if "train_path:" in x).split()[1])
    moved = shutil.copy(train, tmp_path / "moved.tsv")  # the same bytes elsewhere
    recipe.write_text(recipe.read_text().replace(str(train), str(moved)))
    code, output = _invoke("resume", str(run), "-q")
    assert code == 0, output
    assert read_status(run)["state"] == "finished"


def test_an_unreadable_card_is_rewritten_on_eval(finished: Path, tmp_path: Path) -> None:
    run = _copy(finished, tmp_path / "run")
    (run / "README.md").write_text("---\nmodel-index: [unclosed\n---\n")
    with pytest.warns(UserWarning, match="did not parse as a model card.*rewritten"):
        code, output = _invoke("eval", "sentiment", "-m", str(run / "model"))
    assert code == 0 and "accuracy" in output
    card = ModelCard.load(run / "README.md")
    assert {r.metric_type for r in card.data.eval_results} >= {"accuracy", "macro_f1"}


def test_export_leaves_out_local_paths(finished: Path, tmp_path: Path) -> None:
    code, output = _invoke("export", str(finished), str(tmp_path / "hub"))
    assert code == 0, output
    local = str(finished.parent)  # the data files, the model and the run all lie there
    typed = [a.split("=", 1)[-1] for a in _train(finished, (finished, finished), finished)]
    typed += [str(finished.parent / "dlink/train.tsv"), str(finished.parent / "dlink")]
    assert "dlink/train.tsv" in (finished / "results.json").read_text()  # what the test is for
    for path in sorted((tmp_path / "hub").iterdir()):  # every file, the model's JSON too
        text = path.read_bytes().decode("utf-8", errors="replace")
        leaks = [
            p for p in (local, str(Path.home()) + "/", *typed) if p.startswith("/") and p in text
        ]
        assert not leaks, (path.name, leaks)
    exported = json.loads((tmp_path / "hub/results.json").read_text())
    original = json.loads((finished / "results.json").read_text())
    assert exported["data"]["eval"]["files"] == ["dev.tsv"]
    assert exported["data"]["eval"]["sha256"] == original["data"]["eval"]["sha256"]
    assert exported["run_dir"] == "run" and "/" not in exported["model_path"]
    assert "train_path: train.tsv" in (tmp_path / "hub/README.md").read_text()


def test_results_record_the_task_plugin_and_compare_names_what_it_leaves_out(
    finished: Path, tmp_path: Path
) -> None:
    results = json.loads((finished / "results.json").read_text())
    plugin = results["task_plugin"]
    assert plugin["distribution"] == "nlptasks" and plugin["version"]
    code, output = _invoke("compare", "--json", str(finished), str(finished))
    assert code == 0, output
    found = json.loads(output)
    assert {m["metric"] for m in found["metrics"]} == {"accuracy", "macro_f1"}
    assert set(found["not_compared"]) == {"loss"}


def _hold(lock: Path, how: str) -> subprocess.Popen[str]:
    """Another process holding ``lock`` (``LOCK_SH`` or ``LOCK_EX``) until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl, sys, time; h = open(sys.argv[1], 'a+'); "
         f"fcntl.flock(h, fcntl.{how}); print('held', flush=True); time.sleep(120)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_two_evals_of_one_model_run_at_once(finished: Path, tmp_path: Path) -> None:
    run = _copy(finished, tmp_path / "run")
    other = _hold(run / ".lock", "LOCK_SH")  # an evaluation of the model in progress
    try:
        code, output = _invoke("eval", "sentiment", "-m", str(run / "model"))
    finally:
        other.kill()
        other.wait()
    assert code == 0 and "accuracy" in output, output
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == 1


def test_a_refused_resume_keeps_the_state_the_run_had(finished: Path, tmp_path: Path) -> None:
    run = _copy(finished, tmp_path / "run", unfinished=True)
    (run / "status.json").write_text('{"state": "interrupted", "at": "then"}')
    for state in (run / "checkpoints").glob("*/trainer_state.json"):  # every one torn
        state.write_text("{}")
    code, output = _invoke("resume", str(run), "-q")
    assert code == 1 and "No usable checkpoint" in output, output
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"


def test_a_killed_run_reads_interrupted_and_a_running_one_is_not_offered_for_resume(
    finished: Path, tmp_path: Path
) -> None:
    run = _copy(finished, tmp_path / "runs/run", unfinished=True)
    (run / "status.json").write_text('{"state": "running", "at": "then"}')  # then SIGKILL
    assert read_status(run)["state"] == "interrupted"
    trainer = _hold(run / ".lock", "LOCK_EX")
    try:
        assert read_status(run)["state"] == "running"
        code, output = _invoke("leaderboard", str(tmp_path / "runs"))
    finally:
        trainer.kill()
        trainer.wait()
    assert code == 0, output
    assert "is running (in use" in output and "resume" not in output, output


def test_a_resume_may_change_what_only_logs_saves_or_reports(
    finished: Path, tmp_path: Path
) -> None:
    run = _copy(finished, tmp_path / "run", unfinished=True)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["train"].update(log_every=1, save_every=1, save_total_limit=1,
                           bootstrap_resamples=10, bootstrap_seed=7)  # fmt: skip
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    code, output = _invoke("resume", str(run), "-q")
    assert code == 0, output
    recipe["train"]["eval_every"] = 1  # picks the best checkpoint: still refused
    run = _copy(finished, tmp_path / "run2", unfinished=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    code, output = _invoke("resume", str(run), "-q")
    assert code == 1 and "train.eval_every" in output, output
