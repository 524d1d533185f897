"""A task's metric path as an ``evaluate.Metric``: for code that wants evaluate's
``add_batch`` / ``compute`` API. It is an adapter over the same two functions the task uses
(per-example statistics, then their sums to metrics), not a second implementation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import datasets
import evaluate

from nlptasks.evaluation.bootstrap import point_estimate

PerExample = Callable[[Any, Any], Mapping[str, float]]
"""``(prediction, reference) -> statistics`` of one example."""
Aggregate = Callable[[Mapping[str, float]], Mapping[str, float]]


class StatisticsMetric(evaluate.Metric):
    """``compute(predictions=..., references=...)``: the metrics ``aggregate`` gives for the
    summed ``per_example`` statistics of every (prediction, reference) pair."""

    def __init__(
        self,
        per_example: PerExample,
        aggregate: Aggregate,
        features: datasets.Features,
        description: str = "",
        **kwargs: Any,
    ) -> None:
        # evaluate.Metric.__init__ calls _info(), which reads these.
        self._per_example = per_example
        self._aggregate = aggregate
        self._features = features
        self._description = description
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self._description,
            citation="",
            inputs_description="predictions and references, one per example.",
            features=self._features,
        )

    def _compute(self, predictions: Any, references: Any) -> dict[str, float]:
        rows = [self._per_example(p, r) for p, r in zip(predictions, references, strict=True)]
        return {name: float(value) for name, value in point_estimate(rows, self._aggregate).items()}
