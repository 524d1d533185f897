"""Entity-level scores as seqeval, the CoNLL scorer, computes them: an entity counts only when
its type and both boundaries are right (a token accuracy would reward the many ``O`` tags).

Each sentence gives counts that add up (its gold, predicted and correct entities, its tokens
and correct tokens); the metrics come from their sums. Summed over a corpus they are exactly
seqeval's micro precision, recall and F1 and its accuracy, and the bootstrap resamples the
same counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def sentence_statistics(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """One sentence's counts: entities (seqeval's ``get_entities``, IOB2 read leniently as
    the conlleval script does) and tokens."""
    from seqeval.metrics.sequence_labeling import get_entities

    true = set(get_entities(list(gold)))
    found = set(get_entities(list(predicted)))
    return {
        "gold": float(len(true)),
        "predicted": float(len(found)),
        "correct": float(len(true & found)),
        "tokens": float(len(gold)),
        "correct_tokens": float(sum(g == p for g, p in zip(gold, predicted, strict=True))),
    }


def entity_metrics(sums: Mapping[str, float]) -> dict[str, float]:
    """Micro F1, precision and recall over entities (0 when undefined, seqeval's
    ``zero_division=0``) and token accuracy, from summed sentence counts."""
    correct = sums.get("correct", 0.0)
    precision = correct / sums["predicted"] if sums.get("predicted") else 0.0
    recall = correct / sums["gold"] if sums.get("gold") else 0.0
    tokens = sums.get("tokens", 0.0)
    return {
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
        "accuracy": sums.get("correct_tokens", 0.0) / tokens if tokens else float("nan"),
    }


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, float]:
    """The metrics of a corpus of tagged sentences (what evaluation reports for them)."""
    sums: dict[str, float] = {}
    for tags, guess in zip(gold, predicted, strict=True):
        for key, value in sentence_statistics(tags, guess).items():
            sums[key] = sums.get(key, 0.0) + value
    return entity_metrics(sums)


def entities(
    text: str,
    spans: Sequence[tuple[int, int]],
    tags: Sequence[str],
    scores: Sequence[float],
) -> list[dict[str, Any]]:
    """Group the BIO tags of words (at character ``spans`` of ``text``) into entities, as
    ``pipeline("token-classification", aggregation_strategy="first")`` reports them: type,
    text, character start and end, mean score."""
    found: list[dict[str, Any]] = []
    scores_of: list[list[float]] = []
    open_kind = None  # the type of the entity the previous word belongs to
    for (start, end), tag, score in zip(spans, tags, scores, strict=True):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        if kind is None:
            open_kind = None
            continue
        if tag.startswith("I-") and open_kind == kind:
            found[-1]["end"] = end
            found[-1]["word"] = text[found[-1]["start"] : end]
            scores_of[-1].append(score)
        else:  # B-, or an I- that starts an entity (read leniently, as seqeval does)
            found.append(
                {"entity_group": kind, "word": text[start:end], "start": start, "end": end}
            )
            scores_of.append([score])
        open_kind = kind
    for entity, values in zip(found, scores_of, strict=True):
        entity["score"] = sum(values) / len(values)
    return found
