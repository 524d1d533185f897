"""A recipe's generation settings as ``model.generate`` keyword arguments, its seed, and
the text a chat renders to.

Every task that generates (evaluation, ``predict``, samples, serving) goes through here, so
``generation.seed`` and ``predict --seed`` mean the same for all of them.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import TextStreamer

from nlptasks.batching import pad_features, predict_batches
from nlptasks.errors import DataError

if TYPE_CHECKING:
    from nlptasks.recipes import GenerationConfig


def generation_kwargs(
    settings: GenerationConfig, pad_token_id: int | None, max_new_tokens: int
) -> dict[str, Any]:
    """The ``generate()`` arguments of ``settings``: greedy or beam search unless
    ``do_sample``, then its temperature, top-p and top-k (unset top-k: the model's own)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "num_beams": settings.num_beams,
        "do_sample": settings.do_sample,
        "repetition_penalty": settings.repetition_penalty,
        "pad_token_id": pad_token_id,
    }
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        if settings.top_k is not None:
            kwargs["top_k"] = settings.top_k
    return kwargs


def seeded(settings: GenerationConfig) -> bool:
    """Whether sampling is seeded: then ``predict`` samples each input alone from the seed,
    so the same input gives the same text whatever its batch or position. (Evaluation samples
    whole batches from the seed: the same eval set gives the same texts.)"""
    return bool(settings.do_sample and settings.seed is not None)


DEFAULT_NEW_TOKENS = 50
"""New tokens per prompt when the settings name no ``max_new_tokens``."""

_unseeded_draws = itertools.count(1)
"""Unseeded sampling calls so far in this process: each draws from its own stream."""


@contextlib.contextmanager
def sampling_seed(settings: GenerationConfig, device: torch.device) -> Iterator[None]:
    """Around one ``generate()`` call: the recipe's seed when sampling is seeded; otherwise a
    stream of its own, derived from the process's seed (``train.seed`` in a run) and a
    counter, so batches never repeat each other's draws and a run stays reproducible; the
    caller's random state left as it was either way (training's dropout does not depend on
    whether samples were drawn)."""
    base = torch.initial_seed()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seeded(settings):
            torch.manual_seed(int(settings.seed or 0))
        elif settings.do_sample:
            torch.manual_seed((base + next(_unseeded_draws)) % 2**63)
        yield


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: GenerationConfig,
    batch_size: int,
    context_length: int | None,
    add_special_tokens: bool = True,
    write: Callable[[str], None] | None = None,
    default_new_tokens: int = DEFAULT_NEW_TOKENS,
) -> list[str]:
    """The continuation of each prompt (without the prompt), in input order. Batches are
    left-padded, so every prompt ends where generation starts. With ``write``, prompts go
    one at a time in input order, each one's text written as it comes, then a line break.
    ``default_new_tokens``: the length when ``settings.max_new_tokens`` is unset.

    The generation task's ``predict`` and ``nlptasks serve``'s chat completions both generate
    through here, so a served chat and ``nlptasks predict`` decode alike."""
    max_new = settings.max_new_tokens or default_new_tokens
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    for number, ids in enumerate(encoded, 1):
        if context_length is not None and len(ids) + max_new > context_length:
            raise DataError(
                f"Input {number}'s prompt has {len(ids)} tokens; with max_new_tokens {max_new} "
                f"that is more than the model's context ({context_length} tokens). Shorten the "
                f"prompt or lower max_new_tokens."
            )
        if not ids:
            raise DataError(f"Input {number}'s prompt is empty. Give it text.")
    kwargs = generation_kwargs(settings, tokenizer.pad_token_id, max_new)
    device = next(model.parameters()).device
    features = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in encoded]
    pads = {"input_ids": tokenizer.pad_token_id}

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_features(rows, pads, left=("input_ids", "attention_mask"))

    batches: Iterable[tuple[list[int], dict[str, torch.Tensor]]]
    if write is None:
        # Seeded: each prompt samples alone from the seed, so the same prompt gives the same
        # text whatever its batch, its position or the output (terminal or JSON).
        batches = predict_batches(features, collate, 1 if seeded(settings) else batch_size, device)
    else:
        batches = (
            ([i], {k: v.to(device) for k, v in collate([f]).items()})
            for i, f in enumerate(features)
        )
    results: list[str] = [""] * len(prompts)
    for indices, batch in batches:
        # Beam search keeps several candidates until the end: nothing to stream before that.
        streamer = _Writer(tokenizer, write) if write and settings.num_beams == 1 else None
        with sampling_seed(settings, device):
            output = model.generate(**batch, **kwargs, streamer=streamer)
        for i, row in zip(indices, output[:, batch["input_ids"].shape[1] :].tolist(), strict=True):
            results[i] = tokenizer.decode(row, skip_special_tokens=True)
        if write is not None:  # one record per line
            write("\n" if streamer is not None else results[indices[0]] + "\n")
    return results


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], prompt: bool = False) -> str:
    """A conversation as the model reads it: the tokenizer's chat template, else one
    ``role: content`` line per message. Fine-tuning renders chats through here and serving
    renders them the same way, so a model trained without a template is served with the
    format it learned. ``prompt`` adds the start of an assistant turn (for generation)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=prompt
        )
        return str(text)
    lines = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return lines + ("assistant: " if prompt else "")


class _Writer(TextStreamer):
    """Hands the generated text to ``write`` as it comes."""

    def __init__(self, tokenizer: Any, write: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.write = write

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.write(text)
