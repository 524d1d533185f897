"""Batches: dynamic padding of features, length-sorted batches, and the batched predict loop.

What every task would otherwise copy: the trainer, evaluation and each task's ``predict``
share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

PAD_INDEX = -100
"""What labels and per-example outputs are padded with (the ignore index of the losses)."""

Collate = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]


def pad_features(
    features: Sequence[Mapping[str, Any]],
    pad_values: Mapping[str, int] | None = None,
    left: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """One batch of tensors from a list of features (dynamic padding).

    Each column but ``length`` becomes a tensor: numbers are stacked, lists are padded to the
    longest in the batch with ``pad_values[column]`` (``labels``: ``PAD_INDEX``; any other
    column without a value: 0), on the right unless the column is in ``left``.
    """
    pads = {"labels": PAD_INDEX, **(pad_values or {})}
    batch: dict[str, torch.Tensor] = {}
    for key, first in features[0].items():
        if key == "length":  # what batches are grouped by, not a model input
            continue
        if not isinstance(first, (list, tuple)):
            batch[key] = torch.tensor([f[key] for f in features])
            continue
        longest = max(len(f[key]) for f in features)
        pad = pads.get(key, 0)
        rows = []
        for f in features:
            fill = [pad] * (longest - len(f[key]))
            rows.append([*fill, *f[key]] if key in left else [*f[key], *fill])
        batch[key] = torch.tensor(rows)
    return batch


def collate_for(task: Any, tokenizer: Any) -> Collate:
    """The task's own ``collate`` (``Collates``), else padding with the tokenizer's pad id."""
    from nlptasks.task import Collates

    if isinstance(task, Collates):
        return task.collate
    pad_values = {"input_ids": int(getattr(tokenizer, "pad_token_id", None) or 0)}

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_features(features, pad_values)

    return collate


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length, longest first (little padding, and a batch too
    big for memory fails at once rather than at the end)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def predict_batches(
    features: Sequence[Mapping[str, Any]],
    collate: Collate,
    batch_size: int,
    device: torch.device | str,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(indices, batch on ``device``) over ``features`` in batches of similar length, each
    padded only to its own longest feature: the loop of every task's ``predict``. Put each
    batch's results back at ``indices`` to keep the input order."""
    lengths = [int(f["length"]) if "length" in f else len(f["input_ids"]) for f in features]
    for indices in length_sorted_batches(lengths, batch_size):
        batch = collate([dict(features[i]) for i in indices])
        yield indices, {k: v.to(device) for k, v in batch.items()}


def concat_padded(tensors: Sequence[torch.Tensor], pad_index: int = PAD_INDEX) -> torch.Tensor:
    """Concatenate along dim 0 tensors whose dim 1 differs, padding with ``pad_index``."""
    if not tensors:
        return torch.empty(0)
    if tensors[0].ndim < 2:
        return torch.cat(list(tensors))
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        if t.shape[1] < width:
            pad = t.new_full((t.shape[0], width - t.shape[1], *t.shape[2:]), pad_index)
            t = torch.cat([t, pad], dim=1)
        padded.append(t)
    return torch.cat(padded)
