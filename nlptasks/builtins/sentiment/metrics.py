"""Accuracy and macro-F1 as ``evaluate.Metric`` subclasses: no Hub download, ever."""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score


def _class_id_info(description: str) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description="predictions and references: lists of class ids.",
        features=datasets.Features(
            {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
        ),
    )


class Accuracy(evaluate.Metric):
    """Fraction of predictions equal to the references."""

    def _info(self) -> evaluate.MetricInfo:
        return _class_id_info("Accuracy: (number correct) / (number of examples).")

    def _compute(self, predictions: Any, references: Any) -> dict[str, float]:
        return {"accuracy": float(accuracy_score(references, predictions))}


class MacroF1(evaluate.Metric):
    """Unweighted mean of per-class F1 over the classes in references or predictions."""

    def _info(self) -> evaluate.MetricInfo:
        return _class_id_info("Macro-averaged F1: per-class F1, averaged with equal weight.")

    def _compute(self, predictions: Any, references: Any) -> dict[str, float]:
        return {"macro_f1": float(f1_score(references, predictions, average="macro"))}
