# ruff: noqa: E501  (one case per line reads best as a table)
"""Bad-input cases: a model must fit its task.

A model of another kind (a classifier given to generation, a causal LM given to sentiment),
a head that transformers initialised at random, weights that do not fit their config.json,
an encoder used as a causal LM, and a text-pair model given one text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nlptasks.testing import DEFAULT_TEXTS, make_tiny_bart, make_tiny_gpt2
from nlptasks.testing.tiny_datasets import tiny_dataset
from tests.bad_input import Case, Files

TASKS = ("sentiment", "qa", "generation", "translation")


def add_files(f: Files) -> None:
    """The files these cases need, under f["root"]."""
    import transformers

    root = f["root"] / "fit"
    data = {task: tiny_dataset(task, root / "data" / task) for task in TASKS}
    for task in TASKS:
        f[f"fit_{task}_train"] = (
            root / "data" / task / ("train.txt" if task == "generation" else "train.jsonl")
        )
        f[f"fit_{task}_eval"] = (
            root / "data" / task / ("eval.txt" if task == "generation" else "eval.jsonl")
        )
    texts = [*DEFAULT_TEXTS, *(t for d in data.values() for t in d.texts)]
    f["gpt2"] = make_tiny_gpt2(root / "gpt2", texts)
    f["bart"] = make_tiny_bart(root / "bart", texts)
    # The finished sentiment run's model outside its run (no recipe.yaml says its task).
    f["classifier"] = _copy(f["run"] / "model", root / "classifier")
    # Models of other kinds made from the tiny BERT: a span head, a masked-LM head.
    for name, auto in (
        ("span_model", "AutoModelForQuestionAnswering"),
        ("masked_lm", "AutoModelForMaskedLM"),
    ):
        folder = root / name
        getattr(transformers, auto).from_pretrained(f["model"]).save_pretrained(folder)
        for tokenizer_file in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(f["model"] / tokenizer_file, folder / tokenizer_file)
        f[name] = folder
    # Weights that do not fit config.json: a value edited after saving.
    f["cls_hidden"] = _edited(
        f["classifier"], root / "cls-hidden", hidden_size=64, intermediate_size=128
    )
    f["cls_labels"] = _edited(
        f["classifier"],
        root / "cls-labels",
        id2label={"0": "a", "1": "b", "2": "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )
    # An ffn width doubled: 128, as max_position_embeddings is (the cause is the ffn width).
    f["cls_ffn"] = _edited(f["classifier"], root / "cls-ffn", intermediate_size=128)
    f["base_hidden"] = _edited(f["model"], root / "base-hidden", hidden_size=64)
    f["gpt2_width"] = _edited(f["gpt2"], root / "gpt2-width", n_embd=64)
    f["gpt2_vocab"] = _edited(f["gpt2"], root / "gpt2-vocab", vocab_size=4000)
    f["bart_width"] = _edited(f["bart"], root / "bart-width", d_model=64)
    f["bart_ffn"] = _edited(f["bart"], root / "bart-ffn", encoder_ffn_dim=128)
    # A text-pair classifier: the run's model, in a run whose recipe names a second column.
    pair_run = root / "pair-run"
    _copy(f["run"] / "model", pair_run / "model")
    recipe = (
        (f["run"] / "recipe.yaml")
        .read_text()
        .replace("text_pair_column: null", "text_pair_column: hypothesis")
    )
    assert "text_pair_column: hypothesis" in recipe
    (pair_run / "recipe.yaml").write_text(recipe)
    f["pair_model"] = pair_run / "model"
    f["one_text"] = root / "one-text.jsonl"
    f["one_text"].write_text(
        '{"text": "a premise", "text_pair": "a hypothesis"}\n{"text": "no second text"}\n'
    )


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edited(source: Path, target: Path, **changes: object) -> Path:
    _copy(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


# The options each task's tiny data needs.
OPTIONS = {
    "sentiment": ["options.label_names=[negative, positive]"],
    "qa": ["options.max_length=64", "options.max_question_length=24", "options.doc_stride=16"],
    "generation": ["options.block_size=32", "options.sample_prompts=[The cat lives]"],
    "translation": ["options.source_lang=en", "options.target_lang=fr"],
}


def _run(f: Files, task: str, model: str, *more: str) -> list[str]:
    """``nlptasks run TASK`` on the task's tiny data with ``model=f[model]``."""
    return ["run", task, f"model={f[model]}", f"data.train_path={f[f'fit_{task}_train']}",
            f"data.eval_path={f[f'fit_{task}_eval']}", "train.max_steps=1", *OPTIONS[task], *more]  # fmt: skip


