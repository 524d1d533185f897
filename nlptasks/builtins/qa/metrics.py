"""SQuAD exact match and F1, exactly as the official evaluation scripts compute them.

v1.1 (``evaluate-v1.1.py``): answers are normalised (lowercase; punctuation, the articles
a/an/the and extra whitespace removed); a question scores the maximum over its gold answers;
both metrics are percentages. v2.0 (``evaluate-v2.0.py``) adds unanswerable questions: gold
answers that normalise to nothing are dropped, a question without any has the gold answer
"", and an empty prediction or gold answer gets F1 1 only when both are empty. It also breaks
the scores down into answerable (HasAns) and unanswerable (NoAns) questions.

Also as ``evaluate.Metric`` subclasses (``Squad``, ``SquadV2``) with the inputs of the hub's
``squad`` / ``squad_v2`` metrics, which cannot be loaded offline.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

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


def squad_scores(
    predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], v2: bool = False
) -> dict[str, float]:
    """Percentages over the questions of ``golds`` (id -> gold texts); a question without a
    prediction scores 0, as in the official scripts. v2 adds HasAns_/NoAns_ exact and F1
    (NaN when there are no such questions)."""
    per_question = {
        qid: question_scores(predictions.get(qid, ""), answers, v2)
        for qid, answers in golds.items()
    }
    result = _percentages(per_question.values(), "exact_match", "f1")
    if v2:
        # As the official script: answerable means the question has any gold answer.
        has = [per_question[q] for q, answers in golds.items() if answers]
        no = [per_question[q] for q, answers in golds.items() if not answers]
        result.update(_percentages(has, "HasAns_exact", "HasAns_f1"))
        result.update(_percentages(no, "NoAns_exact", "NoAns_f1"))
    return result


def _percentages(scores: Any, em_name: str, f1_name: str) -> dict[str, float]:
    scores = list(scores)
    if not scores:
        return {em_name: float("nan"), f1_name: float("nan")}
    return {
        em_name: 100.0 * sum(em for em, _ in scores) / len(scores),
        f1_name: 100.0 * sum(f for _, f in scores) / len(scores),
    }


_INPUTS = """predictions: [{"id": str, "prediction_text": str}];
references: [{"id": str, "answers": {"text": [str], "answer_start": [int]}}]."""


def _features() -> datasets.Features:
    return datasets.Features(
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
    )


class Squad(evaluate.Metric):
    """SQuAD v1.1 exact match and F1 (percentages), the official script's computation."""

    v2 = False

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension "
            "of Text, EMNLP 2016.",
            inputs_description=_INPUTS,
            features=_features(),
        )

    def _compute(self, predictions: Any, references: Any) -> dict[str, float]:
        predicted = {p["id"]: p["prediction_text"] for p in predictions}
        golds = {r["id"]: list(r["answers"]["text"]) for r in references}
        return squad_scores(predicted, golds, self.v2)


class SquadV2(Squad):
    """SQuAD v2.0 exact match and F1 with the HasAns / NoAns breakdown."""

    v2 = True
