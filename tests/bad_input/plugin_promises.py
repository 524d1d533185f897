# ruff: noqa: E501  (one case per line reads best as a table)
"""Bad-input cases: what a plugin author and publisher are promised, and outputs that keep
float32's precision under mixed precision (the model's body in bf16, its head in float32)."""

from __future__ import annotations

from pathlib import Path

from tests.bad_input import Case, Files, write

# A head whose logits bf16 cannot hold apart: 2.9921875 lies halfway between the bf16
# numbers 2.984375 and 3.0 and rounds to 3.0. With zero weights the logits are the bias
# exactly, whatever the body computes, so the expected outputs are exact numbers:
# float32 says "positive" with probability sigmoid(1/128) = 0.501953, loss 0.689247 on
# positive rows; a bf16 head said "negative" (a tie) with 0.5, loss log(2) = 0.693147.
_LOGITS = (2.9921875, 3.0)


def _exact_head_model(tiny_bert: Path, folder: Path) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(_LOGITS))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


def add_files(f: Files) -> None:
    """The files these cases need, under f["root"]."""
    f["exact_head"] = _exact_head_model(f["model"], f["root"] / "exact-head")
    lines = f["train"].read_text().splitlines()
    positive = [line for line in lines[1:] if line.endswith("\t1")]
    f["positive_dev"] = write(f, "positive.tsv", "\n".join([lines[0], *positive[:20]]) + "\n")
    f["records"] = write(
        f,
        "records.jsonl",
        '{"text": "a gripping , funny and moving film"}\n{"text": "dull"}\n{"text": "one of the best movies of the year , and a clever script"}\n',
    )


def _predict(f: Files, *more: str) -> list[str]:
    return ["predict", "sentiment", "-m", str(f["exact_head"]), *more]


def _eval(f: Files, *more: str) -> list[str]:
    return [
        "eval",
        "sentiment",
        "-m",
        str(f["exact_head"]),
        "--json",
        f"data.eval_path={f['positive_dev']}",
        *more,
    ]


FLOAT32_PREDICTION = ('"label": "positive"', '"score": 0.50195')
FLOAT32_METRICS = ('"loss": 0.68924', '"accuracy": 1.0')

CASES: list[Case] = [
    # ------------------------------------------------- outputs keep float32's precision
    ("predict in bf16 keeps the head's precision", lambda f: _predict(f, "--mixed-precision", "bf16", "a film"), 0, FLOAT32_PREDICTION),
    ("predict in the recipe's auto precision", lambda f: _predict(f, "a film"), 0, FLOAT32_PREDICTION),
    ("predict bf16 set as an override", lambda f: _predict(f, "--set", "train.mixed_precision=bf16", "a film"), 0, FLOAT32_PREDICTION),
    ("predict a padded batch in bf16", lambda f: _predict(f, "--mixed-precision", "bf16", "--batch-size", "2", "-i", str(f["records"])), 0, FLOAT32_PREDICTION),
    ("eval in bf16 keeps the metrics' precision", lambda f: _eval(f, "train.mixed_precision=bf16"), 0, FLOAT32_METRICS),
    ("eval in the recipe's auto precision", lambda f: _eval(f), 0, FLOAT32_METRICS),
    ("a bf16 run's evaluation keeps the metrics' precision", lambda f: ["run", "sentiment", f"model={f['exact_head']}", f"data.train_path={f['train']}", f"data.eval_path={f['positive_dev']}", "train.max_steps=1", "train.learning_rate=1e-12", "train.mixed_precision=bf16", "train.save_checkpoints=false", "-o", str(f["root"] / "bf16-run"), "--json"], 0, ('"loss": 0.68924', '"accuracy": 1.0')),
]  # fmt: skip
