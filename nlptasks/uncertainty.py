"""The per-example side of a final evaluation: bootstrap intervals of every metric and the
rows of ``predictions.jsonl``.

Task metrics are resampled over examples, from the statistics the task's accumulator gives
(``example_statistics``) and its ``metrics_from_statistics``. The loss is resampled over
features (an example for every task but QA, whose windows are features), from each feature's
summed loss and target count, which the core keeps itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nlptasks import bootstrap
from nlptasks.errors import PluginError
from nlptasks.recipes import TrainConfig

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


def of_evaluation(
    task: Any, evaluator: Any, metrics: Mapping[str, float], config: TrainConfig
) -> Uncertainty:
    """Intervals and predictions of the evaluation that gave ``metrics``."""
    examples, losses = evaluator.examples_for(metrics)
    found = Uncertainty()
    resamples, seed = config.bootstrap_resamples, config.bootstrap_seed
    if losses is not None and resamples:
        rows = [{"loss": loss, "count": count} for loss, count in losses.tolist() if count]
        found.intervals.update(bootstrap.intervals(rows, _loss, resamples, seed, LEVEL))
    reduce = getattr(task, "metrics_from_statistics", None)
    if examples is None or not callable(reduce):
        return found
    _check_consistent(task, examples.statistics, reduce, metrics)
    if resamples:
        found.intervals.update(
            bootstrap.intervals(examples.statistics, reduce, resamples, seed, LEVEL)
        )
    found.predictions = [
        {"index": i, **record, "statistics": stats}
        for i, (record, stats) in enumerate(zip(examples.records, examples.statistics, strict=True))
    ]
    return found


def _check_consistent(
    task: Any, statistics: list[dict[str, float]], reduce: Any, metrics: Mapping[str, float]
) -> None:
    """The statistics of the whole eval set must give the metrics the evaluation reported,
    or every interval and comparison built on them would be about another number."""
    names, matrix = bootstrap.statistics_matrix(statistics)
    point = reduce(dict(zip(names, matrix.sum(axis=0).tolist(), strict=True)))
    for name, value in point.items():
        reported = metrics.get(name)
        if reported is None or (math.isnan(value) and math.isnan(reported)):
            continue
        if not math.isclose(value, reported, rel_tol=1e-6, abs_tol=1e-9):
            raise PluginError(
                f"Task '{task.name}': metrics_from_statistics gives {name}={value} on the "
                f"whole eval set, but evaluation reported {reported}. Make the per-example "
                f"statistics add up to the reported metric."
            )
