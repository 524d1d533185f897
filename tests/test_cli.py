"""The command line: end to end on a tiny BERT, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nlptasks.cli import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `nlptasks run sentiment` on a tiny BERT and 400 SST-2 rows (seconds)."""
    from tests.conftest import SST2

    work = tmp_path_factory.mktemp("e2e")
    train, dev = work / "train.tsv", work / "dev.tsv"
    for src, dst, n in ((SST2 / "train.tsv", train, 400), (SST2 / "dev.tsv", dev, 200)):
        dst.write_text("\n".join(src.read_text().splitlines()[: n + 1]) + "\n")
    # A base model with terms of its own (as Gemma's): the fine-tuned model must keep them.
    base = work / "base"
    shutil.copytree(tiny_bert, base)
    (base / "NOTICE.md").write_text("Use of this model is bound by its terms.\n")
    run_dir = work / "run"
    code, output = invoke(
        "run",
        "sentiment",
        "--recipe",
        "minilm",
        f"model={base}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.epochs=2",
        "train.learning_rate=1e-3",
        "train.batch_size=16",
        "--output-dir",
        str(run_dir),
        "--quiet",
    )
    assert code == 0, output
    assert f"Run directory: {run_dir}" in output
    assert "accuracy" in output
    return run_dir


def test_the_base_models_terms_go_with_the_fine_tuned_model(trained_run: Path) -> None:
    notice = "Use of this model is bound by its terms.\n"
    assert (trained_run / "model" / "NOTICE.md").read_text() == notice
    card = (trained_run / "README.md").read_text()
    assert "- license files: NOTICE.md (from the base model, in the model folder" in card


