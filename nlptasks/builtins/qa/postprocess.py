"""Start/end logits of windows -> the best answer span of each example, in characters.

Per window, every span (start <= end, both in the context, at most ``max_answer_length``
tokens) is scored ``start_logit + end_logit`` as in transformers' ``run_qa`` post-processing;
the ``n_best`` best spans of each window are kept, as character offsets, and the rest of its
logits are dropped at once, so evaluation never holds the logits of a whole eval set.
Unlike ``run_qa``, which pairs only the ``n_best`` best starts with the ``n_best`` best ends,
every valid pair is scored: the best span is never missed.

An example's answer is its best span over all its windows. Its ``score`` is that span's
probability among the example's ``n_best`` best spans (softmax of their scores, ``run_qa``'s
``probability``). With unanswerable questions (SQuAD 2.0) the "no answer" score is the
smallest CLS score of the example's windows, and the answer is empty when that score beats
the best span's by more than ``null_score_diff_threshold``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Answer:
    text: str
    score: float
    start: int
    """Character offset of the answer in the context (-1 for no answer)."""
    end: int
    """Character offset just past the answer (-1 for no answer)."""


@dataclass
class _Example:
    spans: list[tuple[float, int, int]] = field(default_factory=list)
    """A min-heap of (score, start char, end char): the n_best best so far."""
    null_score: float = math.inf


class SpanCandidates:
    """The n-best spans of each example, fed window batch by window batch."""

    def __init__(self, n_best: int, max_answer_length: int) -> None:
        self.n_best = n_best
        self.max_answer_length = max_answer_length
        self._examples: dict[int, _Example] = {}

    def add(
        self,
        example_index: torch.Tensor,
        start_logits: torch.Tensor,
        end_logits: torch.Tensor,
        offset_start: torch.Tensor,
        offset_end: torch.Tensor,
        cls_index: torch.Tensor,
    ) -> None:
        """One batch of windows: (B,) example rows; (B, L) logits and character offsets (-1
        outside the context, and past a window's end); (B,) CLS positions."""
        width = min(start_logits.shape[1], offset_start.shape[1])
        start_logits = start_logits[:, :width].float()
        end_logits = end_logits[:, :width].float()
        offset_start, offset_end = offset_start[:, :width], offset_end[:, :width]
        in_context = offset_start >= 0
        scores = start_logits[:, :, None] + end_logits[:, None, :]
        # A span ends at or after its start, within max_answer_length tokens.
        band = torch.ones(width, width, dtype=torch.bool).triu()
        band &= ~torch.ones(width, width, dtype=torch.bool).triu(self.max_answer_length)
        valid = band[None] & in_context[:, :, None] & in_context[:, None, :]
        scores = scores.masked_fill(~valid, -math.inf).flatten(1)
        k = min(self.n_best, scores.shape[1])
        top_scores, top_flat = scores.topk(k, dim=1)
        rows = torch.arange(len(example_index))
        null_scores = start_logits[rows, cls_index] + end_logits[rows, cls_index]
        for b, example in enumerate(example_index.tolist()):
            entry = self._examples.setdefault(example, _Example())
            entry.null_score = min(entry.null_score, float(null_scores[b]))
            for score, flat in zip(top_scores[b].tolist(), top_flat[b].tolist(), strict=True):
                if score == -math.inf:
                    break
                span = (
                    score,
                    int(offset_start[b, flat // width]),
                    int(offset_end[b, flat % width]),
                )
                if len(entry.spans) < self.n_best:
                    heapq.heappush(entry.spans, span)
                elif span > entry.spans[0]:
                    heapq.heapreplace(entry.spans, span)

    def __contains__(self, example: int) -> bool:
        return example in self._examples

    def answer(
        self,
        example: int,
        context: str,
        allow_no_answer: bool = False,
        null_score_diff_threshold: float = 0.0,
    ) -> Answer:
        """The best answer of one example (an empty one when it has no valid span, or when
        ``allow_no_answer`` and "no answer" wins by more than the threshold)."""
        entry = self._examples.get(example, _Example())
        spans = sorted(entry.spans, reverse=True)
        if not spans:
            return Answer("", 0.0, -1, -1)
        scores = torch.tensor([s for s, _, _ in spans], dtype=torch.float64)
        best_score, start, end = spans[0]
        if allow_no_answer:
            # The null prediction competes in the softmax too, as in run_qa's version 2.
            with_null = torch.cat([scores, torch.tensor([entry.null_score], dtype=torch.float64)])
            probabilities = with_null.softmax(0)
            if entry.null_score - best_score > null_score_diff_threshold:
                return Answer("", float(probabilities[-1]), -1, -1)
            return Answer(context[start:end], float(probabilities[0]), start, end)
        return Answer(context[start:end], float(scores.softmax(0)[0]), start, end)
