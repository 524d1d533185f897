"""Explanations of generated text (generation, translation): each output token's
log-probability, and IG of the whole output's log-probability to the source tokens.

The output is scored teacher-forced: the model reads the source (prompt) and the output
tokens and gives each output token's log-probability, so ``sum(logprobs)`` is the
log-probability of those tokens given the source. The built-in tasks pass the output
*text* tokenised again, not the generated ids: the two can differ (a byte-level model that
generated six ``air`` tokens may read ``airairairairairair`` back as twelve other pieces),
so their explanations say ``"retokenised": true``.

Attributions: IG of ``sum(logprobs)`` with respect to the source tokens' word embeddings;
the baseline replaces every source token (not the special ones, not the output) by [PAD];
a decoder-only model's first token stays too (see ``explain_causal``), so it gets 0.
Cost: ``n_steps`` forward and backward passes over source + output, so outputs longer than
``MAX_EXPLAINED_OUTPUT`` tokens get log-probabilities for every token but attributions for
the first ``MAX_EXPLAINED_OUTPUT`` only (``explained_output_tokens`` says how many).
Memory: the output layer runs only from the last prompt position on where the model takes
``logits_to_keep``, and a pass of IG holds at most ``OUTPUT_BUDGET`` logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from nlptasks.explain.gradients import (
    N_STEPS,
    baseline_ids,
    embedding_layer,
    expand,
    gradients_on,
    integrated_gradients,
)
from nlptasks.explain.tokens import display_tokens, token_style

MAX_EXPLAINED_OUTPUT = 64
"""Output tokens whose log-probability IG attributes (all get a log-probability)."""


def explain_causal(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    output_ids: Sequence[int],
    n_steps: int = N_STEPS,
) -> dict[str, Any]:
    """A decoder-only model's explanation of ``output_ids`` following ``prompt_ids``."""
    device = next(model.parameters()).device
    prompt, output = list(prompt_ids), list(output_ids)
    ids = torch.tensor([prompt + output], device=device)
    start = len(prompt)
    keeps = _takes_logits_to_keep(model)

    def logits_at(tokens: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """(rows, last - first, vocabulary): the logits at positions first .. last - 1; the
        output layer runs from ``first`` on only, where the model can."""
        mask = torch.ones_like(tokens)
        if keeps:
            kept = tokens.shape[1] - first
            logits = model(input_ids=tokens, attention_mask=mask, logits_to_keep=kept).logits
            return logits[:, : last - first]
        return model(input_ids=tokens, attention_mask=mask).logits[:, first:last]

    def logprobs(tokens: torch.Tensor, end: int) -> torch.Tensor:
        """(rows, end - start): log p(token t | tokens < t) for output positions < end."""
        logits = logits_at(tokens[:, :end], start - 1, end - 1)
        targets = expand(ids[:, start:end], tokens.shape[0])
        chosen = logits.float().log_softmax(-1).gather(-1, targets[..., None])
        return chosen.squeeze(-1)

    with gradients_on(model), torch.no_grad():
        every = logprobs(ids, len(prompt) + len(output))[0].tolist() if output else []
    explained = min(len(output), MAX_EXPLAINED_OUTPUT)
    result: dict[str, Any] = {
        "method": "integrated_gradients",
        "target": f"log-probability of the first {explained} output tokens",
        "baseline": "[PAD] tokens, the first token and special tokens kept",
        "tokens": display_tokens(tokenizer, prompt),
        "token_style": token_style(tokenizer),
        "output_tokens": display_tokens(tokenizer, output),
        "logprobs": [float(v) for v in every],
        "explained_output_tokens": explained,
    }
    if not output or not prompt:  # nothing to attribute, or nothing to attribute to
        return {**result, "attributions": [0.0] * len(prompt)}
    end = start + explained

    def total(tokens: torch.Tensor) -> torch.Tensor:
        return logprobs(tokens[:, :end], end).sum(-1)

    # The first position stays as it is (an attention sink in decoder-only models): with it
    # blanked the path leaves what the model has seen and IG does not converge (SmolLM2, 50
    # steps: delta -92 for a difference of 20; kept: -0.002). Its attribution is 0.
    wanted = [False] + [True] * (len(prompt) - 1) + [False] * len(output)
    baseline = torch.tensor([baseline_ids(tokenizer, prompt + output, wanted)], device=device)
    positions = end - start + 1 if keeps else end
    found = integrated_gradients(
        model,
        total,
        embedding_layer(model),
        ids,
        baseline,
        n_steps=n_steps,
        outputs_per_row=positions * _vocabulary(model),
    )
    fields = found.fields()
    fields["attributions"] = fields["attributions"][:start]  # output positions: exactly 0
    return {**result, **fields}


def explain_seq2seq(
    model: torch.nn.Module,
    tokenizer: Any,
    source_ids: Sequence[int],
    labels: Sequence[int],
    n_steps: int = N_STEPS,
) -> dict[str, Any]:
    """An encoder-decoder model's explanation of the target ``labels`` (as training
    tokenises a target: with its EOS) given ``source_ids``."""
    device = next(model.parameters()).device
    source = torch.tensor([list(source_ids)], device=device)
    targets = torch.tensor([list(labels)], device=device)
    inner: Any = model
    decoder_ids = inner.prepare_decoder_input_ids_from_labels(labels=targets)
    explained = min(len(labels), MAX_EXPLAINED_OUTPUT)

    with gradients_on(model), torch.no_grad():
        # The decoder gets its embeddings computed once: the encoder's embedding layer
        # (shared with the decoder in BART/Marian) then runs once per forward pass.
        decoder_embeds = inner.get_decoder().embed_tokens(decoder_ids).detach()

    def logprobs(tokens: torch.Tensor, mask: torch.Tensor, count: int) -> torch.Tensor:
        rows = tokens.shape[0]
        logits = model(
            input_ids=tokens,
            attention_mask=mask,
            decoder_inputs_embeds=expand(decoder_embeds[:, :count], rows),
        ).logits
        chosen = (
            logits.float().log_softmax(-1).gather(-1, expand(targets[:, :count], rows)[..., None])
        )
        return chosen.squeeze(-1)

    mask = torch.ones_like(source)
    with gradients_on(model), torch.no_grad():
        every = logprobs(source, mask, len(labels))[0].tolist()

    def total(tokens: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return logprobs(tokens, attention, explained).sum(-1)

    baseline = torch.tensor(
        [baseline_ids(tokenizer, list(source_ids), [True] * len(source_ids))], device=device
    )
    found = integrated_gradients(
        model,
        total,
        embedding_layer(model, encoder=True),
        source,
        baseline,
        (mask,),
        n_steps,
        outputs_per_row=explained * _vocabulary(model),
    )
    return {
        "method": "integrated_gradients",
        "target": f"log-probability of the first {explained} output tokens",
        "baseline": "[PAD] tokens, special tokens kept",
        "tokens": display_tokens(tokenizer, source_ids),
        "token_style": token_style(tokenizer),
        "output_tokens": display_tokens(tokenizer, labels),
        "logprobs": [float(v) for v in every],
        "explained_output_tokens": explained,
        **found.fields(),
    }


def _takes_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers causal LMs; not a
    wrapper whose forward takes ``**kwargs``)."""
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _vocabulary(model: torch.nn.Module) -> int:
    """The number of logits per position."""
    inner: Any = model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    return int(getattr(model.config, "vocab_size", 0) or 0)
