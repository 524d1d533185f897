"""SQuAD exact match and F1, exactly as the official evaluation scripts compute them.

v1.1 (``evaluate-v1.1.py``): answers are normalised (lowercase; punctuation, the articles
a/an/the and extra whitespace removed); a question scores the maximum over its gold answers;
both metrics are percentages. v2.0 (``evaluate-v2.0.py``) adds unanswerable questions: gold
answers that normalise to nothing are dropped, a question without any has the gold answer
"", and an empty prediction or gold answer gets F1 1 only when both are empty. It also breaks
the scores down into answerable (HasAns) and unanswerable (NoAns) questions.

The task's one metric path: :func:`question_statistics` (per question, numbers that add up)
and :func:`squad_metrics` (their sums -> percentages). :func:`squad_scores` and
:func:`squad_metric` (an ``evaluate.Metric`` with the inputs of the hub's ``squad`` /
``squad_v2`` metrics, which cannot be loaded offline) are both built on those two.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import datasets

if TYPE_CHECKING:
    from nlptasks import StatisticsMetric


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop articles, collapse whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str, v2: bool = False) -> float:
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if v2 and (not predicted or not wanted):
        return float(predicted == wanted)
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def question_scores(prediction: str, golds: Sequence[str], v2: bool = False) -> tuple[float, float]:
    """(exact match, F1) of one question: the best over its gold answers, in 0..1."""
    if v2:
        golds = [g for g in golds if normalize_answer(g)] or [""]
    elif not golds:
        raise ValueError("SQuAD v1.1 scoring needs at least one gold answer per question")
    return (
        max(exact_match(prediction, g) for g in golds),
        max(f1(prediction, g, v2) for g in golds),
    )


def question_statistics(
    prediction: str, golds: Sequence[str], v2: bool = False
) -> dict[str, float]:
    """One question's statistics: 1 question, its exact match and F1 (0..1); with ``v2``
    the same again under ``has/`` or ``no/`` (answerable: any gold answer, as the official
    script)."""
    em, f1_score = question_scores(prediction, golds, v2)
    statistics = {"questions": 1.0, "exact": em, "f1": f1_score}
    if v2:
        group = "has" if golds else "no"
        statistics.update(
            {f"{group}/questions": 1.0, f"{group}/exact": em, f"{group}/f1": f1_score}
        )
    return statistics


def squad_metrics(sums: Mapping[str, float]) -> dict[str, float]:
    """Exact match and F1 in percent from summed :func:`question_statistics`; SQuAD 2.0
    statistics add HasAns_/NoAns_ (NaN for a group without questions)."""

    def percent(key: str, prefix: str = "") -> float:
        questions = sums.get(f"{prefix}questions", 0.0)
        return 100.0 * sums.get(f"{prefix}{key}", 0.0) / questions if questions else float("nan")

    found = {"exact_match": percent("exact"), "f1": percent("f1")}
    if any(key.startswith(("has/", "no/")) for key in sums):
        for group, name in (("has/", "HasAns"), ("no/", "NoAns")):
            found[f"{name}_exact"] = percent("exact", group)
            found[f"{name}_f1"] = percent("f1", group)
    return found


def squad_scores(
    predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], v2: bool = False
) -> dict[str, float]:
    """The official scripts' percentages over the questions of ``golds`` (id -> gold texts);
    a question without a prediction scores 0, as in the official scripts."""
    sums: dict[str, float] = {}
    for qid, answers in golds.items():
        for key, value in question_statistics(predictions.get(qid, ""), answers, v2).items():
            sums[key] = sums.get(key, 0.0) + value
    return squad_metrics(sums)


def squad_metric(v2: bool = False, **kwargs: Any) -> StatisticsMetric:
    """SQuAD v1.1 (``v2``: v2.0) exact match and F1 as an ``evaluate.Metric``, with the hub
    metrics' inputs: predictions ``[{"id", "prediction_text"}]``, references ``[{"id",
    "answers": {"text": [...], "answer_start": [...]}}]``, in the same order."""
    from nlptasks import StatisticsMetric  # evaluate is heavy: loaded when asked for

    return StatisticsMetric(
        functools.partial(_hub_statistics, v2=v2),
        squad_metrics,
        datasets.Features(
            {
                "predictions": {
                    "id": datasets.Value("string"),
                    "prediction_text": datasets.Value("string"),
                },
                "references": {
                    "id": datasets.Value("string"),
                    "answers": datasets.Sequence(
                        {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                    ),
                },
            }
        ),
        description=__doc__ or "",
        **kwargs,
    )


def _hub_statistics(
    prediction: Mapping[str, Any], reference: Mapping[str, Any], v2: bool
) -> dict[str, float]:
    if prediction["id"] != reference["id"]:
        raise ValueError(
            f"Prediction '{prediction['id']}' is paired with reference '{reference['id']}'; "
            f"give predictions and references in the same order."
        )
    return question_statistics(
        prediction["prediction_text"], list(reference["answers"]["text"]), v2
    )
