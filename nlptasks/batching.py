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
    column without a value: 0), on the right unless the column is in ``left``. A column that
    is not numbers (text, ids as strings, None), or not in every feature, is a one-line
    PluginError: drop it in ``preprocess`` or collate it yourself (``Collates``).
    """
    pads = {"labels": PAD_INDEX, **(pad_values or {})}
    columns = list(dict.fromkeys(key for f in features for key in f))
    batch: dict[str, torch.Tensor] = {}
    for key in columns:
        if key == "length":  # what batches are grouped by, not a model input
            continue
        values: list[Any] = [f.get(key) for f in features]
        lists = [isinstance(v, (list, tuple)) for v in values]
        if any(lists) and not all(lists) or any(v is None for v in values):
            raise _not_paddable(key, "missing or None in some features, a list in others")
        try:
            if not any(lists):
                batch[key] = torch.tensor(values)
                continue
            longest = max(len(v) for v in values)
            pad: Any = pads.get(key, 0)
            inner = next((v[0] for v in values if len(v)), None)
            if isinstance(inner, (list, tuple)):  # nested (e.g. spans): pad whole rows
                pad = [pad] * len(inner)
            rows = []
            for v in values:
                fill = [pad] * (longest - len(v))
                rows.append([*fill, *v] if key in left else [*v, *fill])
            # Integer ids unless the values say otherwise (an all-empty column too).
            batch[key] = (
                torch.tensor(rows) if longest else torch.zeros(len(rows), 0, dtype=torch.long)
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise _not_paddable(key, f"{type(exc).__name__}: {exc}") from None
    return batch


def _not_paddable(column: str, why: str) -> Exception:
    from nlptasks.errors import PluginError

    return PluginError(
        f"Feature column '{column}' cannot be padded into a tensor ({why}). Remove it in "
        f"preprocess (remove_columns), or give the task its own collate (nlptasks.Collates)."
    )


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
