"""A model must fit its task: the checks behind tests/bad_input/models.py, beyond one-line
errors (what still works, the Python API, the declaration, the probes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import transformers
from click.testing import CliRunner
from safetensors import SafetensorError

import nlptasks
from nlptasks import model_fit
from nlptasks.cli import cli
from nlptasks.errors import ModelError, PluginError
from nlptasks.task import MetricSpec, TaskInfo
from tests.conftest import SST2

ACCURACY = (MetricSpec("accuracy", True),)


class _Task:
    """Just what the checks read of a task."""

    def __init__(self, **info: Any) -> None:
        self.info = TaskInfo(**{"name": "t", "metrics": ACCURACY, **info})


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A 2-step sentiment run of the tiny BERT on 100 SST-2 rows."""
    root = tmp_path_factory.mktemp("fit")
    lines = (SST2 / "train.tsv").read_text().splitlines()
    train = root / "train.tsv"
    train.write_text("\n".join(lines[:101]) + "\n")
    run = root / "run"
    code, output = _invoke("run", "sentiment", f"model={tiny_bert}", f"data.train_path={train}",
                           "train.max_steps=2", "-o", str(run), "-q")  # fmt: skip
    assert code == 0, output
    return run


# ------------------------------------------------------------------------- the declaration
def test_a_task_takes_the_auto_class_of_its_pipeline_tag_by_default() -> None:
    assert _Task(pipeline_tag="text-classification").info.model_kinds == (
        "AutoModelForSequenceClassification",
    )
    assert _Task(pipeline_tag="text-generation").info.model_kinds == ("AutoModelForCausalLM",)
    assert _Task(pipeline_tag="sentence-similarity").info.model_kinds == ()  # no check
    declared = _Task(pipeline_tag="translation", model_classes=("AutoModelForCausalLM",))
    assert declared.info.model_kinds == ("AutoModelForCausalLM",)
    assert _Task(pipeline_tag="text-classification", model_classes=()).info.model_kinds == ()


def test_the_builtin_tasks_declare_their_kinds() -> None:
    from nlptasks.plugins.registry import load_task

    kinds = {name: load_task(name).info.model_kinds for name in ("sentiment", "qa", "generation")}
    assert kinds == {
        "sentiment": ("AutoModelForSequenceClassification",),
        "qa": ("AutoModelForQuestionAnswering",),
        "generation": ("AutoModelForCausalLM",),
    }
    assert load_task("translation").info.model_kinds == (
        "AutoModelForSeq2SeqLM",
        "AutoModelForCausalLM",
    )


@pytest.mark.parametrize("classes", ["AutoModelForCausalLM", ("AutoModelForCausalLM", 3), ("",)])
def test_a_malformed_declaration_is_one_line_when_the_plugin_loads(classes: Any) -> None:
    with pytest.raises(PluginError, match="model_classes must be a tuple of transformers Auto"):
        _Task(pipeline_tag="text-generation", model_classes=classes)


def test_an_unknown_auto_class_is_the_plugins_error(tiny_bert: Path) -> None:
    task = _Task(pipeline_tag="x", model_classes=("AutoModelForTelepathy",))
    with pytest.raises(PluginError, match="'AutoModelForTelepathy', which is no transformers"):
        model_fit.check_model_fits(task, str(tiny_bert), "run")


