"""Generation explanations: each generated token's log-probability given the prompt, and
IG of the continuation's log-probability to the prompt tokens (see
:mod:`nlptasks.explain.generated` for how, and its limits)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nlptasks.errors import DataError
from nlptasks.explain.generated import explain_causal

RETOKENISED = (
    "output_tokens are the generated text tokenised again, not the generated ids: their "
    "count and boundaries can differ"
)


def explain_continuations(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    predictions: Sequence[Mapping[str, Any]],
    add_special_tokens: bool,
    context_length: int | None,
    max_new_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """One explanation per prompt (already rendered, e.g. by a chat template) of the
    prediction's ``generated_text``, tokenised again (``"retokenised": true``; a ``note``
    says so, and when the text gives more tokens than ``max_new_tokens``, that it does)."""
    encode: Callable[..., Any] = tokenizer
    explanations = []
    for number, (prompt, prediction) in enumerate(zip(prompts, predictions, strict=True), 1):
        prompt_ids = list(encode(prompt, add_special_tokens=add_special_tokens)["input_ids"])
        output_ids = list(
            encode(str(prediction["generated_text"]), add_special_tokens=False)["input_ids"]
        )
        total = len(prompt_ids) + len(output_ids)
        if context_length is not None and total > context_length:
            # generate refuses prompts that leave no room; the text read back can be longer.
            raise DataError(
                f"Input {number}'s prompt and generated text are {total} tokens when "
                f"tokenised again, more than the model's context ({context_length}) to "
                f"explain them in. Lower max_new_tokens or shorten the prompt."
            )
        note = RETOKENISED
        if max_new_tokens is not None and len(output_ids) > max_new_tokens:
            note += (
                f" (here {len(output_ids)} tokens, more than the {max_new_tokens} generated "
                "at most)"
            )
        explanation = explain_causal(model, tokenizer, prompt_ids, output_ids)
        explanations.append({**explanation, "retokenised": True, "note": note})
    return explanations
