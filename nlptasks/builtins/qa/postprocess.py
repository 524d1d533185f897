"""Start/end logits of windows -> the best answer span of each example, in characters.

Per window (:func:`window_spans`, on the model's device in ``forward``), every span (start <=
end, both in the context, at most ``max_answer_length`` tokens) is scored ``start_logit +
end_logit`` as in transformers' ``run_qa`` post-processing; the window keeps its ``n_best``
best spans, as character offsets, and its "no answer" score (its CLS token's), so evaluation
never holds the logits of a whole eval set. Unlike ``run_qa``, which pairs only the
``n_best`` best starts with the ``n_best`` best ends, every valid pair is scored: the best
span is never missed.

An example's answer (:func:`best_answers`) is its best span over all its windows. Its
``score`` is that span's probability among the example's ``n_best`` best spans (softmax of
their scores, ``run_qa``'s ``probability``). With unanswerable questions (SQuAD 2.0) the "no
answer" score is the smallest CLS score of the example's windows, and the answer is empty when
that score beats the best span's by more than ``null_score_diff_threshold``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

NO_SPAN = -1
"""Character offsets of a missing span (fewer valid spans than ``n_best``; no answer)."""


@dataclass(frozen=True)
class Answer:
    text: str
    score: float
    start: int
    """Character offset of the answer in the context (-1 for no answer)."""
    end: int
    """Character offset just past the answer (-1 for no answer)."""


def window_spans(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    windows: Mapping[str, torch.Tensor],
    n_best: int,
    max_answer_length: int,
) -> dict[str, torch.Tensor]:
    """The ``n_best`` best spans of each window in a batch, best first.

    ``windows`` holds (B, L) ``offset_start`` / ``offset_end`` (-1 outside the context and
    past a window's end) and (B,) ``cls_index``. Returns (B, n_best) ``span_score`` (-inf
    where a window has fewer valid spans), ``span_start`` / ``span_end`` (character offsets)
    and (B,) ``null_score``.
    """
    start_logits, end_logits = start_logits.float(), end_logits.float()
    offset_start, offset_end = windows["offset_start"], windows["offset_end"]
    width = start_logits.shape[1]
    in_context = offset_start >= 0
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    # A span ends at or after its start, within max_answer_length tokens.
    square = torch.ones(width, width, dtype=torch.bool, device=scores.device)
    band = square.triu() & ~square.triu(max_answer_length)
    valid = band[None] & in_context[:, :, None] & in_context[:, None, :]
    scores = scores.masked_fill(~valid, -math.inf).flatten(1)
    top_scores, top_flat = scores.topk(min(n_best, scores.shape[1]), dim=1)
    missing = top_scores == -math.inf
    starts = offset_start.gather(1, top_flat // width).masked_fill(missing, NO_SPAN)
    ends = offset_end.gather(1, top_flat % width).masked_fill(missing, NO_SPAN)
    if (short := n_best - top_scores.shape[1]) > 0:  # a window of fewer than n_best spans
        top_scores = torch.nn.functional.pad(top_scores, (0, short), value=-math.inf)
        starts = torch.nn.functional.pad(starts, (0, short), value=NO_SPAN)
        ends = torch.nn.functional.pad(ends, (0, short), value=NO_SPAN)
    rows = torch.arange(len(start_logits), device=scores.device)
    cls = windows["cls_index"]
    return {
        "span_score": top_scores,
        "span_start": starts,
        "span_end": ends,
        "null_score": start_logits[rows, cls] + end_logits[rows, cls],
    }


def best_answers(
    spans: Mapping[str, Any],
    example_index: Sequence[int],
    contexts: Sequence[str],
    n_best: int,
    allow_no_answer: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> list[Answer]:
    """The answer of each example (``contexts[i]``) from the spans of its windows.

    ``spans`` are :func:`window_spans` of windows in any order, ``example_index`` the example
    of each. An example without a valid span gets an empty answer, as does one whose "no
    answer" wins by more than the threshold when ``allow_no_answer``."""
    heaps: list[list[tuple[float, int, int]]] = [[] for _ in contexts]  # min-heaps of n-best
    null_scores = [math.inf] * len(contexts)
    rows = zip(
        example_index,
        spans["span_score"].tolist(),
        spans["span_start"].tolist(),
        spans["span_end"].tolist(),
        spans["null_score"].tolist(),
        strict=True,
    )
    for example, scores, starts, ends, null_score in rows:
        heap = heaps[example]
        null_scores[example] = min(null_scores[example], null_score)
        for span in zip(scores, starts, ends, strict=True):
            if span[0] == -math.inf:
                break
            if len(heap) < n_best:
                heapq.heappush(heap, span)
            elif span > heap[0]:
                heapq.heapreplace(heap, span)
    return [
        _answer(heap, null, context, allow_no_answer, null_score_diff_threshold)
        for heap, null, context in zip(heaps, null_scores, contexts, strict=True)
    ]


def _answer(
    heap: list[tuple[float, int, int]],
    null_score: float,
    context: str,
    allow_no_answer: bool,
    null_score_diff_threshold: float,
) -> Answer:
    spans = sorted(heap, reverse=True)
    if not spans:
        return Answer("", 0.0, NO_SPAN, NO_SPAN)
    scores = torch.tensor([s for s, _, _ in spans], dtype=torch.float64)
    best_score, start, end = spans[0]
    if allow_no_answer:
        # The null prediction competes in the softmax too, as in run_qa's version 2.
        with_null = torch.cat([scores, torch.tensor([null_score], dtype=torch.float64)])
        probabilities = with_null.softmax(0)
        if null_score - best_score > null_score_diff_threshold:
            return Answer("", float(probabilities[-1]), NO_SPAN, NO_SPAN)
        return Answer(context[start:end], float(probabilities[0]), start, end)
    return Answer(context[start:end], float(scores.softmax(0)[0]), start, end)