def test_a_model_type_without_the_tasks_kind_is_refused_before_loading(tmp_path: Path) -> None:
    """No architectures saved: the model type says it (DistilBERT has no causal-LM form)."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbert"}))
    task = _Task(pipeline_tag="text-generation")
    with pytest.raises(ModelError, match="'distilbert' model, which AutoModelForCausalLM cannot"):
        model_fit.check_model_fits(task, str(tmp_path), "run")
    model_fit.check_model_fits(_Task(pipeline_tag="text-classification"), str(tmp_path), "run")


def test_a_task_that_builds_another_kind_than_it_declares_is_refused(tiny_bert: Path) -> None:
    """Against the built model: a plugin whose TaskInfo says one kind and whose build_model
    makes another (its card's tag would be wrong too)."""
    task = _Task(pipeline_tag="question-answering")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    with pytest.raises(PluginError, match="built a sequence classification model"):
        model_fit.check_built_model(task, model, tokenizer, str(tiny_bert), "run")


def test_a_plugins_own_module_is_not_judged(tiny_bert: Path) -> None:
    """A model that is no transformers PreTrainedModel (a plugin's wrapper): nothing to read."""
    task = _Task(pipeline_tag="text-classification")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(2, 2)
            self.config = transformers.AutoConfig.from_pretrained(tiny_bert)

    model_fit.check_built_model(task, Wrapper(), tokenizer, str(tiny_bert), "eval")


# ------------------------------------------------------------------------------- probes
def test_the_causal_probe_tells_a_decoder_from_an_encoder(tiny_bert: Path, tiny_gpt2: Path) -> None:
    gpt2 = transformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    bert = transformers.AutoModelForCausalLM.from_pretrained(tiny_bert)
    assert model_fit._attends_causally(gpt2) is True
    assert model_fit._attends_causally(bert) is False
    bert.train()
    model_fit._attends_causally(bert)
    assert bert.training  # the probe leaves the mode as it found it


def test_a_bert_made_a_decoder_is_causal(tiny_bert: Path) -> None:
    """BERT with is_decoder=True attends causally: the check is about attention, not names."""
    bert = transformers.AutoModelForCausalLM.from_pretrained(tiny_bert, is_decoder=True)
    assert model_fit._attends_causally(bert) is True


def test_checkpoint_shapes_read_only_the_header(tiny_bert: Path, tmp_path: Path) -> None:
    """A file whose tensor data is cut off after the header (no loader takes it) still gives
    every shape: nothing past the header is read."""
    whole = (tiny_bert / "model.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(whole[:8], "little")
    (tmp_path / "model.safetensors").write_bytes(whole[:header_end] + b"not tensors")
    with pytest.raises(SafetensorError):
        safetensors.torch.load_file(tmp_path / "model.safetensors")
    shapes = model_fit.checkpoint_shapes(str(tmp_path))
    assert shapes == model_fit.checkpoint_shapes(str(tiny_bert))
    assert shapes["embeddings.word_embeddings.weight"][1] == 32
    assert model_fit.checkpoint_shapes(str(tiny_bert / "nowhere")) == {}


class _NeedsImages(transformers.BertLMHeadModel):
    """An encoder with a language-model head whose forward needs more than input_ids."""

    def forward(self, input_ids: Any, images: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().forward(input_ids=input_ids, **kwargs)


def test_a_model_the_causal_probe_cannot_run_is_taken(tiny_bert: Path) -> None:
    """The probe's trade-off, pinned: a forward that needs more inputs gives no verdict and
    the model is taken, even this bidirectional one (refusing would refuse working causal
    LMs that the probe cannot feed)."""
    model = _NeedsImages.from_pretrained(tiny_bert)
    assert model_fit._attends_causally(model) is None
    model_fit._check_causal(_Task(pipeline_tag="text-generation"), model, str(tiny_bert))


def test_weights_without_the_loaded_mark_are_not_judged_untrained(tiny_bert: Path) -> None:
    """transformers marks the weights from_pretrained loaded; a model built another way (no
    weight marked) cannot tell a new head from a loaded one, and is taken."""
    task = _Task(pipeline_tag="text-classification")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    with pytest.raises(ModelError, match=r"newly initialised at random \(classifier.weight"):
        model_fit.check_built_model(task, loaded, tokenizer, str(tiny_bert), "eval")
    config = transformers.AutoConfig.from_pretrained(tiny_bert)
    built = transformers.AutoModelForSequenceClassification.from_config(config)
    assert not any(getattr(p, "_is_hf_initialized", False) for p in built.parameters())
    model_fit.check_built_model(task, built, tokenizer, str(tiny_bert), "eval")


def test_a_size_names_the_config_values_that_size_weights(tiny_bert: Path) -> None:
    """An ffn width of 128 is not blamed on max_position_embeddings, also 128; a size that
    no sizing value makes names the values equal to it."""
    config = transformers.AutoConfig.from_pretrained(tiny_bert)
    assert model_fit._size_causes(config, {128}) == [("max_position_embeddings", 128)]
    config.intermediate_size = 128
    assert model_fit._size_causes(config, {128}) == [("intermediate_size", 128)]


# --------------------------------------------------------------- what still works, and how
def test_run_puts_a_new_head_of_another_size_on_a_trained_model(
    sentiment_run: Path, tmp_path: Path
) -> None:
    """Fine-tuning a 2-label classifier on 3 labels replaces its head (the body fits)."""
    rows = "".join(
        f"{w} film,{label}\n" for w, label in (("good", "a"), ("bad", "b"), ("odd", "c"))
    )
    train = tmp_path / "three.csv"
    train.write_text("text,label\n" + rows * 10)
    code, output = _invoke("run", "sentiment", f"model={sentiment_run / 'model'}",
                           f"data.train_path={train}", "~options.label_names",
                           "train.max_steps=1", "-o", str(tmp_path / "run"), "-q")  # fmt: skip
    assert code == 0, output
    config = json.loads((tmp_path / "run/model/config.json").read_text())
    assert sorted(config["id2label"].values()) == ["a", "b", "c"]


def test_an_untrained_head_is_taken_when_asked_for(tiny_bert: Path) -> None:
    code, output = _invoke("predict", "sentiment", "-m", str(tiny_bert), "a film")
    assert code == 1 and "--allow-untrained-head" in output
    with pytest.warns(UserWarning, match=r"newly initialised at random \(classifier.weight"):
        code, output = _invoke(
            "predict", "sentiment", "-m", str(tiny_bert), "--allow-untrained-head", "a film"
        )
    assert code == 0, output
    assert json.loads(output.strip().splitlines()[-1])["text"] == "a film"


def test_the_python_api_allows_an_untrained_head_in_a_block(tiny_bert: Path) -> None:
    with pytest.raises(ModelError, match="Train it first"):
        nlptasks.predict("sentiment", str(tiny_bert), ["a film"])
    with pytest.warns(UserWarning, match="newly initialised"), model_fit.allow_untrained_head():
        [found] = nlptasks.predict("sentiment", str(tiny_bert), ["a film"])
    assert set(found["probabilities"]) == {"LABEL_0", "LABEL_1"}


def test_a_trained_model_predicts_without_a_word(sentiment_run: Path) -> None:
    code, output = _invoke("predict", "sentiment", "-m", str(sentiment_run / "model"), "a film")
    assert code == 0 and "Warning" not in output, output


# --------------------------------------------------------------------------- text pairs
@pytest.fixture(scope="module")
def pair_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A 2-step run of the tiny BERT on premise/hypothesis pairs."""
    root = tmp_path_factory.mktemp("pairs")
    rows = [
        {"premise": f"a {w} film", "hypothesis": f"it is {h}", "label": int(w == h)}
        for w in ("good", "bad", "dull", "fine")
        for h in ("good", "bad", "dull", "fine")
    ]
    train = root / "pairs.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows * 3))
    run = root / "run"
    options = ["options.text_column=premise", "options.text_pair_column=hypothesis"]
    more = ["~options.label_names", "train.max_steps=2", "-o", str(run), "-q"]
    code, output = _invoke(
        "run", "sentiment", f"model={tiny_bert}", f"data.train_path={train}", *options, *more
    )
    assert code == 0, output
    return run


def test_a_pair_model_predicts_on_both_texts(pair_run: Path) -> None:
    """Tokenised as a pair, as in training: the probabilities are the model's on (a, b)."""
    folder = str(pair_run / "model")
    record = {"text": "a good film", "text_pair": "it is bad"}
    [found] = nlptasks.predict("sentiment", folder, [record], mixed_precision="no")
    assert found["text_pair"] == "it is bad"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        paired = model(**tokenizer("a good film", "it is bad", return_tensors="pt")).logits
        alone = model(**tokenizer("a good film", return_tensors="pt")).logits
    expected = paired.softmax(-1)[0].tolist()
    assert list(found["probabilities"].values()) == pytest.approx(expected, abs=1e-7)
    assert expected != pytest.approx(alone.softmax(-1)[0].tolist(), abs=1e-6)  # tiny, not 0


def test_a_pair_model_needs_the_second_text_in_every_record(pair_run: Path) -> None:
    folder = str(pair_run / "model")
    with pytest.raises(nlptasks.NlpTasksError, match="Input 2 has no 'text_pair' field"):
        nlptasks.predict("sentiment", folder, [{"text": "a", "text_pair": "b"}, {"text": "c"}])
    code, output = _invoke("predict", "sentiment", "-m", folder, "a good film")
    assert code == 1 and "Argument 1 has no 'text_pair' field" in output, output
    code, output = _invoke(
        "predict", "sentiment", "-m", folder, "-f", "text=a good film", "-f", "text_pair=it is"
    )
    assert code == 0 and '"text_pair": "it is"' in output, output


def test_a_single_text_model_reads_a_second_text_when_given(sentiment_run: Path) -> None:
    """A record's text_pair is never dropped silently (a model outside a run may be a pair
    model that no recipe describes); records with and without one mix."""
    folder = str(sentiment_run / "model")
    found = nlptasks.predict(
        "sentiment", folder, [{"text": "a film", "text_pair": "a play"}, {"text": "a film"}]
    )
    assert found[0]["text_pair"] == "a play" and "text_pair" not in found[1]
    assert found[0]["probabilities"] != found[1]["probabilities"]
    with pytest.raises(nlptasks.NlpTasksError, match="'text_pair' that is int, not text"):
        nlptasks.predict("sentiment", folder, [{"text": "a film", "text_pair": 3}])


def test_a_pair_runs_predictions_show_both_texts(pair_run: Path) -> None:
    first = json.loads((pair_run / "predictions.jsonl").read_text().splitlines()[0])
    assert {"text", "text_pair", "prediction", "reference"} <= set(first)


def test_pair_fields_of_a_copied_model_folder(pair_run: Path, tmp_path: Path) -> None:
    """Outside its run (no recipe.yaml beside it) the model is taken as a single-text one."""
    folder = shutil.copytree(pair_run / "model", tmp_path / "model")
    [found] = nlptasks.predict("sentiment", str(folder), ["a good film"])
    assert "text_pair" not in found
