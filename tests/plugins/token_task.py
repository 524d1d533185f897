"""A fixture plugin: a token-classification task written only against the public API.

Each word of an SST-2 sentence is tagged LONG (5+ characters) or SHORT. Outputs differ in
length per example (one prediction per token), and the metrics are computed from the
gathered outputs and the raw examples (the words and their gold tags).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification, AutoTokenizer

import nlptasks
from nlptasks import EvalContext, MetricSpec, Recipe

TASK = "toy-tokens"
TAGS = ["SHORT", "LONG"]
SST2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sst2"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(TASK, "tests.plugins.token_task:TokenTask", description="word length tagging")


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register("toy-token-words", load_words, description="SST-2 words tagged", tasks=(TASK,))


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    register(TASK, "tiny", Path(__file__).with_name("token-recipe.yaml"))


def load_words(config: Any) -> datasets.DatasetDict:
    """The first 300 SST-2 train and 70 dev sentences as words with their tags."""

    def read(name: str, limit: int) -> datasets.Dataset:
        lines = (SST2 / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[1 : limit + 1]
        words = [line.split("\t")[0].split()[:24] for line in lines]
        tags = [[TAGS[len(w) >= 5] for w in ws] for ws in words]
        return datasets.Dataset.from_dict({"words": words, "tags": tags})

    return datasets.DatasetDict({"train": read("train", 300), "validation": read("dev", 70)})


@dataclass
class TokenOptions:
    max_words: int = 24
    """Words per example that are tagged (the rest are cut)."""

    def problems(self) -> list[str]:
        return [] if self.max_words > 0 else ["'options.max_words' must be at least 1"]


class TokenTask:
    name: ClassVar[str] = TASK
    default_recipe: ClassVar[str] = "tiny"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("word_accuracy", greater_is_better=True, low=0.0, high=1.0),
        MetricSpec("words", greater_is_better=True, low=0.0),
    )
    main_metric: ClassVar[str] = "word_accuracy"
    input_fields: ClassVar[tuple[str, ...]] = ("text",)
    options_class: ClassVar[type] = TokenOptions
    pipeline_tag: ClassVar[str] = "token-classification"

    def __init__(self) -> None:
        self.pad_token_id = 0

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        cut = recipe.options.max_words
        return datasets.DatasetDict(
            {
                name: split.map(lambda b: {"words": b["words"][:cut], "tags": b["tags"][:cut]})
                for name, split in splits.items()
            }
        )

    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForTokenClassification.from_pretrained(
            model_path, num_labels=2, id2label=dict(enumerate(TAGS))
        )
        self.pad_token_id = tokenizer.pad_token_id or 0
        return model, tokenizer

    def load_trained(self, model_dir: str) -> tuple[torch.nn.Module, Any]:
        model, tokenizer = (
            AutoModelForTokenClassification.from_pretrained(model_dir),
            AutoTokenizer.from_pretrained(model_dir),
        )
        self.pad_token_id = tokenizer.pad_token_id or 0
        return model, tokenizer

    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            encoded = tokenizer(batch["words"], is_split_into_words=True, truncation=True)
            labels = []
            for i, tags in enumerate(batch["tags"]):
                previous = None
                row = []
                for word in encoded.word_ids(i):
                    # Only a word's first token is scored; the rest are ignored (-100).
                    first = word is not None and word != previous
                    row.append(TAGS.index(tags[word]) if first else -100)
                    previous = word
                labels.append(row)
            return {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                "labels": labels,
                "length": [len(ids) for ids in encoded["input_ids"]],
            }

        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([f[key] + [value] * (longest - len(f[key])) for f in features])

        return {
            "input_ids": pad("input_ids", self.pad_token_id),
            "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", -100),
        }

    def count_targets(self, batch: Mapping[str, Any]) -> int:
        return int((batch["labels"] != -100).sum())

    def _logits(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits.float()

    def compute_loss(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        logits = self._logits(model, batch)
        return F.cross_entropy(logits.transpose(1, 2), batch["labels"], reduction="sum")

    def eval_step(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
        logits = self._logits(model, batch)
        labels = batch["labels"]
        per_token = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        predictions = logits.argmax(-1).masked_fill(labels == -100, -100)
        return {
            "predictions": predictions,  # (batch, tokens): lengths differ between batches
            "loss": per_token.sum(dim=1),
            "loss_count": (labels != -100).sum(dim=1),
        }

    def new_metrics(self, context: EvalContext) -> WordAccuracy:
        return WordAccuracy(context)

    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        results = []
        for record in records:
            words = str(record["text"]).split()
            encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
            tags = model(**encoded.to(model.device)).logits[0].argmax(-1).tolist()
            first: dict[int, str] = {}
            for position, word in enumerate(encoded.word_ids(0)):
                if word is not None and word not in first:
                    first[word] = TAGS[tags[position]]
            results.append({"words": words, "tags": [first[i] for i in range(len(words))]})
        return results

    def model_card_info(self) -> dict[str, Any]:
        return {"tags": TAGS}

    def model_card_data(self) -> dict[str, Any]:
        return {"language": ["en"]}


class WordAccuracy:
    """Streams: each batch is scored at once against the raw examples' gold tags."""

    def __init__(self, context: EvalContext) -> None:
        self.gold = context.examples["tags"]
        self.correct = 0
        self.total = 0

    def add_batch(self, outputs: Mapping[str, torch.Tensor]) -> None:
        for index, row in zip(outputs["index"].tolist(), outputs["predictions"], strict=True):
            predicted = [TAGS[t] for t in row.tolist() if t != -100]  # padding is -100 too
            gold = self.gold[index][: len(predicted)]
            self.correct += sum(p == g for p, g in zip(predicted, gold, strict=True))
            self.total += len(gold)

    def compute(self, context: EvalContext) -> dict[str, float]:
        return {"word_accuracy": self.correct / max(self.total, 1), "words": float(self.total)}
