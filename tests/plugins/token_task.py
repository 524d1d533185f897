"""A fixture plugin: a token-classification task written only against the public API.

Each word of an SST-2 sentence is tagged LONG (5+ characters) or SHORT. Outputs differ in
length per example (one prediction per token), and the metrics are computed from the
outputs of every batch and the raw examples (the words and their gold tags). It has no
collate of its own: the core's padding does.
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
from nlptasks import EvalContext, MetricSpec, Recipe, Scores, Step, TaskInfo

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
    info: ClassVar[TaskInfo] = TaskInfo(
        name=TASK,
        pipeline_tag="token-classification",
        metrics=(
            MetricSpec("word_accuracy", greater_is_better=True, low=0.0, high=1.0),
            MetricSpec("words", greater_is_better=True, low=0.0),
        ),
        input_fields=("text",),
        options=TokenOptions,
        default_recipe="tiny",
    )

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

    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        head = {} if trained else {"num_labels": 2, "id2label": dict(enumerate(TAGS))}
        model = AutoModelForTokenClassification.from_pretrained(model_path, **head)
        return model, AutoTokenizer.from_pretrained(model_path)

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

        # No collate: the core pads input_ids, attention_mask and labels (with -100).
        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Step:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        labels = batch["labels"]
        per_token = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        return Step(
            loss=per_token.sum(dim=1),
            count=(labels != -100).sum(dim=1),
            # (batch, tokens): lengths differ between batches, so evaluation pads them.
            outputs={"predictions": logits.argmax(-1).masked_fill(labels == -100, -100)},
        )

    def score(self, outputs: Mapping[str, torch.Tensor], context: EvalContext) -> Scores:
        """Each example against the raw examples' gold tags: its words and correct words."""
        records, statistics = [], []
        rows = zip(outputs["predictions"].tolist(), context.examples["tags"], strict=True)
        for row, tags in rows:
            predicted = [TAGS[t] for t in row if t != -100]  # padding is -100 too
            gold = tags[: len(predicted)]
            correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
            records.append({"prediction": predicted, "reference": gold})
            statistics.append({"words": float(len(gold)), "correct": float(correct)})
        return Scores(records, statistics)

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        words = sums.get("words", 0.0)
        return {"word_accuracy": sums.get("correct", 0.0) / max(words, 1.0), "words": words}

    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        device = next(model.parameters()).device
        results = []
        for record in records:
            words = str(record["text"]).split()
            encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
            tags = model(**encoded.to(device)).logits[0].argmax(-1).tolist()
            first: dict[int, str] = {}
            for position, word in enumerate(encoded.word_ids(0)):
                if word is not None and word not in first:
                    first[word] = TAGS[tags[position]]
            results.append({"words": words, "tags": [first[i] for i in range(len(words))]})
        return results

    def model_card(self) -> dict[str, Any]:
        # Front matter the card keeps beside its own keys.
        return {"tags": TAGS, "metadata": {"language": ["en"]}}
