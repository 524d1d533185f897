# ruff: noqa: E501  (one case per line reads best as a table)
"""Bad-input cases: run directories, locks, exports and what a result means."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import IO, Any

from click.testing import CliRunner

from nlptasks.cli import cli
from tests.bad_input import Case, Files, write

# Lock files held open by this process while the table runs: flock locks belong to an open
# file, so the CLI (in this process, another open file) finds these runs in use.
_HELD: list[IO[str]] = []


def _copy(f: Files, name: str, unfinished: bool = False) -> Path:
    """A copy of the finished run (never the run itself); ``unfinished`` drops results.json
    so that it can be resumed."""
    copy = f["root"] / name
    shutil.copytree(f["run"], copy)
    if unfinished:
        (copy / "results.json").unlink()
        (copy / "status.json").write_text('{"state": "interrupted"}\n')
    return copy


def _edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _same_size_edit(path: Path, old: bytes, new: bytes) -> None:
    """Alter a file in place, keeping its size (a torn write the size check cannot see)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert old in data, path
    path.write_bytes(data.replace(old, new, 1))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _run(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code in (0, 1), result.output


def _hold(run: Path) -> None:
    handle = (run / ".lock").open("a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(handle)


def add_files(f: Files) -> None:
    """The files these cases need, under f["root"]."""
    # ---- a run that failed before its first checkpoint (a NaN loss)
    failed = f["root"] / "failed-run"
    _run("run", "sentiment", f"model={f['model']}", f"data.train_path={f['train']}",
         f"data.eval_path={f['dev']}", "train.max_steps=3", "train.learning_rate=1e30",
         "train.mixed_precision=no", "-o", str(failed), "-q")  # fmt: skip
    f["failed_run"] = failed
    # ---- torn checkpoints: altered in place, same size
    torn = _copy(f, "torn-optimizer", unfinished=True)
    for kind in ("last", "best"):
        _same_size_edit(torn / "checkpoints" / kind / "optimizer.json", b"[", b" ")
    f["torn_optimizer"] = torn
    torn = _copy(f, "torn-weights", unfinished=True)
    for kind in ("last", "best"):
        _flip_last_byte(torn / "checkpoints" / kind / "model.safetensors")
    f["torn_weights"] = torn
    torn = _copy(f, "torn-scheduler", unfinished=True)
    for kind in ("last", "best"):
        _flip_last_byte(torn / "checkpoints" / kind / "rng-0.json")
    f["torn_rng"] = torn
    # ---- an edited recipe.yaml on an unfinished run
    for name, old, new in (
        ("lr", b"learning_rate: 0.0001", b"learning_rate: 0.0009"),
        ("batch", b"batch_size: 32", b"batch_size: 16"),
        ("seed", b"  seed: 42\n  eval_every", b"  seed: 43\n  eval_every"),
    ):
        edited = _copy(f, f"edited-{name}", unfinished=True)
        recipe = edited / "recipe.yaml"
        recipe.write_bytes(recipe.read_bytes().replace(old, new, 1))
        assert recipe.read_bytes().count(new) == 1, name
        f[f"edited_{name}"] = edited
    moved = _copy(f, "edited-data", unfinished=True)
    other = write(f, "other-train.tsv", f["train"].read_text().replace("\t1\n", "\t0\n", 3))
    recipe = moved / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(str(f["train"]), str(other)))
    f["edited_data"] = moved
    changed = _copy(f, "changed-data", unfinished=True)
    data = write(f, "changing-train.tsv", f["train"].read_text())
    _repoint(changed, f["train"], data)
    data.write_text(data.read_text().replace("\t1\n", "\t0\n", 3))  # changed after the start
    f["changed_data"] = changed
    # ---- a run whose eval data is held out of its training file, which then changes
    held_out_train = write(f, "held-out-train.tsv", f["train"].read_text())
    held = f["root"] / "held-out-run"
    _run("run", "sentiment", f"model={f['model']}", f"data.train_path={held_out_train}",
         "data.eval_fraction=0.2", "train.max_steps=2", "-o", str(held), "-q")  # fmt: skip
    f["held_out_run"] = held
    held2 = f["root"] / "held-out-run-2"
    shutil.copytree(held, held2)
    f["held_out_run_2"] = held2
    changing = write(f, "held-out-train-2.tsv", held_out_train.read_text())
    _repoint(held2, held_out_train, changing)
    changing.write_text(changing.read_text() + "an extra row\t1\n")
    # ---- model cards that do not parse
    for name, text in (
        ("bad-yaml", b"---\nmodel-index: [unclosed\n---\n# card\n"),
        ("list-front-matter", b"---\n- a\n- b\n---\n# card\n"),
        ("bad-model-index", b"---\nmodel-index: 5\n---\n# card\n"),
        ("not-utf8", b"---\nlicense: caf\xe9\n---\n"),
    ):
        copy = _copy(f, f"card-{name}")
        (copy / "README.md").write_bytes(text)
        f[f"card_{name}"] = copy
    # ---- verify on other data than expect: was measured on
    other_data = _copy(f, "verify-other-sha")
    recipe = other_data / "recipe.yaml"
    text = recipe.read_text().replace("  examples: 1276\n", "  examples: 40\n")
    recipe.write_text(text.replace("  sha256: null\n", f"  sha256: {'ab' * 32}\n"))
    f["verify_other_sha"] = other_data
    # ---- leaderboard: the same file read in the other direction (inputs and references)
    board = f["root"] / "boards"
    board.mkdir()
    shutil.copytree(f["run"], board / "forward")
    backward = board / "backward"
    shutil.copytree(f["run"], backward)
    rows = [json.loads(line) for line in (backward / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        row["text"], row["reference"] = row["reference"], row["text"]
    (backward / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _edit_json(backward / "results.json", lambda r: r["data"]["eval"].pop("examples_sha256", None))
    f["boards"] = board
    # ---- compare: a run made before its plugin renamed a statistic
    renamed = _copy(f, "renamed-statistics")
    rows = [json.loads(line) for line in (renamed / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        row["statistics"]["hits"] = row["statistics"].pop("correct")
    (renamed / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _edit_json(
        renamed / "results.json", lambda r: r.setdefault("task_plugin", {}).update(version="0.0.1")
    )
    f["renamed_statistics"] = renamed
    changed_stats = _copy(f, "changed-statistics")
    rows = [json.loads(x) for x in (changed_stats / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        row["statistics"]["examples"] = 2.0  # a statistic whose meaning changed
    (changed_stats / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    f["changed_statistics"] = changed_stats
    # ---- runs in use: a lock held by another open file
    for name in ("in-use", "in-use-unfinished"):
        copy = _copy(f, name, unfinished=name.endswith("unfinished"))
        _hold(copy)
        f[name.replace("-", "_")] = copy
    # ---- another run, to export into
    f["other_run"] = _copy(f, "other-run")


def _repoint(run: Path, old: Path, new: Path) -> None:
    """A copy of a run that trained on ``new`` (a copy of ``old``'s bytes): every record of
    the path changes, the recorded SHA-256 stays right."""
    for name in ("recipe.yaml", "events.jsonl", "results.json"):
        path = run / name
        if path.is_file():
            path.write_text(path.read_text().replace(str(old), str(new)))


def _export(f: Files, run: str, dest: Any) -> list[str]:
    return ["export", str(f[run]), str(dest(f))]


CASES: list[Case] = [
    # ------------------------------------------------------------- exports into runs (6)
    ("export into the run's model folder", lambda f: _export(f, "run", lambda f: f["run"] / "model" / "hub"), 1, ("inside the run directory", "export never writes into a run", "Choose a folder outside")),
    ("export into a new folder of the run", lambda f: _export(f, "run", lambda f: f["run"] / "exported"), 1, ("inside the run directory", "Choose a folder outside")),
    ("export into the run's checkpoints", lambda f: _export(f, "run", lambda f: f["run"] / "checkpoints" / "hub"), 1, ("inside the run directory",)),
    ("export onto the run itself", lambda f: _export(f, "run", lambda f: f["run"]), 1, ("inside the run directory",)),
    ("export into another run", lambda f: _export(f, "run", lambda f: f["other_run"] / "hub"), 1, ("inside the run directory", "other-run")),
    ("export into a run by a relative path", lambda f: _export(f, "run", lambda f: f["run"] / "model" / ".." / "x"), 1, ("inside the run directory",)),
    # ------------------------------------------------------------------- failed runs (6)
    ("leaderboard flags a failed run", lambda f: ["leaderboard", str(f["failed_run"])], 0, ("failed-run is a run that failed", "training loss became NaN")),
    ("leaderboard of a folder with a failed run", lambda f: ["leaderboard", str(f["root"]), "--format", "csv"], 0, ("failed-run is a run that failed",)),
    ("resume a failed run", lambda f: ["resume", str(f["failed_run"])], 1, ("failed", "training loss became NaN", "saved no checkpoint", "start a new run")),
    ("resume a torn optimizer", lambda f: ["resume", str(f["torn_optimizer"])], 1, ("No usable checkpoint", "optimizer.json was altered", "SHA-256 differs")),
    ("resume torn weights", lambda f: ["resume", str(f["torn_weights"])], 1, ("No usable checkpoint", "model.safetensors was altered")),
    ("resume a torn random state", lambda f: ["resume", str(f["torn_rng"])], 1, ("rng-0.json was altered",)),
    # ------------------------------------------------------------ cards that do not parse (4)
    ("eval with a card of bad YAML", lambda f: ["eval", "sentiment", "-m", str(f["card_bad-yaml"] / "model")], 0, ("accuracy",)),
    ("eval with a card that is a list", lambda f: ["eval", "sentiment", "-m", str(f["card_list-front-matter"] / "model")], 0, ("accuracy",)),
    ("eval with a broken model-index", lambda f: ["eval", "sentiment", "-m", str(f["card_bad-model-index"] / "model")], 0, ("accuracy",)),
    ("eval with a card not UTF-8", lambda f: ["eval", "sentiment", "-m", str(f["card_not-utf8"] / "model")], 0, ("accuracy",)),
    # ------------------------------------------------------------------ runs in use (5)
    ("resume a run in use", lambda f: ["resume", str(f["in_use_unfinished"])], 1, ("is in use by another nlptasks process", "resume it", "Wait")),
    ("compare --json lists what it leaves out", lambda f: ["compare", "--json", str(f["run"]), str(f["other_run"])], 0, ('"not_compared": {"loss"',)),
    ("eval a run in use", lambda f: ["eval", "sentiment", "-m", str(f["in_use"] / "model")], 1, ("is in use", "add this evaluation to its card")),
    ("eval a checkpoint of a run in use", lambda f: ["eval", "sentiment", "-m", str(f["in_use_unfinished"] / "checkpoints" / "last")], 1, ("is in use", "read its checkpoint")),
    ("export a run in use", lambda f: ["export", str(f["in_use"]), str(f["root"] / "exported-in-use")], 1, ("is in use", "export it")),
    # ------------------------------------------------- nothing changes what a result means
    ("resume after the learning rate was edited", lambda f: ["resume", str(f["edited_lr"])], 1, ("changed since the run started", "train.learning_rate: 0.0001 -> 0.0009", "Undo the change")),
    ("resume after the batch size was edited", lambda f: ["resume", str(f["edited_batch"])], 1, ("train.batch_size: 32 -> 16",)),
    ("resume after the seed was edited", lambda f: ["resume", str(f["edited_seed"])], 1, ("train.seed: 42 -> 43",)),
    ("resume on other training data", lambda f: ["resume", str(f["edited_data"])], 1, ("data.train_path: the file's content differs",)),
    ("resume after the training file changed", lambda f: ["resume", str(f["changed_data"])], 1, ("data.train_path: the file's content differs",)),
    ("eval after the training file changed", lambda f: ["eval", "sentiment", "-m", str(f["held_out_run_2"] / "model")], 1, ("changed since it trained", "would score rows the model trained on", "data.eval_path=FILE")),
    ("eval on another held-out seed", lambda f: ["eval", "sentiment", "-m", str(f["held_out_run"] / "model"), "data.split_seed=7"], 1, ("data.split_seed=7 holds out other rows", "rows the model trained on")),
    ("eval on another held-out fraction", lambda f: ["eval", "sentiment", "-m", str(f["held_out_run"] / "model"), "data.eval_fraction=0.5"], 1, ("data.eval_fraction=0.5 holds out other rows",)),
    ("verify a run on other data", lambda f: ["verify", str(f["run"])], 1, ("evaluated on other data than its recipe's expect", "40 examples, not 1276")),
    ("verify a run on other bytes", lambda f: ["verify", str(f["verify_other_sha"])], 1, ("files with SHA-256", "not abababababab")),
    ("leaderboard keeps directions apart", lambda f: ["leaderboard", str(f["boards"]), "--format", "markdown"], 0, ("eval set", "| 1 |")),
    ("compare after statistics were renamed", lambda f: ["compare", str(f["run"]), str(f["renamed_statistics"])], 1, ("do not match task 'sentiment'", "made with 0.0.1", "they give accuracy 0, the run reported 0.5")),
    ("compare after a statistic changed meaning", lambda f: ["compare", str(f["changed_statistics"]), str(f["run"])], 1, ("do not match task 'sentiment'", "the run reported")),
    ("compare says what it leaves out", lambda f: ["compare", str(f["run"]), str(f["other_run"])], 0, ("Not compared: loss",)),
]  # fmt: skip
