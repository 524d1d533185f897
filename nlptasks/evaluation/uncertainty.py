"""The per-example side of a final evaluation: bootstrap intervals of every metric and the
rows of ``predictions.jsonl``.

Task metrics are resampled over examples, from the statistics the task's ``score`` gives and
its ``aggregate``: the path the reported metrics take. The loss is resampled over
features (an example for every task but QA, whose windows are features), from each feature's
summed loss and target count, which the core keeps itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nlptasks.evaluation import bootstrap
from nlptasks.recipes import TrainConfig

if TYPE_CHECKING:
    from nlptasks.evaluation.evaluator import Evaluation

LEVEL = 0.95


@dataclass
class Uncertainty:
    """Intervals of one evaluation's metrics, and what each example scored."""

    intervals: dict[str, bootstrap.Interval] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    """``predictions.jsonl``: per example its index, the task's record and its statistics."""

    def summary(self, config: TrainConfig) -> dict[str, Any]:
        """What results.json keeps about the intervals."""
        return {
            "level": LEVEL,
            "method": "percentile bootstrap",
            "resamples": config.bootstrap_resamples,
            "seed": config.bootstrap_seed,
            "unit": "examples (loss: features)",
            "eval": {name: [i.low, i.high] for name, i in self.intervals.items()},
        }


def _loss(sums: Mapping[str, float]) -> dict[str, float]:
    count = sums.get("count", 0.0)
    return {"loss": sums.get("loss", 0.0) / count if count else math.nan}


def of_evaluation(task: Any, evaluation: Evaluation, config: TrainConfig) -> Uncertainty:
    """Intervals and predictions of one evaluation."""
    found = Uncertainty()
    resamples, seed = config.bootstrap_resamples, config.bootstrap_seed
    if resamples:
        rows = [
            {"loss": loss, "count": count} for loss, count in evaluation.losses.tolist() if count
        ]
        found.intervals.update(bootstrap.intervals(rows, _loss, resamples, seed, LEVEL))
    scores = evaluation.scores
    if not scores.statistics:
        return found
    if resamples:
        found.intervals.update(
            bootstrap.intervals(scores.statistics, task.aggregate, resamples, seed, LEVEL)
        )
    found.predictions = [
        {"index": i, **record, "statistics": stats}
        for i, (record, stats) in enumerate(zip(scores.records, scores.statistics, strict=True))
    ]
    return found
