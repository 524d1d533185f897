"""A whole nlptasks plugin in one module: news headlines -> their topic, on its own data.

docs/plugins.md walks through it; tests/test_docs.py trains, evaluates and predicts with it
and runs the conformance kit on it. To install it, make it the ``__init__.py`` of a package
with ``topic.yaml`` beside it as package data and the entry point ``topic = "nlptasks_topic"``
in the group ``nlptasks``. A larger plugin keeps the hooks free of torch imports and
registers ``"nlptasks_topic.task:TopicTask"``, so that ``nlptasks list`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import nlptasks
from nlptasks import DataError, EvalContext, MetricSpec, Recipe, Scores, Step, TaskInfo

# ------------------------------------------------------------------------------ the plugin
TOPICS = {
    "business": ("market", "bank", "profit", "trade", "shares", "price", "tax", "jobs"),
    "science": ("planet", "cell", "atom", "climate", "telescope", "virus", "brain", "ocean"),
    "sport": ("match", "goal", "team", "coach", "league", "race", "player", "cup"),
}
TEMPLATES = ("the {} is in the news", "a new report on the {}", "what the {} means", "{} today")


def headlines(config: nlptasks.DataConfig) -> Dataset:
    """The ``topic-headlines`` dataset: 96 headlines, each with one word that gives its topic."""
    rows = [(t.format(w), topic) for topic, ws in TOPICS.items() for w in ws for t in TEMPLATES]
    return Dataset.from_dict({"text": [t for t, _ in rows], "label": [x for _, x in rows]})


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register("topic", f"{__name__}:TopicTask", description="A headline -> its topic.")


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register("topic-headlines", headlines, description="96 news headlines", tasks=("topic",))


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    register("topic", "default", Path(__file__).with_name("topic.yaml"))


# -------------------------------------------------------------------------------- the task
class TopicTask:
    """Rows with a ``text`` and a ``label``; the label names live in the model's id2label."""

    info: ClassVar[TaskInfo] = TaskInfo(
        name="topic",
        pipeline_tag="text-classification",
        metrics=(MetricSpec("accuracy", greater_is_better=True, low=0.0, high=1.0),),
    )
    labels: tuple[str, ...] = ()  # from the training data, or from a trained model

    def prepare_data(
        self, splits: DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> DatasetDict:
        for name, split in splits.items():  # a problem with the data: one line, no traceback
            if missing := {"text", "label"} - set(split.column_names):
                raise DataError(f"The {name} data has no column '{missing.pop()}'.")
        if trained_model is None:  # else build_model took the trained model's labels
            self.labels = tuple(sorted(set(splits["train"]["label"])))
        if unknown := set(splits["eval"]["label"]) - set(self.labels):
            raise DataError(f"The eval data has labels the model lacks: {sorted(unknown)}.")
        return splits.select_columns(["text", "label"])

    def build_model(self, model_path: str, recipe: Recipe, trained: bool = False) -> Any:
        names = dict(enumerate(self.labels))  # a base model's new head; a trained one has its own
        head: dict[str, Any] = {"id2label": names, "label2id": {n: i for i, n in names.items()}}
        auto = AutoModelForSequenceClassification.from_pretrained
        new = partial(auto, **head, ignore_mismatched_sizes=True)
        model = nlptasks.load_pretrained(model_path, auto if trained else new)
        self.labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
        return model, nlptasks.load_pretrained(model_path, AutoTokenizer.from_pretrained)

    def preprocess(self, dataset: Dataset, tokenizer: Any, recipe: Recipe) -> Dataset:
        ids = {label: i for i, label in enumerate(self.labels)}

        def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            encoded = tokenizer(batch["text"], truncation=True, max_length=recipe.data.max_length)
            lengths = [len(x) for x in encoded["input_ids"]]  # for length-sorted batches
            return {**encoded, "length": lengths, "labels": [ids[x] for x in batch["label"]]}

        return dataset.map(tokenize, batched=True, remove_columns=["text", "label"])

    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Step:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        loss = F.cross_entropy(logits, batch["labels"], reduction="none")  # one per example
        return Step(loss, outputs={"predicted": logits.argmax(-1)})

    def score(self, outputs: Mapping[str, torch.Tensor], context: EvalContext) -> Scores:
        """Per example: a record to read (predictions.jsonl) and statistics that add up."""
        texts, gold = context.examples["text"], context.examples["label"]
        predicted = [self.labels[i] for i in outputs["predicted"].tolist()]
        rows = list(zip(texts, predicted, gold, strict=True))
        records = [{"text": t, "prediction": p, "reference": g} for t, p, g in rows]
        return Scores(records, [{"examples": 1.0, "correct": float(p == g)} for _, p, g in rows])

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        return {"accuracy": sums["correct"] / sums["examples"]}

    def predict(
        self, model: Any, tokenizer: Any, records: Sequence[Any], recipe: Recipe, write: Any = None
    ) -> list[dict[str, Any]]:
        texts = [str(record["text"]) for record in records]
        features = tokenizer(texts, truncation=True, max_length=recipe.data.max_length)
        rows = [{k: features[k][i] for k in features} for i in range(len(texts))]
        collate = partial(nlptasks.pad_features, pad_values={"input_ids": tokenizer.pad_token_id})
        size, device = recipe.train.eval_batch_size, next(model.parameters()).device
        results: list[dict[str, Any]] = [{} for _ in texts]
        for indices, batch in nlptasks.predict_batches(rows, collate, size, device):
            probabilities = model(**batch).logits.float().softmax(-1).tolist()
            for i, p in zip(indices, probabilities, strict=True):
                best = max(range(len(p)), key=p.__getitem__)
                results[i] = {"text": texts[i], "topic": self.labels[best], "score": p[best]}
        return results

    def model_card(self) -> dict[str, Any]:
        return {"labels": list(self.labels)}
