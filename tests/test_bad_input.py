# ruff: noqa: E501  (one case per line reads best as a table)
"""The bad-input suite: mistakes a new user makes, across the CLI.

Every case checks the exit code, that the one-line message names the problem (and, where the
message can, the fix), that no traceback is printed, and that an earlier finished run is left
byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlptasks.cli import cli
from nlptasks.testing import make_tiny_bert
from tests.bad_input import AREAS, Case, Files
from tests.conftest import SST2


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Files:
    """Every bad (and one good) data file, recipe, model and run the cases below use."""
    root = tmp_path_factory.mktemp("bad")
    f: Files = {"root": root, "model": tiny_bert}
    lines = (SST2 / "train.tsv").read_text().splitlines()

    def write(name: str, text: str | bytes) -> Path:
        path = root / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    f["train"] = write("train.tsv", "\n".join(lines[:101]) + "\n")
    f["dev"] = write("dev.tsv", "\n".join([lines[0], *lines[101:141]]) + "\n")
    f["empty"] = write("empty.csv", "")
    f["header_only"] = write("header.tsv", "sentence\tlabel\n")
    f["one_class"] = write("one.csv", "text,label\n" + "good film,pos\n" * 20)
    f["one_named_class"] = write("onenamed.csv", "text,label\n" + "good film,1\n" * 20)
    f["mixed"] = write("mixed.csv", "text,label\n" + "a,0\nb,1\nc,pos\nd,neg\n" * 5)
    f["numbers"] = write(
        "numbers.csv", "text,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
    )
    f["no_tab"] = write("notab.tsv", "sentence label\n" + "a film 1\n" * 20)
    f["broken_jsonl"] = write("broken.jsonl", '{"text": "a", "label": 1}\n{"text": "b", lab\n')
    f["latin1"] = write("latin1.csv", "text,label\ncaf\xe9 cr\xe8me,1\nbad,0\n".encode("latin-1"))
    f["xlsx"] = write("data.xlsx", "not a spreadsheet")
    f["bad_yaml"] = write("bad.yaml", "task: sentiment\nmodel: [unclosed\n")
    f["list_yaml"] = write("list.yaml", "- a\n- b\n")
    f["latin1_yaml"] = write("latin1.yaml", "task: sentiment\nmodel: caf\xe9\n".encode("latin-1"))
    f["qa_yaml"] = write("qa.yaml", "task: qa\nmodel: m\n")
    f["no_model_yaml"] = write("nomodel.yaml", "task: sentiment\n")
    write("p1.yaml", "task: sentiment\nmodel: m\n")
    write("p2.yaml", "extends: p1\n")
    f["two_levels_yaml"] = write("p3.yaml", "extends: p2\n")
    f["no_task_yaml"] = write("notask.yaml", "model: m\n")
    f["missing_field"] = write("missing.jsonl", '{"text": "fine"}\n{"txt": "typo"}\n')
    f["not_json"] = write("notjson.jsonl", '{"text": "fine"}\nnot json\n')
    f["number_line"] = write("number.jsonl", '{"text": "fine"}\n42\n')
    f["number_field"] = write("numberfield.jsonl", '{"text": 5}\n')
    f["latin1_jsonl"] = write("latin1.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"))
    # Models: a folder that is none, one without tokenizer, a foreign tokenizer, torn weights.
    (root / "not-a-model").mkdir()
    f["not_a_model"] = root / "not-a-model"
    f["no_tokenizer"] = _model_copy(
        tiny_bert, root / "no-tokenizer", keep=("config.json", "model.safetensors")
    )
    foreign = _model_copy(
        tiny_bert, root / "foreign-tokenizer", keep=("config.json", "model.safetensors")
    )
    small = make_tiny_bert(root / "small-vocabulary")  # a few sentences: a few dozen tokens
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(small / name, foreign / name)
    f["foreign_tokenizer"] = foreign
    torn = _model_copy(tiny_bert, root / "torn")
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    f["torn"] = torn
    f["a_file"] = write("a-file", "x")
    f["pickled"] = _pickled_with_code(tiny_bert, root / "pickled")
    # A finished run that no case may touch.
    run = root / "finished"
    code, output = _invoke("run", "sentiment", f"model={tiny_bert}", f"data.train_path={f['train']}",
                           f"data.eval_path={f['dev']}", "train.max_steps=2", "-o", str(run), "-q")  # fmt: skip
    assert code == 0, output
    f["run"] = run
    for area in AREAS:  # each class of faults adds its own files (and may use the run)
        area.add_files(f)
    return f


def _pickled_with_code(source: Path, target: Path) -> Path:
    """A model whose pytorch_model.bin pickles a call to os.system (never to be run)."""
    import os

    import torch
    from safetensors.torch import load_file

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo this must never run",))

    model = _model_copy(source, target)
    weights: dict[str, object] = dict(load_file(str(model / "model.safetensors")))
    weights["payload"] = Payload()
    (model / "model.safetensors").unlink()
    torch.save(weights, model / "pytorch_model.bin")
    return model


def _model_copy(source: Path, target: Path, keep: tuple[str, ...] = ()) -> Path:
    target.mkdir()
    for path in source.iterdir():
        if not keep or path.name in keep:
            shutil.copy(path, target / path.name)
    return target


def _invoke(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.output


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


RUN = ("run", "sentiment")


def _data(f: Files, train: str, *more: str) -> list[str]:
    return [*RUN, f"model={f['model']}", f"data.train_path={f[train]}", *more]


def _good(f: Files, *more: str) -> list[str]:
    return _data(f, "train", f"data.eval_path={f['dev']}", *more)


CASES: list[Case] = [
    # ---------------------------------------------------------------- recipes and overrides
    ("unknown task", lambda f: ["run", "sentimnet"], 1, ("Unknown task 'sentimnet'", "Did you mean 'sentiment'")),
    ("unknown recipe", lambda f: [*RUN, "-r", "minilmm"], 1, ("minilmm", "Did you mean 'minilm'")),
    ("unknown key", lambda f: [*RUN, "train.epoch=1"], 1, ("unknown key 'train.epoch'", "Did you mean 'train.epochs'")),
    ("misspelled section", lambda f: [*RUN, "trian.seed=1"], 1, ("'trian.seed'", "Did you mean 'train'")),
    ("wrong type", lambda f: [*RUN, "train.batch_size=many"], 1, ("'train.batch_size'", "must be an integer")),
    ("zero epochs", lambda f: [*RUN, "train.epochs=0"], 1, ("'train.epochs' must be a number above 0",)),
    ("negative epochs", lambda f: [*RUN, "train.epochs=-1"], 1, ("'train.epochs' must be a number above 0",)),
    ("infinite epochs", lambda f: [*RUN, "train.epochs=.inf"], 1, ("'train.epochs' must be a number above 0",)),
    ("learning rate 0", lambda f: [*RUN, "train.learning_rate=0"], 1, ("'train.learning_rate' must be above 0",)),
    ("negative learning rate", lambda f: [*RUN, "train.learning_rate=-1e-4"], 1, ("'train.learning_rate' must be above 0",)),
    ("infinite learning rate", lambda f: [*RUN, "train.learning_rate=.inf"], 1, ("'train.learning_rate' must be a finite number",)),
    ("negative grad norm", lambda f: [*RUN, "train.max_grad_norm=-1"], 1, ("'train.max_grad_norm' must be above 0", "null turns clipping off")),
    ("negative weight decay", lambda f: [*RUN, "train.weight_decay=-0.1"], 1, ("'train.weight_decay' must be 0 or more",)),
    ("negative seed", lambda f: [*RUN, "train.seed=-1"], 1, ("'train.seed' must be in 0..4294967295",)),
    ("seed too big", lambda f: [*RUN, "train.seed=4294967296"], 1, ("'train.seed' must be in 0..4294967295",)),
    ("batch size 0", lambda f: [*RUN, "train.batch_size=0"], 1, ("'train.batch_size' must be at least 1",)),
    ("batch not a multiple", lambda f: [*RUN, "train.batch_size=30", "train.gradient_accumulation_steps=4"], 1, ("must be a multiple of 'train.gradient_accumulation_steps' (4)",)),
    ("accumulation 0", lambda f: [*RUN, "train.gradient_accumulation_steps=0"], 1, ("'train.gradient_accumulation_steps' must be >= 1",)),
    ("eval batch 0", lambda f: [*RUN, "train.eval_batch_size=0"], 1, ("'train.eval_batch_size' must be at least 1",)),
    ("max steps 0", lambda f: [*RUN, "train.max_steps=0"], 1, ("'train.max_steps' must be at least 1",)),
    ("warmup ratio 1.5", lambda f: [*RUN, "train.warmup_ratio=1.5"], 1, ("'train.warmup_ratio' must be in [0, 1)",)),
    ("negative warmup", lambda f: [*RUN, "train.warmup_steps=-5"], 1, ("'train.warmup_steps' must not be negative",)),
    ("eval every 0", lambda f: [*RUN, "train.eval_every=0"], 1, ("'train.eval_every' must be at least 1",)),
    ("patience 0", lambda f: [*RUN, "train.early_stopping_patience=0"], 1, ("'train.early_stopping_patience' must be at least 1",)),
    ("log every 0", lambda f: [*RUN, "train.log_every=0"], 1, ("'train.log_every' must be at least 1",)),
    ("save every 0", lambda f: [*RUN, "train.save_every=0"], 1, ("'train.save_every' must be at least 1",)),
    ("save limit 0", lambda f: [*RUN, "train.save_total_limit=0"], 1, ("'train.save_total_limit' must be at least 1",)),
    ("unknown precision", lambda f: [*RUN, "train.mixed_precision=fp8"], 1, ("'train.mixed_precision'", "one of 'auto', 'no', 'bf16', 'fp16'")),
    ("unknown scheduler", lambda f: [*RUN, "train.scheduler=exponential"], 1, ("one of 'linear', 'cosine', 'constant'",)),
    ("fp16 without GPU", lambda f: _good(f, "train.mixed_precision=fp16"), 1, ("fp16", "needs a GPU", "bf16")),
    ("eval fraction 1.5", lambda f: [*RUN, "data.eval_fraction=1.5"], 1, ("'data.eval_fraction' must be between 0 and 1",)),
    ("max length 1", lambda f: [*RUN, "data.max_length=1"], 1, ("'data.max_length' must be at least 2",)),
    ("max train examples 0", lambda f: [*RUN, "data.max_train_examples=0"], 1, ("'data.max_train_examples' must be at least 1",)),
    ("max eval examples 0", lambda f: [*RUN, "data.max_eval_examples=0"], 1, ("'data.max_eval_examples' must be at least 1",)),
    ("beams 0", lambda f: [*RUN, "generation.num_beams=0"], 1, ("'generation.num_beams' must be at least 1",)),
    ("top_p 0", lambda f: [*RUN, "generation.top_p=0"], 1, ("'generation.top_p' must be in (0, 1]",)),
    ("temperature 0", lambda f: [*RUN, "generation.temperature=0"], 1, ("'generation.temperature' must be a number above 0",)),
    ("max new tokens 0", lambda f: [*RUN, "generation.max_new_tokens=0"], 1, ("'generation.max_new_tokens' must be at least 1",)),
    ("generation every 0", lambda f: [*RUN, "generation.every=0"], 1, ("'generation.every' must be at least 1",)),
    ("repeated label names", lambda f: [*RUN, "options.label_names=[a, a]"], 1, ("'options.label_names' must not repeat a name",)),
    ("misspelled option", lambda f: [*RUN, "options.label_colum=x"], 1, ("Did you mean 'options.label_column'",)),
    ("task setting under data", lambda f: [*RUN, "data.label_names=[a, b]"], 1, ("Did you mean 'options.label_names'",)),
    ("task override", lambda f: [*RUN, "task=qa"], 1, ("cannot change the task", "nlptasks run qa")),
    ("remove unknown key", lambda f: [*RUN, "~train.epoch"], 1, ("cannot remove 'train.epoch'", "Did you mean 'train.epochs'")),
    ("override without =", lambda f: [*RUN, "noequals"], 1, ("'noequals' is not KEY=VALUE", "train.epochs=1")),
    ("unknown best metric", lambda f: _good(f, "train.metric_for_best=acuracy"), 1, ("'acuracy'", "Did you mean 'accuracy'")),
    ("malformed yaml", lambda f: [*RUN, "-r", str(f["bad_yaml"])], 1, ("malformed YAML", "line 3", "Fix the syntax")),
    ("recipe not a mapping", lambda f: [*RUN, "-r", str(f["list_yaml"])], 1, ("must be a YAML mapping",)),
    ("recipe not UTF-8", lambda f: [*RUN, "-r", str(f["latin1_yaml"])], 1, ("latin1.yaml", "is not UTF-8", "Save it as UTF-8")),
    ("recipe of another task", lambda f: [*RUN, "-r", str(f["qa_yaml"])], 1, ("recipe for task 'qa'", "nlptasks run qa")),
    ("missing recipe file", lambda f: [*RUN, "-r", str(f["root"] / "nope.yaml")], 1, ("does not exist", "Check the path")),
    ("recipe without model", lambda f: [*RUN, "-r", str(f["no_model_yaml"])], 1, ("missing required key 'model'", "Add 'model: ...'")),
    ("extends two levels", lambda f: [*RUN, "-r", str(f["two_levels_yaml"])], 1, ("only one level of 'extends'",)),
    ("validate a file without task", lambda f: ["recipes", "validate", str(f["no_task_yaml"])], 1, ("has no 'task:' key", "Add 'task: NAME'")),
    # --------------------------------------------------------------------------- data files
    ("missing data file", lambda f: [*RUN, f"model={f['model']}", "data.train_path=/no/such/train.tsv"], 1, ("'/no/such/train.tsv' does not exist", "Check the path")),
    ("unsupported file type", lambda f: _data(f, "xlsx"), 1, ("unsupported type '.xlsx'", ".jsonl")),
    ("empty file", lambda f: _data(f, "empty"), 1, ("empty.csv' is empty", "file with rows")),
    ("header-only file", lambda f: _data(f, "header_only"), 1, ("header.tsv' has a header row and no data", "file with rows")),
    ("one class", lambda f: _data(f, "one_class", "~options.label_names"), 1, ("one class ('pos')", "at least two")),
    ("one class of the named ones", lambda f: _data(f, "one_named_class"), 1, ("one class ('positive')", "at least two")),
    ("mixed label kinds", lambda f: _data(f, "mixed", "~options.label_names"), 1, ("mix numbers (0, 1) and names (neg, pos)", "options.label_names")),
    ("text column of numbers", lambda f: _data(f, "numbers"), 1, ("Column 'text' (options.text_column) holds int64, not text",)),
    ("missing column", lambda f: _good(f, "options.text_column=review"), 1, ("Column 'review'", "sentence, label", "options.text_column=")),
    ("tsv without tabs", lambda f: _data(f, "no_tab"), 1, ("No column for options.text_column", "Set options.text_column=COLUMN")),
    ("broken json line", lambda f: _data(f, "broken_jsonl"), 1, ("Cannot read", "broken.jsonl", "Check the file's format")),
    ("data not UTF-8", lambda f: _data(f, "latin1"), 1, ("Cannot read", "latin1.csv")),
    ("hub dataset offline", lambda f: [*RUN, f"model={f['model']}", "data.dataset=someone/some-data"], 1, ("'someone/some-data'", "offline", "data.train_path=FILE")),
    ("dataset that is a path", lambda f: [*RUN, f"model={f['model']}", "data.dataset=./a/b/c.tsv"], 1, ("looks like a file path", "data.train_path=")),
    ("no data at all", lambda f: [*RUN, f"model={f['model']}", "~data.dataset"], 1, ("names no data", "data.train_path=FILE")),
    # ------------------------------------------------------------------------------ models
    ("hub model offline", lambda f: _good(f, "model=someone/no-such-model"), 1, ("'someone/no-such-model'", "offline", "nlptasks run sentiment")),
    ("folder that is not a model", lambda f: _good(f, f"model={f['not_a_model']}"), 1, ("not a model", "config.json")),
    ("model without tokenizer", lambda f: _good(f, f"model={f['no_tokenizer']}"), 1, ("no tokenizer files", "tokenizer.save_pretrained")),
    ("foreign tokenizer", lambda f: _good(f, f"model={f['foreign_tokenizer']}"), 1, ("do not belong together", "Use the tokenizer saved with the model")),
    ("pickled code in the weights", lambda f: _good(f, f"model={f['pickled']}"), 1, ("pickled weights that hold more than tensors", "safetensors")),
    ("torn weights", lambda f: _good(f, f"model={f['torn']}"), 1, ("not a loadable model directory",)),
    ("eval a model without tokenizer", lambda f: ["eval", "sentiment", "-m", str(f["no_tokenizer"])], 1, ("no tokenizer files",)),
    ("predict with a foreign tokenizer", lambda f: ["predict", "sentiment", "-m", str(f["foreign_tokenizer"]), "hi"], 1, ("do not belong together",)),
    # ------------------------------------------------------------------------ output paths
    ("existing output dir", lambda f: [*_good(f), "-o", str(f["run"])], 1, ("already exists", "never overwrite")),
    ("output under a file", lambda f: [*_good(f), "-o", str(f["a_file"] / "run")], 1, ("Cannot write to", "a-file", "Choose another output_dir")),
    # ------------------------------------------------------------------- eval and predict
    ("eval missing model", lambda f: ["eval", "sentiment", "-m", "/no/model"], 1, ("'/no/model' does not exist", "--model runs/RUN/model")),
    ("eval unknown label", lambda f: ["eval", "sentiment", "-m", str(f["run"] / "model"), f"data.eval_path={f['one_class']}"], 1, ("label 'pos'", "it knows negative, positive")),
    ("predict nothing", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model")], 2, ("Give TEXT arguments",)),
    ("predict missing input file", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "-i", str(f["root"] / "no.jsonl")], 1, ("does not exist", "Check the path")),
    ("predict non-JSON line", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "-i", str(f["not_json"])], 1, ("line 2 is not valid JSON",)),
    ("predict missing field", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "-i", str(f["missing_field"])], 1, ("missing.jsonl line 2 has no 'text' field", "Add it")),
    ("predict a number", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "-i", str(f["number_line"])], 1, ("line 2 is int, not an object",)),
    ("predict file not UTF-8", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "-i", str(f["latin1_jsonl"])], 1, ("not UTF-8", "Save it as UTF-8")),
    ("predict a number as text", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "-i", str(f["number_field"])], 1, ("line 1 has a 'text' that is int, not text", "Give a string")),
    ("predict bad field", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "-f", "text"], 2, ("not NAME=VALUE",)),
    ("predict batch 0", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "--batch-size", "0", "x"], 2, ("--batch-size",)),
    ("predict fp16 on CPU", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "--mixed-precision", "fp16", "x"], 1, ("needs a GPU", "--mixed-precision")),
    ("predict bad override", lambda f: ["predict", "sentiment", "-m", str(f["run"] / "model"), "--set", "x=1", "x"], 1, ("override 'x=1' sets unknown key 'x'",)),
    # ----------------------------------------------------------------------------- resume
    ("resume a folder that is no run", lambda f: ["resume", str(f["not_a_model"])], 1, ("is not a run directory", "recipe.yaml")),
    ("resume a finished run", lambda f: ["resume", str(f["run"])], 1, ("finished already", "Start a new run")),
    ("resume with overrides", lambda f: [*RUN, "--resume", str(f["run"]), "train.epochs=2"], 2, ("drop --recipe",)),
    ("resume as another task", lambda f: ["run", "qa", "--resume", str(f["run"])], 1, ("is a 'sentiment' run", "nlptasks resume")),
    # ---------------------------------------------------------------------------- recipes
    ("copy onto a file", lambda f: ["recipes", "copy", "sentiment/minilm", str(f["a_file"])], 1, ("already exists", "another destination")),
    ("show unknown recipe", lambda f: ["recipes", "show", "minilmm"], 1, ("Unknown recipe 'minilmm'", "nlptasks recipes list")),
]  # fmt: skip
CASES += [case for area in AREAS for case in area.CASES]


@pytest.mark.parametrize(("name", "args", "code", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    files: Files,
    name: str,
    args: Callable[[Files], list[str]],
    code: int,
    needles: tuple[str, ...],
) -> None:
    before = _digest(files["run"])
    exit_code, output = _invoke(*args(files))
    assert exit_code == code, output
    assert "Traceback" not in output
    lines = [
        line for line in output.splitlines() if line.strip() and not line.startswith("Warning")
    ]
    message = " ".join(lines)
    if code == 1:
        assert len(lines) == 1, output  # one line
        assert lines[0].startswith(("Error: ", "Usage", str(files["root"])))
    for needle in needles:
        assert needle in message, message
    assert _digest(files["run"]) == before  # earlier runs are untouched


def test_the_suite_is_as_big_as_promised() -> None:
    assert len(CASES) >= 180  # issue 18: the table grows with every class of faults


def test_output_dir_with_a_tilde_is_the_home_folder(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    code, output = _invoke(*_good(files, "train.max_steps=1", "output_dir=~/runs", "-q"))
    assert code == 0, output
    assert not (tmp_path / "~").exists()
    assert len(list((tmp_path / "home/runs").iterdir())) == 1
    json.loads(next((tmp_path / "home/runs").iterdir()).joinpath("results.json").read_text())


def test_an_unreachable_hub_fails_at_once(files: Files) -> None:
    """Not offline by choice, but no network: one line suggesting HF_HUB_OFFLINE=1, and no
    minute of retry lines."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "nlptasks", "run", "sentiment", "model=someone/some-model",
         f"data.train_path={files['train']}", f"data.eval_path={files['dev']}"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the Hub cannot be reached" in lines[0], done.stderr
    assert "HF_HUB_OFFLINE=1" in lines[0] and "Retry" not in done.stderr