def test_run_directory_contents(trained_run: Path) -> None:
    for name in (
        "recipe.yaml",
        "events.jsonl",
        "results.json",
        "README.md",
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "checkpoints/best/model.safetensors",
        "checkpoints/last/model.safetensors",
    ):
        assert (trained_run / name).is_file(), name
    results = json.loads((trained_run / "results.json").read_text())
    # The recorded accuracy is the saved model's own on the 200 dev rows: count it again from
    # `predict`'s answers (gold label i is label_names[i]). Evaluation cuts inputs to
    # data.max_length tokens and predict does not, so the few longer rows are cut first.
    import csv

    from transformers import AutoTokenizer

    from nlptasks.runner import predict

    max_length = yaml.safe_load((trained_run / "recipe.yaml").read_text())["data"]["max_length"]
    tokenizer = AutoTokenizer.from_pretrained(trained_run / "model")
    with open(trained_run.parent / "dev.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    assert len(rows) == 200
    texts = []
    for text, _ in rows:
        if len(tokenizer(text)["input_ids"]) > max_length:
            ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            assert tokenizer(text)["input_ids"] == ids, text
        texts.append(text)
    predicted = predict("sentiment", str(trained_run / "model"), texts)
    gold = [("negative", "positive")[int(label)] for _, label in rows]
    correct = sum(p["label"] == g for p, g in zip(predicted, gold, strict=True))
    assert results["metrics"]["eval"]["accuracy"] == correct / 200
    assert "macro_f1" in results["metrics"]["eval"]
    prov = results["provenance"]
    assert prov["seed"] == 42 and prov["device"] == "cpu"
    assert prov["versions"]["transformers"].startswith("5.")
    assert "git_commit" in prov and prov["duration_seconds"] > 0
    eval_data = results["data"].pop("eval")
    assert results["data"] == {
        "train_examples": 400,
        "eval_examples": 200,
        "train_features": 400,
        "eval_features": 200,
        "source": f"{trained_run.parent.name}/train.tsv",
    }
    # The eval data's identity: its own name, size and the SHA-256 of its file's bytes.
    import hashlib

    dev = Path(eval_data["files"][0])
    assert eval_data["name"].endswith("/dev.tsv") and eval_data["examples"] == 200
    assert eval_data["sha256"] == hashlib.sha256(dev.read_bytes()).hexdigest()
    events = [json.loads(line) for line in (trained_run / "events.jsonl").read_text().splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert types.count("eval") == 2 and "step" in types and "checkpoint" in types
    config = json.loads((trained_run / "model/config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_model_card_has_model_index(trained_run: Path) -> None:
    text = (trained_run / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    result = front["model-index"][0]["results"][0]
    assert result["task"]["type"] == "text-classification"
    metrics = {m["type"]: m["value"] for m in result["metrics"]}
    accuracy = json.loads((trained_run / "results.json").read_text())["metrics"]["eval"]
    assert metrics["accuracy"] == pytest.approx(accuracy["accuracy"], abs=1e-4)
    assert front["pipeline_tag"] == "text-classification"


def test_predict_agrees_with_transformers_pipeline(trained_run: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    texts = [
        "a gripping , funny and moving film",
        "the plot is dull",
        "an uneven but often charming comedy that never quite finds its footing",
    ]
    model = str(trained_run / "model")
    # fp32, as the pipeline runs (the run's recipe says auto: bf16 on a CPU with AVX512-BF16)
    code, output = invoke(
        "predict", "sentiment", "--model", model, "--mixed-precision", "no", *texts
    )
    assert code == 0, output
    ours = [json.loads(line) for line in output.splitlines()]
    pipe = pipeline("text-classification", model=str(trained_run / "model"), top_k=None)
    for text, mine in zip(texts, ours, strict=True):
        theirs = {row["label"]: row["score"] for row in pipe([text])[0]}
        assert mine["text"] == text
        assert mine["label"] == max(theirs, key=theirs.__getitem__)
        for label, score in theirs.items():
            assert mine["probabilities"][label] == pytest.approx(score, abs=1e-4)
    # --input FILE.jsonl gives the same answers
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    code, output = invoke(
        "predict", "sentiment", "--model", model, "--mixed-precision", "no", "--input", str(inputs)
    )
    assert code == 0, output
    assert [json.loads(line) for line in output.splitlines()] == ours
    # and so does standard input (--input -)
    result = CliRunner().invoke(
        cli,
        ["predict", "sentiment", "--model", model, "--mixed-precision", "no", "--input", "-"],
        input=inputs.read_text(),
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == ours


def test_eval_reproduces_the_run_metrics(trained_run: Path) -> None:
    code, output = invoke("eval", "sentiment", "--model", str(trained_run / "model"), "--json")
    assert code == 0, output
    metrics = json.loads(output)
    expected = json.loads((trained_run / "results.json").read_text())["metrics"]["eval"]
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-9)


def test_resolved_recipe_reruns(trained_run: Path, tmp_path: Path) -> None:
    code, output = invoke(
        "run",
        "sentiment",
        "--recipe",
        str(trained_run / "recipe.yaml"),
        "train.max_steps=2",
        "--output-dir",
        str(tmp_path / "again"),
        "--json",
    )
    assert code == 0, output
    events = [json.loads(line) for line in output.splitlines()]
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"
    assert json.loads((tmp_path / "again/results.json").read_text())["train"]["steps"] == 2


def test_existing_run_directory_is_never_overwritten(trained_run: Path) -> None:
    before = (trained_run / "results.json").read_bytes()
    code, output = invoke(
        "run",
        "sentiment",
        "--recipe",
        str(trained_run / "recipe.yaml"),
        "--output-dir",
        str(trained_run),
    )
    assert code == 1
    assert "already exists" in output and "Traceback" not in output
    assert (trained_run / "results.json").read_bytes() == before


def test_default_output_dirs_are_new_each_time(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, dev = sst2_small
    args = [
        "run",
        "sentiment",
        f"model={tiny_bert}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.max_steps=1",
        f"output_dir={tmp_path / 'runs'}",
        "--quiet",
        "train.save_checkpoints=false",
    ]
    assert invoke(*args)[0] == 0
    assert invoke(*args)[0] == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(r.startswith("sentiment-minilm-") for r in runs)


# ---------------------------------------------------------------------------- bad input
def _one_line_error(code: int, output: str, *needles: str) -> None:
    assert code == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_task() -> None:
    _one_line_error(
        *invoke("run", "sentimnet"),
        "Unknown task 'sentimnet'",
        "Did you mean 'sentiment'?",
        "nlptasks list tasks",
    )


def test_unknown_recipe() -> None:
    _one_line_error(
        *invoke("run", "sentiment", "--recipe", "minilmm"), "minilmm", "Did you mean 'minilm'?"
    )


def test_unknown_key() -> None:
    _one_line_error(
        *invoke("run", "sentiment", "train.epoch=1"),
        "unknown key 'train.epoch'",
        "Did you mean 'train.epochs'?",
    )


def test_wrong_value_type() -> None:
    _one_line_error(
        *invoke("run", "sentiment", "train.batch_size=many"),
        "'train.batch_size' (set by an override) must be an integer",
    )


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("task: sentiment\nmodel: x\ntrain:\n  epochs: [1\n")
    _one_line_error(*invoke("run", "sentiment", "--recipe", str(path)), "malformed YAML", "line")


def test_missing_data_file(tiny_bert: Path) -> None:
    _one_line_error(
        *invoke("run", "sentiment", f"model={tiny_bert}", "data.train_path=/no/such/train.tsv"),
        "'/no/such/train.tsv' does not exist",
    )


def test_missing_column(tiny_bert: Path, sst2_small: tuple[Path, Path]) -> None:
    train, dev = sst2_small
    _one_line_error(
        *invoke(
            "run",
            "sentiment",
            f"model={tiny_bert}",
            f"data.train_path={train}",
            f"data.eval_path={dev}",
            "options.text_column=review_text",
        ),
        "Column 'review_text'",
        "sentence, label",
        "options.text_column=",
    )


def test_empty_dataset(tiny_bert: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.tsv"
    empty.write_text("sentence\tlabel\n")
    _one_line_error(
        *invoke("run", "sentiment", f"model={tiny_bert}", f"data.train_path={empty}"), "empty"
    )


def test_unreachable_hub_model(sst2_small: tuple[Path, Path], tmp_path: Path) -> None:
    train, dev = sst2_small
    code, output = invoke(
        "run",
        "sentiment",
        "model=google-bert/bert-base-uncased",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        f"output_dir={tmp_path / 'runs'}",
    )
    _one_line_error(
        code, output, "'google-bert/bert-base-uncased'", "offline", "nlptasks run sentiment"
    )
    assert not (tmp_path / "runs").exists()  # nothing written for a run that could not start


def test_hub_dataset_offline() -> None:
    _one_line_error(
        *invoke("run", "sentiment", "--recipe", "bert-base"), "nyu-mll/glue", "data.train_path="
    )


def test_label_the_model_does_not_know(trained_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "three.csv"
    data.write_text("text,label\ngreat,positive\nmeh,neutral\nbad,negative\n")
    _one_line_error(
        *invoke(
            "eval", "sentiment", "--model", str(trained_run / "model"), f"data.eval_path={data}"
        ),
        "label 'neutral'",
        "negative, positive",
    )


def test_missing_model_directory() -> None:
    _one_line_error(
        *invoke("predict", "sentiment", "--model", "/no/model", "hi"), "'/no/model' does not exist"
    )


def test_debug_shows_traceback() -> None:
    from nlptasks.errors import UnknownNameError

    # --debug: the original exception propagates out of the command (CliRunner catches it;
    # the console script would print its traceback).
    result = CliRunner().invoke(cli, ["--debug", "run", "sentimnet"])
    assert isinstance(result.exception, UnknownNameError), result.exception
    assert "Unknown task 'sentimnet'" in str(result.exception)
    assert result.exit_code == 1
    # Without it: a clean exit with code 1 and the one-line message.
    result = CliRunner().invoke(cli, ["run", "sentimnet"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: Unknown task 'sentimnet'")
    # The real command prints the traceback to stderr with --debug, and only then.
    command = [sys.executable, "-m", "nlptasks", "run", "sentimnet"]
    debug = subprocess.run([*command[:3], "--debug", *command[3:]], capture_output=True, text=True)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "nlptasks.errors.UnknownNameError: Unknown task 'sentimnet'" in debug.stderr
    plain = subprocess.run(command, capture_output=True, text=True)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("Error: Unknown task 'sentimnet'")


# ----------------------------------------------------------------------------- light CLI
def _run_cli_and_list_modules(*args: str) -> tuple[str, list[str]]:
    code = (
        "import sys\nfrom nlptasks.cli import main\nsys.argv = ['nlptasks', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return out.stdout, [line for line in out.stdout.splitlines() if line.startswith("HEAVY")]


@pytest.mark.parametrize("args", [("--help",), ("list",), ("list", "recipes"), ("--version",)])
def test_help_and_list_do_not_import_torch(args: tuple[str, ...]) -> None:
    stdout, heavy = _run_cli_and_list_modules(*args)
    assert heavy == ["HEAVY []"], stdout


def test_version() -> None:
    code, output = invoke("--version")
    assert code == 0 and "0.1.0" in output


def test_list_shows_providing_plugin() -> None:
    code, output = invoke("list", "models", "--json")
    assert code == 0
    rows = json.loads(output)
    assert rows[0]["name"] == "all-minilm-l6-v2" and rows[0]["plugin"] == "sentiment"


def test_recipes_commands(tmp_path: Path) -> None:
    code, output = invoke("recipes", "list")
    assert code == 0 and "sentiment/minilm" in output and "sentiment/bert-base" in output
    code, output = invoke("recipes", "show", "sentiment/distilbert", "--resolved", "train.epochs=1")
    assert code == 0
    shown = yaml.safe_load(output)
    assert shown["train"]["epochs"] == 1.0 and shown["data"]["dataset"] == "nyu-mll/glue"
    target = tmp_path / "mine.yaml"
    code, output = invoke("recipes", "copy", "distilbert", str(target))
    assert code == 0 and target.is_file()
    assert "extends" not in target.read_text()  # the copy stands alone
    assert invoke("recipes", "validate", str(target))[0] == 0
    code, output = invoke("recipes", "copy", "distilbert", str(target))
    _one_line_error(code, output, "already exists")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: sentiment\nmodel: x\ntrain:\n  epochz: 1\n  seed: x\n")
    code, output = invoke("recipes", "validate", str(bad))
    assert code == 1 and "epochz" in output and "train.seed" in output


def test_python_api_equals_the_cli(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    import nlptasks

    train, dev = sst2_small
    overrides = [
        f"model={tiny_bert}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.max_steps=3",
        "train.save_checkpoints=false",
    ]
    api = nlptasks.run("sentiment", "minilm", *overrides, output_dir=str(tmp_path / "api"))
    code, output = invoke(
        "run", "sentiment", *overrides, "--output-dir", str(tmp_path / "cli"), "--quiet"
    )
    assert code == 0, output
    from_cli = json.loads((tmp_path / "cli/results.json").read_text())["metrics"]["eval"]
    assert api.metrics == pytest.approx(from_cli)
    assert (tmp_path / "api/recipe.yaml").read_text() == (tmp_path / "cli/recipe.yaml").read_text()


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    _one_line_error(
        *invoke("eval", "sentiment", "--model", str(tmp_path)), "not a model", "config.json"
    )


def test_unknown_metric_for_best_fails_before_training(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, dev = sst2_small
    code, output = invoke(
        "run",
        "sentiment",
        f"model={tiny_bert}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.metric_for_best=acuracy",
        f"output_dir={tmp_path / 'r'}",
    )
    _one_line_error(code, output, "'acuracy'", "Did you mean 'accuracy'?")
    assert not (tmp_path / "r").exists()


def test_recipes_copy_into_a_missing_folder(tmp_path: Path) -> None:
    _one_line_error(
        *invoke("recipes", "copy", "sentiment/minilm", str(tmp_path / "no" / "such" / "r.yaml")),
        "Cannot write",
        "folder exists",
    )


def test_swapped_label_names_are_not_read_from_a_stale_cache(trained_run: Path) -> None:
    model = str(trained_run / "model")
    code, output = invoke("eval", "sentiment", "--model", model, "--json")
    assert code == 0, output
    straight = json.loads(output)["accuracy"]
    code, output = invoke(
        "eval", "sentiment", "--model", model, "--json", "options.label_names=[positive, negative]"
    )
    assert code == 0, output
    # Same rows, every gold label flipped: a binary accuracy turns into its complement.
    assert json.loads(output)["accuracy"] == pytest.approx(1 - straight)


def _online_without_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The Hub online (HF_HUB_OFFLINE unset) and no token anywhere huggingface_hub looks."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))


def test_push_without_a_token_fails_before_training(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _online_without_token(monkeypatch, tmp_path)
    train, dev = sst2_small
    code, output = invoke(
        "run", "sentiment", f"model={tiny_bert}", f"data.train_path={train}",
        f"data.eval_path={dev}", "--push-to-hub", "me/my-model", "-o", str(tmp_path / "r"),
    )  # fmt: skip
    _one_line_error(code, output, "needs a Hub token", "hf auth login", "HF_TOKEN")
    assert not (tmp_path / "r").exists()


def test_failed_push_keeps_the_run_and_says_how_to_push_later(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    _online_without_token(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    # A local port nothing listens on: the upload fails at once, without the network.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    dest = tmp_path / "exported"
    code, output = invoke("export", str(trained_run), str(dest), "--push-to-hub", "me/my-model")
    assert code == 1, output
    assert "Traceback" not in output
    error = output.strip().splitlines()[-1]  # after the "Exported ..." line
    for needle in ("upload to 'me/my-model' failed", f"kept at {trained_run}",
                   f"nlptasks export {trained_run} DIR --push-to-hub me/my-model"):  # fmt: skip
        assert needle in error, output
    assert (trained_run / "model").is_dir()
