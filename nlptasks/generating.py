"""A recipe's generation settings as ``model.generate`` keyword arguments, and its seed.

Every task that generates (evaluation, ``predict``, samples, serving) goes through here, so
``generation.seed`` and ``predict --seed`` mean the same for all of them.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

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
