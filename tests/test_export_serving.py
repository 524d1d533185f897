"""Export for serving: ``nlptasks export --merge-lora`` (a plain model that transformers,
vLLM and TGI load, checked against the run), ``--format onnx`` (checked with onnxruntime on
real inputs), and a LoRA run served with its adapter: the same text from ``load_predictor``,
``nlptasks predict``, the merged export and ``nlptasks serve``, and not the base model's."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from nlptasks.testing import make_tiny_bert, make_tiny_gpt2
from tests.conftest import SHARED_DATA, SST2
from tests.serve_helpers import start_server

WIKI = SHARED_DATA / "wikitext2_raw"
SQUAD = SHARED_DATA / "squad_v1.1"
PROMPTS = [" = Homarus", " The lobster", " In 1990 the", " He was born in"]
# The same decoding for every way of predicting below: greedy, a few tokens.
GENERATION = ["generation.max_new_tokens=8", "generation.do_sample=false"]
DIFFERENCE = re.compile(r"max \|delta logits\| ([0-9.e+-]+)")


def _one_line_error(result: Any, *needles: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _head(src: Path, dst: Path, rows: int) -> Path:
    dst.write_text("\n".join(src.read_text(encoding="utf-8").splitlines()[: rows + 1]) + "\n")
    return dst


# ------------------------------------------------------------------------------ runs
def _sentiment(tiny_bert: Path, work: Path, *settings: str) -> Path:
    from tests.test_generation import invoke

    train = _head(SST2 / "train.tsv", work / "train.tsv", 300)
    dev = _head(SST2 / "dev.tsv", work / "dev.tsv", 40)
    invoke(
        "run",
        "sentiment",
        "--recipe",
        "minilm",
        f"model={tiny_bert}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.epochs=1",
        "train.learning_rate=1e-3",
        "train.batch_size=16",
        "train.mixed_precision=no",
        *settings,
        "--quiet",
        "--output-dir",
        str(work / "run"),
    )
    return work / "run"


@pytest.fixture(scope="module")
def sentiment_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `nlptasks run sentiment` on a tiny BERT and 300 SST-2 rows (seconds)."""
    return _sentiment(tiny_bert, tmp_path_factory.mktemp("sentiment"))


@pytest.fixture(scope="module")
def sentiment_lora_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with LoRA: its checkpoints hold the adapter alone (no config.json), on a
    base model whose config has no labels."""
    work = tmp_path_factory.mktemp("sentiment-lora")
    return _sentiment(tiny_bert, work, "lora.enabled=true", "lora.save_adapter=true")


def _adapter_only_run(run: Path, dest: Path) -> Path:
    """A copy of ``run`` whose model/ is its best checkpoint's adapter (what a run stopped
    before saving, or a hand-made one, holds) and no RUN/adapter."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoints", "model", "adapter"))
    (dest / "model").mkdir()
    for path in (run / "checkpoints" / "best").iterdir():
        if path.name.startswith(("adapter_", "tokenizer", "generation_config", "special_")):
            shutil.copy2(path, dest / "model" / path.name)
    return dest


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_generation import invoke
    from tests.test_qa import TINY_WINDOWS, TRAIN_JSON, squad_questions

    work = tmp_path_factory.mktemp("qa")
    contexts = sorted({row["context"] for row in squad_questions(TRAIN_JSON)})[:300]
    base = make_tiny_bert(work / "base", contexts, dropout=0)
    invoke(
        "run",
        "qa",
        f"model={base}",
        f"data.train_path={TRAIN_JSON}",
        f"data.eval_path={SQUAD / 'dev-v1.1.json'}",
        "data.max_train_examples=64",
        "data.max_eval_examples=16",
        "train.max_steps=4",
        "train.batch_size=16",
        "train.learning_rate=3e-3",
        "train.mixed_precision=no",
        *TINY_WINDOWS,
        "--quiet",
        "--output-dir",
        str(work / "run"),
    )
    return work / "run"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = (WIKI / "wiki.valid.raw").read_text(encoding="utf-8").splitlines(keepends=True)
    texts = [line for line in lines[:3000] if line.strip()]
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-lm"), texts, dropout=0)


