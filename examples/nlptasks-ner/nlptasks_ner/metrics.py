"""Entity-level scores with seqeval, the CoNLL scorer: an entity counts only when its type and
both boundaries are right (a token accuracy would reward the many ``O`` tags)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Micro precision, recall and F1 over entities (seqeval, IOB2 read leniently as the
    conlleval script does), and token accuracy."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    gold_lists = [list(tags) for tags in gold]
    predicted_lists = [list(tags) for tags in predicted]
    return {
        "precision": float(precision_score(gold_lists, predicted_lists, zero_division=0)),
        "recall": float(recall_score(gold_lists, predicted_lists, zero_division=0)),
        "f1": float(f1_score(gold_lists, predicted_lists, zero_division=0)),
        "accuracy": float(accuracy_score(gold_lists, predicted_lists)),
    }


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