def _eval(f: Files, task: str, model: str) -> list[str]:
    """``nlptasks eval TASK`` of ``f[model]`` on the task's tiny eval data."""
    return [
        "eval",
        task,
        "-m",
        str(f[model]),
        f"data.eval_path={f[f'fit_{task}_eval']}",
        *OPTIONS[task],
    ]


QA_RECORD = [
    "-f",
    "question=Where does the owl live ?",
    "-f",
    "context=The owl lives in the wood .",
]
PREDICT_ARGS = {
    "sentiment": ["a gripping film"],
    "qa": QA_RECORD,
    "generation": ["The cat"],
    "translation": ["the white cat"],
}


def _predict(f: Files, task: str, model: str, *more: str) -> list[str]:
    return ["predict", task, "-m", str(f[model]), *PREDICT_ARGS[task], *more]


UNTRAINED = ("newly initialised", "Train it first", "--allow-untrained-head")
ENCODER = ("bidirectional", "not a causal language model")
MISMATCH = ("does not fit its config.json",)

CASES: list[Case] = [
    # ------------------------------------------------------------ a model of another kind
    ("predict generation with a classifier", lambda f: _predict(f, "generation", "classifier"), 1, ("sequence classification model (BertForSequenceClassification)", "task 'generation' needs a causal language model", "nlptasks predict sentiment")),
    ("predict qa with a classifier", lambda f: _predict(f, "qa", "classifier"), 1, ("BertForSequenceClassification", "task 'qa' needs a question answering model", "nlptasks predict sentiment")),
    ("predict translation with a classifier", lambda f: _predict(f, "translation", "classifier"), 1, ("BertForSequenceClassification", "task 'translation' needs a sequence-to-sequence")),
    ("predict sentiment with a causal LM", lambda f: _predict(f, "sentiment", "gpt2"), 1, ("causal language model (GPT2LMHeadModel)", "task 'sentiment' needs a sequence classification model", "nlptasks predict generation")),
    ("predict qa with a causal LM", lambda f: _predict(f, "qa", "gpt2"), 1, ("GPT2LMHeadModel", "task 'qa' needs a question answering model")),
    ("predict sentiment with a span model", lambda f: _predict(f, "sentiment", "span_model"), 1, ("question answering model (BertForQuestionAnswering)", "task 'sentiment' needs", "nlptasks predict qa")),
    ("predict sentiment with a seq2seq model", lambda f: _predict(f, "sentiment", "bart"), 1, ("sequence-to-sequence model (BartForConditionalGeneration)", "task 'sentiment' needs")),
    ("eval generation of a classifier", lambda f: _eval(f, "generation", "classifier"), 1, ("BertForSequenceClassification", "task 'generation' needs a causal language model", "nlptasks eval sentiment --model")),
    ("eval sentiment of a causal LM", lambda f: _eval(f, "sentiment", "gpt2"), 1, ("GPT2LMHeadModel", "task 'sentiment' needs a sequence classification model", "nlptasks eval generation --model")),
    ("eval qa of a classifier", lambda f: _eval(f, "qa", "classifier"), 1, ("BertForSequenceClassification", "task 'qa' needs a question answering model")),
    ("run generation from a classifier", lambda f: _run(f, "generation", "classifier"), 1, ("BertForSequenceClassification", "task 'generation' needs a causal language model", "base model")),
    ("run qa from a classifier", lambda f: _run(f, "qa", "classifier"), 1, ("BertForSequenceClassification", "task 'qa' needs a question answering model", "base model")),
    ("run sentiment from a span model", lambda f: _run(f, "sentiment", "span_model"), 1, ("BertForQuestionAnswering", "task 'sentiment' needs a sequence classification model")),
    ("run translation from a classifier", lambda f: _run(f, "translation", "classifier"), 1, ("BertForSequenceClassification", "task 'translation' needs")),
    # ---------------------------------------------------------- a head initialised at random
    ("predict sentiment with a base encoder", lambda f: _predict(f, "sentiment", "model"), 1, ("classifier.weight", *UNTRAINED)),
    ("predict sentiment with a masked LM", lambda f: _predict(f, "sentiment", "masked_lm"), 1, ("classifier.weight", *UNTRAINED)),
    ("predict qa with a base encoder", lambda f: _predict(f, "qa", "model"), 1, ("qa_outputs.weight", *UNTRAINED)),
    ("eval sentiment of a base encoder", lambda f: _eval(f, "sentiment", "model"), 1, ("classifier.weight", *UNTRAINED)),
    ("eval qa of a base encoder", lambda f: _eval(f, "qa", "model"), 1, ("qa_outputs.weight", *UNTRAINED)),
    # --------------------------------------------------- weights that do not fit config.json
    ("predict with a hidden size the weights lack", lambda f: _predict(f, "sentiment", "cls_hidden"), 1, (*MISMATCH, "cls-hidden", "hidden_size")),
    ("predict with more labels than the head", lambda f: _predict(f, "sentiment", "cls_labels"), 1, (*MISMATCH, "cls-labels", "classifier.weight", "num_labels")),
    ("predict with an ffn width the weights lack", lambda f: _predict(f, "sentiment", "cls_ffn"), 1, (*MISMATCH, "intermediate.dense.weight", "(config.json: intermediate_size 128)")),
    ("predict translation with an ffn width the weights lack", lambda f: _predict(f, "translation", "bart_ffn", "--set", "options.source_lang=en", "--set", "options.target_lang=fr"), 1, (*MISMATCH, "fc1.weight", "(config.json: encoder_ffn_dim 128)")),
    ("eval with a hidden size the weights lack", lambda f: _eval(f, "sentiment", "cls_hidden"), 1, (*MISMATCH, "hidden_size")),
    ("run from a base with a hidden size the weights lack", lambda f: _run(f, "sentiment", "base_hidden"), 1, (*MISMATCH, "base-hidden", "hidden_size")),
    ("run qa from a base with a hidden size the weights lack", lambda f: _run(f, "qa", "base_hidden"), 1, (*MISMATCH, "hidden_size")),
    ("run generation with a width the weights lack", lambda f: _run(f, "generation", "gpt2_width"), 1, (*MISMATCH, "gpt2-width", "n_embd")),
    ("predict generation with a vocabulary the weights lack", lambda f: _predict(f, "generation", "gpt2_vocab"), 1, (*MISMATCH, "vocab_size")),
    ("predict translation with a width the weights lack", lambda f: _predict(f, "translation", "bart_width", "--set", "options.source_lang=en", "--set", "options.target_lang=fr"), 1, (*MISMATCH, "d_model")),
    # ------------------------------------------------------------ an encoder as a causal LM
    ("run generation from an encoder", lambda f: _run(f, "generation", "model"), 1, ENCODER),
    ("run translation from an encoder", lambda f: _run(f, "translation", "model"), 1, ENCODER),
    ("predict generation with a masked LM", lambda f: _predict(f, "generation", "masked_lm"), 1, ENCODER),
    ("eval generation of a masked LM", lambda f: _eval(f, "generation", "masked_lm"), 1, ENCODER),
    ("predict translation with a masked LM", lambda f: _predict(f, "translation", "masked_lm", "--set", "options.source_lang=en", "--set", "options.target_lang=fr"), 1, ENCODER),
    # --------------------------------------------------------------------- text pairs
    ("predict a pair model without the second text", lambda f: ["predict", "sentiment", "-m", str(f["pair_model"]), "-i", str(f["one_text"])], 1, ("one-text.jsonl line 2 has no 'text_pair' field", "Add it")),
]  # fmt: skip
