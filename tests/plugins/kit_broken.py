"""Variants of the sentiment task, each with one defect the conformance kit must catch
(tests/test_conformance_kit.py), and one without any (the control)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import nlptasks
from nlptasks import MetricSpec, Recipe, Step, TaskInfo
from nlptasks.builtins.sentiment.task import SentimentTask

RECIPE = Path(__file__).with_name("kit-broken-recipe.yaml")


def _info(name: str, **changes: Any) -> TaskInfo:
    return dataclasses.replace(SentimentTask.info, name=name, **changes)


class ControlTask(SentimentTask):
    """No defect: proves that the failures of the others come from their defects."""

    info: ClassVar[TaskInfo] = _info("kit-control")


class MeanLossTask(SentimentTask):
    """forward averages the batch's loss into one number instead of one per example."""

    info: ClassVar[TaskInfo] = _info("kit-mean-loss")

    def forward(self, model: Any, batch: Any) -> Step:
        step = super().forward(model, batch)
        return Step(step.loss.mean(), None, step.outputs)


class ExtraMetricTask(SentimentTask):
    """Declares a metric that its evaluation never reports."""

    info: ClassVar[TaskInfo] = _info(
        "kit-extra-metric",
        metrics=(
            *SentimentTask.info.metrics,
            MetricSpec("precision", greater_is_better=True, low=0.0, high=1.0),
        ),
    )


class NeverGeneratedMetricTask(SentimentTask):
    """Declares a generation metric, but cannot generate: evaluation never reports it."""

    info: ClassVar[TaskInfo] = _info(
        "kit-never-generated-metric",
        metrics=(
            *SentimentTask.info.metrics,
            MetricSpec("bleu", greater_is_better=True, low=0.0, high=100.0, needs_generation=True),
        ),
    )


class RandomMetricTask(SentimentTask):
    """aggregate reports macro_f1 from an unseeded random draw: within its range and
    declared, but not a function of the statistics (the same sums give another number)."""

    info: ClassVar[TaskInfo] = _info("kit-random-metric")

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        return {**super().aggregate(sums), "macro_f1": random.SystemRandom().random()}


class NanMetricTask(SentimentTask):
    """macro_f1 is always NaN (a 0/0 bug): declared and reported, but never a number."""

    info: ClassVar[TaskInfo] = _info("kit-nan-metric")

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        return {**super().aggregate(sums), "macro_f1": float("nan")}


class UnmaskedPredictTask(SentimentTask):
    """predict pads a batch but drops its attention mask: a short text padded next to a long
    one gets other scores than alone."""

    info: ClassVar[TaskInfo] = _info("kit-unmasked-predict")

    def predict(
        self,
        model: Any,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        texts = [str(r["text"]) for r in records]
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        # Raw logits, not probabilities: a confident tiny model's softmax saturates, and the
        # padding's effect could hide below the kit's 1e-6 tolerance.
        logits = model(input_ids=batch["input_ids"]).logits.float()
        return [
            {"text": text, "score": row.max().item()}
            for text, row in zip(texts, logits, strict=True)
        ]


class BadPredictTask(SentimentTask):
    """predict returns a NaN score, which is not JSON."""

    info: ClassVar[TaskInfo] = _info("kit-bad-predict")

    def predict(
        self,
        model: Any,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        results = super().predict(model, tokenizer, records, recipe)
        return [{**result, "score": float("nan")} for result in results]


class BadExplainTask(SentimentTask):
    """explain drops each explanation's last attribution: tokens and attributions no longer
    pair up (an off-by-one when leaving out a special token)."""

    info: ClassVar[TaskInfo] = _info("kit-bad-explain")

    def explain(
        self,
        model: Any,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        predictions: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        found = super().explain(model, tokenizer, records, recipe, predictions)
        return [{**e, "attributions": e["attributions"][:-1]} for e in found]


class WrongTagTask(SentimentTask):
    """Says question-answering while it saves a sequence-classification model (and declares
    that model kind, so the core's model-fit check lets it train: only the kit's reload with
    the tag's Auto class can tell)."""

    info: ClassVar[TaskInfo] = _info(
        "kit-wrong-tag",
        pipeline_tag="question-answering",
        model_classes=("AutoModelForSequenceClassification",),
    )


class NoInputFieldsTask(SentimentTask):
    """Declares no input fields: predict could not say what a record needs."""

    info: ClassVar[TaskInfo] = _info("kit-no-input-fields", input_fields=())


TASKS: tuple[type[SentimentTask], ...] = (
    ControlTask,
    MeanLossTask,
    ExtraMetricTask,
    NeverGeneratedMetricTask,
    RandomMetricTask,
    NanMetricTask,
    UnmaskedPredictTask,
    BadPredictTask,
    BadExplainTask,
    WrongTagTask,
    NoInputFieldsTask,
)


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    for task in TASKS:
        register(task.info.name, f"{__name__}:{task.__name__}", description=task.__doc__ or "")


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    for task in TASKS:
        register(task.info.name, task.info.default_recipe, RECIPE)
