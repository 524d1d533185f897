"""Variants of the sentiment task, each with one defect the conformance kit must catch
(tests/test_conformance_kit.py), and one without any (the control)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import nlptasks
from nlptasks import CollectOutputs, EvalContext, MetricSpec, Recipe
from nlptasks.builtins.sentiment.task import SentimentTask, _classification_metrics

RECIPE = Path(__file__).with_name("kit-broken-recipe.yaml")


class ControlTask(SentimentTask):
    """No defect: proves that the failures of the others come from their defects."""

    name: ClassVar[str] = "kit-control"


class MeanLossTask(SentimentTask):
    """compute_loss averages over the batch instead of summing (count_targets says 4)."""

    name: ClassVar[str] = "kit-mean-loss"

    def compute_loss(self, model: Any, batch: Any) -> Any:
        return super().compute_loss(model, batch) / self.count_targets(batch)


class ExtraMetricTask(SentimentTask):
    """Declares a metric that its evaluation never reports."""

    name: ClassVar[str] = "kit-extra-metric"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *SentimentTask.metrics,
        MetricSpec("precision", greater_is_better=True, low=0.0, high=1.0),
    )


class NeverGeneratedMetricTask(SentimentTask):
    """Declares a generation metric, but cannot generate: evaluation never reports it."""

    name: ClassVar[str] = "kit-never-generated-metric"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *SentimentTask.metrics,
        MetricSpec("bleu", greater_is_better=True, low=0.0, high=100.0, needs_generation=True),
    )


class RandomMetricTask(SentimentTask):
    """Reports macro_f1 from an unseeded random draw: within its range and declared, but
    not a function of the predictions (evaluating the same model twice disagrees)."""

    name: ClassVar[str] = "kit-random-metric"

    def new_metrics(self, context: EvalContext) -> CollectOutputs:
        def unseeded(outputs: dict[str, Any], context: EvalContext) -> dict[str, float]:
            metrics = _classification_metrics(outputs, context)
            metrics["macro_f1"] = random.SystemRandom().random()
            return metrics

        return CollectOutputs(unseeded)


class NanMetricTask(SentimentTask):
    """macro_f1 is always NaN (a 0/0 bug): declared and reported, but never a number."""

    name: ClassVar[str] = "kit-nan-metric"

    def new_metrics(self, context: EvalContext) -> CollectOutputs:
        def undefined(outputs: dict[str, Any], context: EvalContext) -> dict[str, float]:
            return {**_classification_metrics(outputs, context), "macro_f1": float("nan")}

        return CollectOutputs(undefined)


class UnmaskedPredictTask(SentimentTask):
    """predict pads a batch but drops its attention mask: a short text padded next to a long
    one gets other scores than alone."""

    name: ClassVar[str] = "kit-unmasked-predict"

    def predict(
        self,
        model: Any,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        texts = [str(r["text"]) for r in records]
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        probabilities = model(input_ids=batch["input_ids"]).logits.float().softmax(-1)
        return [
            {"text": text, "score": row.max().item()}
            for text, row in zip(texts, probabilities, strict=True)
        ]


class BadPredictTask(SentimentTask):
    """predict returns a NaN score, which is not JSON."""

    name: ClassVar[str] = "kit-bad-predict"

    def predict(
        self,
        model: Any,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        results = super().predict(model, tokenizer, records, recipe)
        return [{**result, "score": float("nan")} for result in results]


class WrongTagTask(SentimentTask):
    """Says question-answering while it saves a sequence-classification model."""

    name: ClassVar[str] = "kit-wrong-tag"
    pipeline_tag: ClassVar[str] = "question-answering"


class UndeclaredMainMetricTask(SentimentTask):
    """main_metric names a metric the task does not declare."""

    name: ClassVar[str] = "kit-undeclared-main-metric"
    main_metric: ClassVar[str] = "f1"


TASKS: tuple[type[SentimentTask], ...] = (
    ControlTask,
    MeanLossTask,
    ExtraMetricTask,
    NeverGeneratedMetricTask,
    RandomMetricTask,
    NanMetricTask,
    UnmaskedPredictTask,
    BadPredictTask,
    WrongTagTask,
    UndeclaredMainMetricTask,
)


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    for task in TASKS:
        register(task.name, f"{__name__}:{task.__name__}", description=task.__doc__ or "")


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    for task in TASKS:
        register(task.name, task.default_recipe, RECIPE)
