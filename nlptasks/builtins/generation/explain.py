"""Generation explanations: each generated token's log-probability given the prompt, and
IG of the continuation's log-probability to the prompt tokens (see
:mod:`nlptasks.explain.generated` for how, and its limits)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nlptasks.explain.generated import explain_causal


def explain_continuations(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    predictions: Sequence[Mapping[str, Any]],
    add_special_tokens: bool,
    context_length: int | None,
) -> list[dict[str, Any]]:
    """One explanation per prompt (already rendered, e.g. by a chat template) of the
    prediction's ``generated_text``."""
    encode: Callable[..., Any] = tokenizer
    explanations = []
    for prompt, prediction in zip(prompts, predictions, strict=True):
        prompt_ids = list(encode(prompt, add_special_tokens=add_special_tokens)["input_ids"])
        output_ids = list(
            encode(str(prediction["generated_text"]), add_special_tokens=False)["input_ids"]
        )
        if context_length is not None:  # as generation cut it: the prompt's last tokens
            room = max(1, context_length - len(output_ids))
            prompt_ids = prompt_ids[-room:]
            output_ids = output_ids[: context_length - len(prompt_ids)]
        explanations.append(explain_causal(model, tokenizer, prompt_ids, output_ids))
    return explanations