@pytest.fixture(scope="module")
def lora_run(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA generation run that keeps its adapter (RUN/adapter)."""
    from tests.test_generation import invoke

    work = tmp_path_factory.mktemp("lora")
    lines = (WIKI / "wiki.valid.raw").read_text(encoding="utf-8").splitlines(keepends=True)
    (work / "train.raw").write_text("".join(lines[:120]), encoding="utf-8")
    (work / "dev.raw").write_text("".join(lines[200:240]), encoding="utf-8")
    invoke(
        "run",
        "generation",
        f"model={tiny_lm}",
        f"data.train_path={work / 'train.raw'}",
        f"data.eval_path={work / 'dev.raw'}",
        "~data.max_train_examples",
        "options.block_size=64",
        "train.max_steps=8",
        "train.batch_size=4",
        "train.learning_rate=1e-2",
        "train.mixed_precision=no",
        "lora.enabled=true",
        "lora.save_adapter=true",
        "options.sample_prompts=[' = Homarus']",
        *GENERATION,
        "--quiet",
        "--output-dir",
        str(work / "run"),
    )
    return work / "run"


def _texts(model_dir: Path | str) -> list[str]:
    from nlptasks.runner import load_predictor

    predictor = load_predictor("generation", str(model_dir), overrides=GENERATION)
    return [p["generated_text"] for p in predictor.predict(PROMPTS)]


# ------------------------------------------------------------------------ --merge-lora
def test_merge_lora_writes_a_plain_model_that_computes_the_runs(
    lora_run: Path, tmp_path: Path, cli: Any
) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path / "merged"
    output = cli("export", str(lora_run), str(dest), "--merge-lora").output
    assert (
        "model/ of this LoRA run is merged already (nlptasks merges at save), copied as is"
        in output
    )
    assert "Checked: it loads with AutoModelForCausalLM" in output
    remerged = re.search(
        r"Re-merged RUN/adapter .* on the first \d+ eval features of the run: max "
        r"\|difference\| ([0-9.e+-]+)",
        output,
    )
    assert remerged and float(remerged.group(1)) <= 1e-5, output
    names = {p.name for p in dest.iterdir()}
    assert not names & {"adapter_config.json", "adapter_model.safetensors"}
    assert {"config.json", "generation_config.json", "model.safetensors"} <= names
    assert {"README.md", "results.json", "tokenizer.json"} <= names
    config = json.loads((dest / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"]
    with safe_open(str(dest / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())  # noqa: SIM118
    assert keys and not [k for k in keys if "lora" in k or k.startswith("base_model")]
    assert (dest / "generation_config.json").read_bytes() == (
        lora_run / "model" / "generation_config.json"
    ).read_bytes()
    # What a serving stack does: the Auto classes load it, with its tokenizer.
    model = AutoModelForCausalLM.from_pretrained(dest)
    tokenizer = AutoTokenizer.from_pretrained(dest)
    ids = tokenizer(PROMPTS[0], return_tensors="pt")
    run_model = AutoModelForCausalLM.from_pretrained(lora_run / "model")
    with torch.inference_mode():
        assert torch.allclose(model(**ids).logits, run_model(**ids).logits, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing")
def test_merge_lora_merges_an_adapter_it_finds_in_the_model_folder(
    lora_run: Path, tiny_lm: Path, tmp_path: Path, cli: Any
) -> None:
    """A run whose model/ is the adapter (a checkpoint's files): merged with peft, and the
    result equals the base model with the adapter attached."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = _adapter_only_run(lora_run, tmp_path / "run")
    best = lora_run / "checkpoints" / "best"
    dest = tmp_path / "merged"
    output = cli("export", str(run), str(dest), "--merge-lora").output
    assert "Merged the LoRA adapter in model/ into its base model" in output
    assert "Checked: it loads with AutoModelForCausalLM; compared with the base model" in output
    assert not (dest / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(dest)
    attached = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lm), best)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    ids = torch.tensor([[5, 17, 99, 3, 42, 7]])
    with torch.inference_mode():
        ours, theirs = merged(input_ids=ids).logits, attached(input_ids=ids).logits
        assert (ours - theirs).abs().max() < 1e-5
        assert (ours - base(input_ids=ids).logits).abs().max() > 1e-3  # the adapter counts


def test_merge_lora_of_a_run_without_lora_is_the_plain_export(
    sentiment_run: Path, tmp_path: Path, cli: Any
) -> None:
    output = cli("export", str(sentiment_run), str(tmp_path / "merged"), "--merge-lora").output
    assert "Not a LoRA run: model/ is a plain transformers model already" in output
    cli("export", str(sentiment_run), str(tmp_path / "plain"))
    for path in (tmp_path / "plain").iterdir():
        assert (tmp_path / "merged" / path.name).read_bytes() == path.read_bytes(), path.name


# ------------------------------------------------- a classifier's LoRA adapter: its labels
def test_an_adapter_only_classifier_keeps_the_runs_labels_in_predict_and_export(
    sentiment_lora_run: Path, tmp_path: Path, cli: Any
) -> None:
    """The base model's config has no labels (LABEL_0, LABEL_1): predict on a checkpoint and
    the merged export carry the run's, and the check runs on the run's eval data."""
    run_config = json.loads((sentiment_lora_run / "model" / "config.json").read_text())
    assert run_config["id2label"] == {"0": "negative", "1": "positive"}
    checkpoint = sentiment_lora_run / "checkpoints" / "best"
    assert not (checkpoint / "config.json").exists()
    records = tmp_path / "records.jsonl"
    records.write_text('{"text": "a gorgeous , witty movie ."}\n{"text": "bad"}\n')
    printed = cli("predict", "sentiment", "--model", str(checkpoint), "--input", str(records))
    rows = [json.loads(line) for line in printed.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and {r["label"] for r in rows} <= {"negative", "positive"}
    assert all(set(r["probabilities"]) == {"negative", "positive"} for r in rows)
    # model/ holding the adapter alone: labels from the run's recipe (options.label_names).
    run = _adapter_only_run(sentiment_lora_run, tmp_path / "run")
    dest = tmp_path / "merged"
    output = cli("export", str(run), str(dest), "--merge-lora").output
    assert (
        "compared with the base model with model/'s adapter attached (peft) on the first "
        "16 eval features of the run" in output
    ), output
    assert "fixed sentence" not in output
    config = json.loads((dest / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    merged = cli("predict", "sentiment", "--model", str(dest), "--input", str(records)).stdout
    merged_rows = [json.loads(line) for line in merged.splitlines() if line.startswith("{")]
    assert [r["label"] for r in merged_rows] == [r["label"] for r in rows]
    for ours, theirs in zip(merged_rows, rows, strict=True):
        assert abs(ours["score"] - theirs["score"]) < 1e-4  # two load paths, one model


def test_a_missing_base_model_is_one_line_naming_the_adapter_and_the_base(
    sentiment_lora_run: Path, tmp_path: Path, cli: Any
) -> None:
    run = _adapter_only_run(sentiment_lora_run, tmp_path / "run")
    adapter_config = run / "model" / "adapter_config.json"
    found = json.loads(adapter_config.read_text())
    found["base_model_name_or_path"] = str(tmp_path / "gone-bert")
    adapter_config.write_text(json.dumps(found))
    for option in ("--merge-lora", "--format=onnx"):
        result = cli("export", str(run), str(tmp_path / "x"), option, exit_code=1)
        _one_line_error(
            result, f"LoRA adapter in {run / 'model'}", f"'{tmp_path / 'gone-bert'}'",
            "no such folder here", "base_model_name_or_path",
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_run_whose_adapter_disagrees_with_its_model_is_refused(
    lora_run: Path, tmp_path: Path, cli: Any
) -> None:
    """RUN/adapter with one weight scaled: the re-merge differs from model/, so export
    fails in one line and writes nothing (the check can fail)."""
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    weights = run / "adapter" / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in sorted(tensors) if "lora_B" in k)
    tensors[name] = tensors[name] * 3 + 0.01
    save_file(tensors, str(weights))
    result = cli("export", str(run), str(tmp_path / "x"), "--merge-lora", exit_code=1)
    _one_line_error(result, "RUN/adapter merged into its base model", "nothing was exported")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failed_checks_write_nothing(
    sentiment_lora_run: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tolerance no real difference meets: the merge and the ONNX checks fail in one line,
    and neither DEST nor a staging folder is left."""
    from nlptasks.runs import export, onnx_export

    run = _adapter_only_run(sentiment_lora_run, tmp_path / "run")
    monkeypatch.setattr(export, "MERGE_TOLERANCE", -1.0)
    result = cli("export", str(run), str(tmp_path / "x"), "--merge-lora", exit_code=1)
    _one_line_error(result, "base model with the adapter", "nothing was exported")
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)
    result = cli(
        "export", str(sentiment_lora_run), str(tmp_path / "x"), "--format=onnx", exit_code=1
    )
    _one_line_error(result, "The ONNX model's logits differ from PyTorch's", "nothing was exported")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_folder_made_at_dest_while_exporting_is_never_replaced(
    sentiment_run: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process makes DEST (empty) after the first check: export refuses, in one
    line, and leaves that folder as it was."""
    from nlptasks.runs import export

    dest = tmp_path / "dest"
    stage = export.stage

    def stage_then_race(run_dir: Path, folder: Path) -> None:
        stage(run_dir, folder)
        dest.mkdir()

    monkeypatch.setattr(export, "stage", stage_then_race)
    result = cli("export", str(sentiment_run), str(dest), exit_code=1)
    _one_line_error(result, "exists already (made while export ran)")
    assert dest.is_dir() and not list(dest.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


# -------------------------------------------------------------- LoRA served with its adapter
def test_a_lora_run_predicts_and_serves_with_its_adapter_never_the_base_model(
    lora_run: Path, tiny_lm: Path, tmp_path: Path, cli: Any
) -> None:
    model_dir = lora_run / "model"
    ours = _texts(model_dir)
    records = tmp_path / "prompts.jsonl"
    records.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    settings = [arg for setting in GENERATION for arg in ("--set", setting)]
    printed = cli(
        "predict", "generation", "--model", str(model_dir), "--input", str(records), *settings
    ).stdout
    rows = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert [r["generated_text"] for r in rows] == ours
    assert ours != _texts(tiny_lm)  # the adapter changed what the model says
    dest = tmp_path / "merged"
    cli("export", str(lora_run), str(dest), "--merge-lora")
    assert _texts(dest) == ours
    # nlptasks serve: the same model, the same decoding, over HTTP.
    with start_server(model_dir, *settings) as server:
        response = httpx.post(
            f"{server.url}/v1/predict",
            json={"records": [{"prompt": p} for p in PROMPTS]},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    assert [p["generated_text"] for p in response.json()["predictions"]] == ours


def test_a_lora_checkpoint_is_served_with_its_adapter_attached(lora_run: Path, tiny_lm: Path):
    """A checkpoint of a LoRA run is the adapter alone (adapter_config.json names the base
    model): predict and serve attach it, never answering with the bare base model."""
    checkpoint = lora_run / "checkpoints" / "best"
    assert (checkpoint / "adapter_config.json").is_file()
    assert not (checkpoint / "config.json").exists()
    expected = _texts(checkpoint)
    assert expected != _texts(tiny_lm)
    settings = [arg for setting in GENERATION for arg in ("--set", setting)]
    with start_server(checkpoint, "--task", "generation", *settings) as server:
        response = httpx.post(f"{server.url}/v1/predict", json={"records": PROMPTS}, timeout=60)
    assert response.status_code == 200, response.text
    assert [p["generated_text"] for p in response.json()["predictions"]] == expected


# ---------------------------------------------------------------------------- --format onnx
def _onnx_export(run: Path, dest: Path, cli: Any) -> float:
    output = cli("export", str(run), str(dest), "--format", "onnx").output
    found = DIFFERENCE.search(output)
    assert found, output
    assert "opset 18" in output and "exporter" in output
    names = {p.name for p in dest.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "README.md", "results.json"} <= names
    assert not [n for n in names if n.endswith(".safetensors")]
    return float(found.group(1))


def _session(dest: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(
        str(dest / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def _compare(session: Any, model: Any, encoded: Any, outputs: list[str]) -> float:
    feeds = {i.name: encoded[i.name].numpy() for i in session.get_inputs()}
    found = session.run(outputs, feeds)
    with torch.inference_mode():
        expected = model(**{k: encoded[k] for k in feeds}, return_dict=True)
    return max(
        float(np.abs(f - expected[n].numpy()).max()) for f, n in zip(found, outputs, strict=True)
    )


def test_onnx_export_of_sentiment_matches_pytorch_on_any_batch(
    sentiment_run: Path, tmp_path: Path, cli: Any
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dest = tmp_path / "onnx"
    reported = _onnx_export(sentiment_run, dest, cli)
    assert 0 <= reported <= 1e-4
    session = _session(dest)
    assert [o.name for o in session.get_outputs()] == ["logits"]
    tokenizer = AutoTokenizer.from_pretrained(dest)
    model = AutoModelForSequenceClassification.from_pretrained(sentiment_run / "model").eval()
    texts = [
        "bad",
        "a gorgeous , witty , seductive movie .",
        "the story is too often lost in the long , slow middle of a film that never finds "
        "its footing , and the actors seem as bored as the audience .",
    ]
    for batch in (texts, texts[1:2]):  # 3 lengths padded together, and a batch of one
        encoded = tokenizer(batch, padding=True, return_tensors="pt")
        assert _compare(session, model, encoded, ["logits"]) <= 1e-4
    # The ONNX model's answers are the run's: argmax over the dev sentences it was checked on.
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    feeds = {i.name: encoded[i.name].numpy() for i in session.get_inputs()}
    with torch.inference_mode():
        torch_labels = model(**encoded).logits.argmax(-1).tolist()
    assert session.run(["logits"], feeds)[0].argmax(-1).tolist() == torch_labels


def test_onnx_falls_back_to_the_torchscript_exporter_and_says_why(
    sentiment_run: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a model torch.export cannot trace: the dynamo exporter fails, the TorchScript
    one writes a model.onnx that matches PyTorch, and the CLI says which and why."""
    from nlptasks.runs import onnx_export

    export = onnx_export._export

    def dynamo_fails(*args: Any, dynamo: bool, **kwargs: Any) -> None:
        if dynamo:
            raise RuntimeError("cannot trace this model")
        export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(onnx_export, "_export", dynamo_fails)
    dest = tmp_path / "onnx"
    output = cli("export", str(sentiment_run), str(dest), "--format", "onnx").output
    assert "torch.onnx torchscript exporter" in output
    assert "(the dynamo exporter failed: RuntimeError: cannot trace this model)" in output
    found = DIFFERENCE.search(output)
    assert found and float(found.group(1)) <= 1e-4, output
    session = _session(dest)
    names = {i.name for i in session.get_inputs()}
    assert names == {"input_ids", "attention_mask", "token_type_ids"}
    # Dynamic axes: a padded batch of another size and length than the check's.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(sentiment_run / "model").eval()
    texts = ["bad", "a gorgeous , witty , seductive movie that never once loses its nerve ."]
    encoded = AutoTokenizer.from_pretrained(dest)(texts, padding=True, return_tensors="pt")
    assert _compare(session, model, encoded, ["logits"]) <= 1e-4


def test_onnx_export_of_qa_gives_both_span_logits(qa_run: Path, tmp_path: Path, cli: Any) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    dest = tmp_path / "onnx"
    assert _onnx_export(qa_run, dest, cli) <= 1e-4
    session = _session(dest)
    assert [o.name for o in session.get_outputs()] == ["start_logits", "end_logits"]
    tokenizer = AutoTokenizer.from_pretrained(dest)
    model = AutoModelForQuestionAnswering.from_pretrained(qa_run / "model").eval()
    questions = ["Who?", "Which team won the game played in 2016?", "When was it founded?"]
    contexts = [
        "Denver won.",
        "The Denver Broncos defeated the Carolina Panthers 24-10 to earn their third title.",
        "The university was founded in 1842 by a priest from France, on land given to it.",
    ]
    encoded = tokenizer(questions, contexts, padding=True, return_tensors="pt")
    assert _compare(session, model, encoded, ["start_logits", "end_logits"]) <= 1e-4


# ------------------------------------------------------------------------------ bad inputs
def test_onnx_of_a_generation_run_is_one_line_naming_the_tasks(
    lora_run: Path, tmp_path: Path, cli: Any
) -> None:
    result = cli("export", str(lora_run), str(tmp_path / "x"), "--format", "onnx", exit_code=1)
    _one_line_error(result, "--format onnx exports encoder tasks", "sentiment", "qa")
    assert "'generation'" in result.output and not (tmp_path / "x").exists()


def test_bad_destinations_and_runs_are_one_line(sentiment_run: Path, tmp_path: Path, cli: Any):
    (tmp_path / "taken").mkdir()
    for option in ("--merge-lora", "--format=onnx"):
        result = cli("export", str(sentiment_run), str(tmp_path / "taken"), option, exit_code=1)
        _one_line_error(result, "exists already", "Choose a new one")
        result = cli("export", str(tmp_path), str(tmp_path / "new"), option, exit_code=1)
        _one_line_error(result, "not a finished nlptasks run")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no staging folder left behind


def test_onnx_without_onnxruntime_names_the_extra(
    sentiment_run: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a machine without the extra: importing onnxruntime fails (None in sys.modules
    makes ``import`` raise ImportError, as a missing package does)."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = cli("export", str(sentiment_run), str(tmp_path / "x"), "--format", "onnx", exit_code=1)
    _one_line_error(result, "onnxruntime", "pip install 'nlptasks[onnx]'")
    assert not (tmp_path / "x").exists()
