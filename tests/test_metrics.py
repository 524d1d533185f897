"""The sentiment metrics through evaluate's API: the adapter over the task's one metric path,
with known answers and against sklearn."""

from __future__ import annotations

import random

import pytest
from sklearn.metrics import accuracy_score, f1_score

from nlptasks.builtins.sentiment.metrics import classification_metric


def test_accuracy_and_macro_f1_known_values() -> None:
    predictions = [0, 0, 1, 1, 1, 2]
    references = [0, 1, 1, 1, 2, 2]
    # per-class F1: class 0 = 2/3, class 1 = 2/3, class 2 = 2/3
    assert classification_metric().compute(predictions=predictions, references=references) == {
        "accuracy": pytest.approx(4 / 6),
        "macro_f1": pytest.approx(2 / 3),
    }


def test_macro_f1_punishes_a_majority_guess() -> None:
    references = [1] * 9 + [0]
    always_one = [1] * 10
    found = classification_metric().compute(predictions=always_one, references=references)
    assert found["accuracy"] == 0.9
    assert found["macro_f1"] == pytest.approx((0 + 2 * 9 / 19) / 2)


def test_streaming_add_batch() -> None:
    metric = classification_metric()
    metric.add_batch(predictions=[1, 0], references=[1, 1])
    metric.add_batch(predictions=[0], references=[0])
    assert metric.compute()["accuracy"] == pytest.approx(2 / 3)


def test_agrees_with_sklearn_on_random_labels() -> None:
    rng = random.Random(3)
    for _ in range(20):
        references = [rng.randrange(4) for _ in range(50)]
        predictions = [rng.randrange(4) for _ in range(50)]
        found = classification_metric().compute(predictions=predictions, references=references)
        assert found["accuracy"] == pytest.approx(accuracy_score(references, predictions))
        assert found["macro_f1"] == pytest.approx(
            f1_score(references, predictions, average="macro")
        )
