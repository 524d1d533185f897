"""QA explanations: IG of the chosen span's start logit and end logit to the question and
context tokens of the window that gave the answer.

For each record the answer ``predict`` chose (character offsets) is found again as token
positions in the record's windows; of the windows that hold it whole, the one that scores
it highest (start + end logit, as prediction ranks spans) is explained. An empty answer
("no answer", SQuAD 2.0) is explained as prediction scores it: the no-answer score (CLS
start + end logits) of the window where that score is smallest. IG targets the
raw logits (not probabilities: a span's probability depends on every other span); by IG's
linearity the top-level ``attributions`` (start + end) explain the span's score
``start_logit + end_logit``, and ``start`` / ``end`` hold each part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nlptasks.builtins.qa.features import WindowSettings, make_windows
from nlptasks.explain.gradients import (
    N_STEPS,
    Attribution,
    baseline_ids,
    embedding_layer,
    expand,
    integrated_gradients,
)
from nlptasks.explain.tokens import display_tokens, token_style

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def explain_spans(
    model: torch.nn.Module,
    tokenizer: Any,
    records: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    settings: WindowSettings,
    n_steps: int = N_STEPS,
) -> list[dict[str, Any]]:
    """One explanation per record of its predicted answer (``start`` / ``end`` offsets)."""
    device = next(model.parameters()).device
    layer = embedding_layer(model)
    explanations = []
    for record, prediction in zip(records, predictions, strict=True):
        windows = make_windows(
            tokenizer, [str(record["question"])], [str(record["context"])], settings
        ).columns
        window, start, end = _chosen(model, windows, prediction, device)
        answered = not _no_answer(prediction)
        ids = list(windows["input_ids"][window])
        extra = {
            k: torch.tensor([windows[k][window]], device=device)
            for k in MODEL_INPUTS[1:]
            if k in windows
        }
        names = sorted(extra)
        baseline = baseline_ids(tokenizer, ids, [True] * len(ids))
        parts: dict[str, Attribution] = {}
        for which, position in (("start", start), ("end", end)):

            def logit(
                tokens: torch.Tensor,
                *values: torch.Tensor,
                _w: str = which,
                _p: int = position,
                _n: Any = names,
            ) -> Any:
                inputs = {n: expand(v, tokens.shape[0]) for n, v in zip(_n, values, strict=True)}
                outputs = model(input_ids=tokens, **inputs)
                return getattr(outputs, f"{_w}_logits").float()[:, _p]

            parts[which] = integrated_gradients(
                model,
                logit,
                layer,
                torch.tensor([ids], device=device),
                torch.tensor([baseline], device=device),
                tuple(extra[n] for n in names),
                n_steps,
            )
        first, last = parts["start"], parts["end"]
        explanations.append(
            {
                "method": "integrated_gradients",
                "target": (
                    "start logit + end logit of the answer span"
                    if answered
                    else "no-answer score (CLS start + end logits)"
                ),
                "baseline": "[PAD] tokens, special tokens kept",
                "tokens": display_tokens(tokenizer, ids),
                "token_style": token_style(tokenizer),
                "attributions": [
                    a + b for a, b in zip(first.attributions, last.attributions, strict=True)
                ],
                "score": first.score + last.score,
                "baseline_score": first.baseline_score + last.baseline_score,
                "convergence_delta": first.convergence_delta + last.convergence_delta,
                "n_steps": n_steps,
                "start": {"token": start, **first.fields()},
                "end": {"token": end, **last.fields()},
            }
        )
    return explanations


def _no_answer(prediction: Mapping[str, Any]) -> bool:
    start = prediction.get("start", -1)
    return start is None or start < 0


def _chosen(
    model: torch.nn.Module,
    windows: Mapping[str, list[Any]],
    prediction: Mapping[str, Any],
    device: torch.device,
) -> tuple[int, int, int]:
    """(window, start token, end token) of the predicted answer: the window that holds it
    whole and scores it highest; for no answer, the CLS token of the window whose CLS score
    is smallest (the no-answer score prediction uses, ``qa.postprocess``)."""
    best: tuple[float, int, int, int] | None = None
    start_char, end_char = prediction.get("start", -1), prediction.get("end", -1)
    empty = _no_answer(prediction)
    for w, (starts, ends) in enumerate(
        zip(windows["offset_start"], windows["offset_end"], strict=True)
    ):
        if empty:
            start = end = int(windows["cls_index"][w])
        elif start_char in starts and end_char in ends:
            start, end = starts.index(start_char), ends.index(end_char)
        else:
            continue
        inputs = {
            k: torch.tensor([windows[k][w]], device=device) for k in MODEL_INPUTS if k in windows
        }
        with torch.no_grad():
            outputs = model(**inputs)
        score = float(outputs.start_logits[0, start] + outputs.end_logits[0, end])
        # A span: the highest-scoring window; no answer: the lowest CLS score.
        ranked = -score if empty else score
        if best is None or ranked > best[0]:
            best = (ranked, w, start, end)
    if best is None:  # the answer is in no window whole (not what predict gives)
        cls = int(windows["cls_index"][0])
        return 0, cls, cls
    return best[1], best[2], best[3]
