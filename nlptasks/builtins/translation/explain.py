"""Translation explanations: each target token's log-probability given the source, and IG
of the translation's log-probability to the source tokens (see
:mod:`nlptasks.explain.generated`). The source and target are tokenised exactly as the
task trains on them (prefix, language codes, prompt; the target with its EOS)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nlptasks.explain.generated import explain_causal, explain_seq2seq


def explain_translations(
    model: torch.nn.Module,
    tokenizer: Any,
    translator: Any,
    texts: Sequence[str],
    predictions: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One explanation per source text of the prediction's ``translation``; ``translator``
    is the task's Translator (seq2seq or prompted decoder-only)."""
    sources, _ = translator.source_ids(tokenizer, list(texts))
    targets = translator.target_ids(tokenizer, [str(p["translation"]) for p in predictions])
    prompted = not getattr(model.config, "is_encoder_decoder", False)
    explain = explain_causal if prompted else explain_seq2seq
    note = (
        "output_tokens are the translation tokenised again as a training target (with its "
        "EOS), not the generated ids: their count and boundaries can differ"
    )
    return [
        {**explain(model, tokenizer, source, target), "retokenised": True, "note": note}
        for source, target in zip(sources, targets, strict=True)
    ]