def test_no_room_for_the_checkpoints_is_said_before_loading(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil as real_shutil
    from collections import namedtuple

    from nlptasks.runs import results

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(results.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    code, output = _invoke(*_good(files), "-o", str(tmp_path / "run"))
    assert code == 1 and "GB are free" in output and "train.save_checkpoints=false" in output
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(results.shutil, "disk_usage", real_shutil.disk_usage)


def test_non_utf8_arguments_and_stdin(files: Files) -> None:
    import os
    import subprocess
    import sys

    model = str(files["run"] / "model")
    argument = subprocess.run(
        [sys.executable, "-m", "nlptasks.cli", "predict", "sentiment", "-m", model, b"caf\xe9"],
        capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"}, timeout=120,
    )  # fmt: skip
    assert argument.returncode == 1
    assert argument.stderr.decode().strip() == (
        "Error: argument 5 (caf\\udce9) is not valid UTF-8. Type it as UTF-8."
    )
    stdin = subprocess.run(
        [sys.executable, "-m", "nlptasks.cli", "predict", "sentiment", "-m", model, "-i", "-"],
        input=b'{"text": "caf\xe9"}\n', capture_output=True, timeout=120,
    )  # fmt: skip
    assert stdin.returncode == 1 and b"Traceback" not in stdin.stderr
    assert b"Standard input is not UTF-8 text" in stdin.stderr


def test_run_directories_record_no_secrets(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_notARealTokenButSecret123"
    for name in ("HF_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, secret)
    code, output = _invoke(*_good(files, "train.max_steps=1"), "-o", str(tmp_path / "r"), "-q")
    assert code == 0, output
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_trust_remote_code_only_when_the_recipe_says(files: Files, tmp_path: Path) -> None:
    from nlptasks import models
    from nlptasks.recipes import load_recipe

    assert load_recipe("sentiment", "minilm").trust_remote_code is False
    seen: list[dict[str, object]] = []

    def loader(reference: str, **kwargs: object) -> str:
        seen.append(kwargs)
        return reference

    models.load_pretrained(str(files["model"]), loader)
    with pytest.warns(UserWarning, match="trust_remote_code is on"), models.remote_code(True):
        models.load_pretrained(str(files["model"]), loader)
    assert seen == [{}, {"trust_remote_code": True}]
    # Through the CLI: the run works and says what it allowed.
    with pytest.warns(UserWarning, match="trust_remote_code is on"):
        code, output = _invoke(
            *_good(files, "train.max_steps=1", "trust_remote_code=true"),
            "-o",
            str(tmp_path / "r"),
            "-q",
        )
    assert code == 0, output
