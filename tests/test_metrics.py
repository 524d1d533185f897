"""The offline metrics: evaluate.Metric subclasses with known answers."""

from __future__ import annotations

import pytest

from nlptasks.builtins.sentiment.metrics import Accuracy, MacroF1


def test_accuracy_and_macro_f1_known_values() -> None:
    predictions = [0, 0, 1, 1, 1, 2]
    references = [0, 1, 1, 1, 2, 2]
    assert Accuracy().compute(predictions=predictions, references=references) == {
        "accuracy": pytest.approx(4 / 6)
    }
    # per-class F1: class 0 = 2/3, class 1 = 2/3, class 2 = 2/3
    result = MacroF1().compute(predictions=predictions, references=references)
    assert result == {"macro_f1": pytest.approx(2 / 3)}


def test_macro_f1_punishes_a_majority_guess() -> None:
    references = [1] * 9 + [0]
    always_one = [1] * 10
    assert Accuracy().compute(predictions=always_one, references=references)["accuracy"] == 0.9
    macro = MacroF1().compute(predictions=always_one, references=references)["macro_f1"]
    assert macro == pytest.approx((0 + 2 * 9 / 19) / 2)


def test_streaming_add_batch() -> None:
    metric = Accuracy()
    metric.add_batch(predictions=[1, 0], references=[1, 1])
    metric.add_batch(predictions=[0], references=[0])
    assert metric.compute() == {"accuracy": pytest.approx(2 / 3)}
