"""Accuracy and macro-F1 from per-example counts: the task's one metric path, and the same
two functions as an ``evaluate.Metric`` (no Hub download, ever)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import datasets

if TYPE_CHECKING:
    from nlptasks import StatisticsMetric


def label_statistics(predicted: Any, gold: Any) -> dict[str, float]:
    """One example's counts: 1 example, 1 if correct, and its class's true positive (or the
    predicted class's false positive and the gold class's false negative)."""
    counts = {"examples": 1.0, "correct": float(predicted == gold)}
    if predicted == gold:
        counts[f"tp/{gold}"] = 1.0
    else:
        counts[f"fp/{predicted}"] = 1.0
        counts[f"fn/{gold}"] = 1.0
    return counts


def classification_metrics(sums: Mapping[str, float]) -> dict[str, float]:
    """Accuracy, and macro-F1 over the classes that occur (as gold or prediction), as
    sklearn's ``f1_score(average="macro")`` counts them."""
    classes = {key.split("/", 1)[1] for key in sums if key[:3] in ("tp/", "fp/", "fn/")}
    f1s = []
    for name in classes:
        tp, fp, fn = (sums.get(f"{kind}/{name}", 0.0) for kind in ("tp", "fp", "fn"))
        if tp + fp + fn > 0:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    examples = sums.get("examples", 0.0)
    return {
        "accuracy": sums.get("correct", 0.0) / examples if examples else float("nan"),
        "macro_f1": sum(f1s) / len(f1s) if f1s else float("nan"),
    }


def classification_metric(**kwargs: Any) -> StatisticsMetric:
    """Accuracy and macro-F1 as an ``evaluate.Metric`` over class ids."""
    from nlptasks import StatisticsMetric  # evaluate is heavy: loaded when asked for

    return StatisticsMetric(
        label_statistics,
        classification_metrics,
        datasets.Features(
            {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
        ),
        description="Accuracy and macro-F1 of class ids.",
        **kwargs,
    )
