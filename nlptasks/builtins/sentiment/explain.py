"""Sentiment explanations: IG of the predicted class's probability to each input token.

f(x) = softmax(logits)[predicted class], a probability (bounded, so the completeness
delta and the deletion test read on one scale). IG runs over the word embeddings with a
baseline of [PAD] tokens between the input's own [CLS]/[SEP]; position and token-type
embeddings are the same for input and baseline, so they take no attribution. So
``sum(attributions) ~= score - baseline_score`` (``convergence_delta`` is the difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nlptasks.explain.gradients import (
    N_STEPS,
    baseline_ids,
    embedding_layer,
    expand,
    integrated_gradients,
)
from nlptasks.explain.tokens import display_tokens, token_style


def explain_classification(
    model: torch.nn.Module,
    tokenizer: Any,
    features: Sequence[Mapping[str, Any]],
    targets: Sequence[int | None],
    label_names: Sequence[str],
    n_steps: int = N_STEPS,
) -> list[dict[str, Any]]:
    """One explanation per tokenised input: IG of class ``targets[i]``'s probability
    (None: the class the model predicts for it)."""
    device = next(model.parameters()).device
    layer = embedding_layer(model)
    explanations = []
    for feature, wanted in zip(features, targets, strict=True):
        ids = list(feature["input_ids"])
        extra = {
            k: torch.tensor([v], device=device) for k, v in feature.items() if k != "input_ids"
        }
        names = sorted(extra)  # captum passes extra inputs by position
        if wanted is None:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids], device=device), **extra).logits
            wanted = int(logits.argmax(-1)[0])
        target: int = wanted

        def probability(
            tokens: torch.Tensor, *values: torch.Tensor, _t: int = target, _n: Any = names
        ) -> Any:
            inputs = {n: expand(v, tokens.shape[0]) for n, v in zip(_n, values, strict=True)}
            logits = model(input_ids=tokens, **inputs).logits.float()
            return logits.softmax(-1)[:, _t]

        found = integrated_gradients(
            model,
            probability,
            layer,
            torch.tensor([ids], device=device),
            torch.tensor([baseline_ids(tokenizer, ids, [True] * len(ids))], device=device),
            tuple(extra[n] for n in names),
            n_steps,
        )
        explanations.append(
            {
                "method": "integrated_gradients",
                "target": f"probability of '{label_names[target]}'",
                "baseline": "[PAD] tokens, special tokens kept",
                "tokens": display_tokens(tokenizer, ids),
                "token_style": token_style(tokenizer),
                **found.fields(),
            }
        )
    return explanations
