"""Training tokens and batch shapes, from the real tokenised train split (or a sample).

The task's own ``preprocess`` makes the features (QA windows, packed blocks, pairs), and the
trainer's own sampler (:class:`~nlptasks.training.sampling.LengthGroupedBatchSampler`) cuts
them into the run's micro-batches, so the counts are the run's, for every task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SAMPLE_EXAMPLES = 2000
"""A train split of more examples is estimated from this many, drawn at random (seed 0), and
scaled up by ``examples / SAMPLE_EXAMPLES``."""


@dataclass(frozen=True)
class TokenPlan:
    """How much a run trains on: examples, features, tokens, steps and batch shapes."""

    examples: int
    features: int
    """Features of the whole train split (estimated from the sample when sampled)."""
    tokens_per_epoch: int
    """Real tokens (the ``length`` column) in one epoch."""
    padded_tokens_per_epoch: int
    """Tokens the model computes over in one epoch: each micro-batch padded to its longest."""
    micro_batches_per_epoch: int
    optimizer_steps: int
    micro_batch_size: int
    accumulation: int
    largest_batch: tuple[int, int]
    """(examples, tokens) of the widest micro-batch: what peak activations are made of."""
    sampled: int | None
    """How many examples were tokenised when the split was sampled (None: all)."""
    run_tokens: tuple[int, int] | None = None
    """(real, padded) tokens of the run's own micro-batches, in the sampler's order, when
    every one was scanned (None: sampled, or too many epochs; then scaled per epoch)."""

    @property
    def micro_batches(self) -> int:
        return self.optimizer_steps * self.accumulation

    @property
    def mean_window(self) -> float:
        """Padded tokens of an average optimizer step's window."""
        return self.padded_tokens_per_epoch * self.accumulation / self.micro_batches_per_epoch

    @property
    def training_tokens(self) -> int:
        """Real tokens over the whole run (every optimizer step's micro-batches)."""
        if self.run_tokens is not None:
            return self.run_tokens[0]
        return round(self.tokens_per_epoch * self._epochs_run)

    @property
    def padded_training_tokens(self) -> int:
        if self.run_tokens is not None:
            return self.run_tokens[1]
        return round(self.padded_tokens_per_epoch * self._epochs_run)

    @property
    def _epochs_run(self) -> float:
        # max_steps decides, not epochs, when the recipe sets it.
        steps_per_epoch = max(1, math.ceil(self.micro_batches_per_epoch / self.accumulation))
        return self.optimizer_steps / steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_examples": self.examples,
            "train_features": self.features,
            "tokens_per_epoch": self.tokens_per_epoch,
            "padded_tokens_per_epoch": self.padded_tokens_per_epoch,
            "training_tokens": self.training_tokens,
            "padded_training_tokens": self.padded_training_tokens,
            "epochs": round(self._epochs_run, 4),
            "optimizer_steps": self.optimizer_steps,
            "micro_batch_size": self.micro_batch_size,
            "gradient_accumulation_steps": self.accumulation,
            "largest_micro_batch": list(self.largest_batch),
            "sampled_examples": self.sampled,
            "method": (
                f"task.preprocess on {self.sampled} random train examples (seed 0), scaled "
                f"by {self.examples}/{self.sampled}"
                if self.sampled
                else "task.preprocess on the whole train split"
            )
            + "; batches from the trainer's sampler, padded to their longest feature",
        }


def sample_split(split: Any, limit: int | None = None) -> tuple[Any, int | None]:
    """``split`` itself when it has at most ``limit`` rows (default ``SAMPLE_EXAMPLES``),
    else ``limit`` random rows (seed 0) and their number."""
    limit = limit or SAMPLE_EXAMPLES
    if len(split) <= limit:
        return split, None
    import numpy as np

    rows = np.random.default_rng(0).choice(len(split), size=limit, replace=False)
    return split.select(sorted(int(i) for i in rows)), limit


def batches_of(lengths: list[int], train: Any, epoch: int = 0) -> list[list[int]]:
    """The trainer's micro-batches (feature indices) of one epoch, in its order: the same
    sampler, seed and settings (``Trainer._plan``)."""
    from nlptasks.training.sampling import LengthGroupedBatchSampler

    sampler = LengthGroupedBatchSampler(
        lengths,
        train.batch_size // train.gradient_accumulation_steps,
        seed=train.seed,
        group_by_length=train.group_by_length,
        length_bucket=train.length_bucket,
        max_tokens=train.max_tokens_per_batch,
    )
    sampler.set_epoch(epoch)
    return [list(batch) for batch in sampler]


def window_tokens(lengths: list[int], batches: list[list[int]], accumulation: int) -> list[int]:
    """Padded tokens of each optimizer step's window (``accumulation`` micro-batches)."""
    padded = [max(lengths[i] for i in batch) * len(batch) for batch in batches]
    return [sum(padded[k : k + accumulation]) for k in range(0, len(padded), accumulation)]


MAX_EPOCHS_SCANNED = 20
"""Epochs whose batch order is scanned for the widest micro-batch (later ones repeat it)."""


def plan(features: Any, train: Any, examples: int, sampled: int | None) -> TokenPlan:
    """The run's batches over ``features`` (tokenised from ``examples`` train examples, or
    from a sample of ``sampled`` of them) with the recipe's ``train`` settings.

    The widest micro-batch is the widest the run will take: of its own batches, epoch after
    epoch, up to its last step (a short ``max_steps`` run never meets the widest batch of
    the data); of the sample's first epoch when the split is sampled (its order is not the
    run's)."""
    from nlptasks.errors import DataError

    if "length" not in features.column_names:
        raise DataError(
            "The task's preprocess gave no 'length' column (tokens per feature); the trainer "
            "and the estimate need it. Add it in the task's preprocess."
        )
    lengths = [int(n) for n in features["length"]]
    accumulation = train.gradient_accumulation_steps
    micro = train.batch_size // accumulation
    batches = batches_of(lengths, train)
    if not batches:
        raise DataError(
            f"The training data ({len(features)} features) is smaller than one batch. Lower "
            f"train.batch_size or add data."
        )
    scale = examples / sampled if sampled else 1.0
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    micro_batches = max(1, round(len(batches) * scale))
    steps_per_epoch = math.ceil(micro_batches / accumulation)
    steps = train.max_steps or max(1, math.ceil(train.epochs * steps_per_epoch))
    taken = batches
    run_tokens = None
    if not sampled:
        taken, left, epoch = [], steps * accumulation, 0
        while left > 0 and epoch < MAX_EPOCHS_SCANNED:
            order = batches if epoch == 0 else batches_of(lengths, train, epoch)
            taken += order[:left]
            left -= len(order)
            epoch += 1
        if left <= 0:  # a max_steps run ends mid-epoch: its own batches, not an average
            run_tokens = (
                sum(lengths[i] for b in taken for i in b),
                sum(max(lengths[i] for i in b) * len(b) for b in taken),
            )
    widest = max(taken, key=lambda b: max(lengths[i] for i in b) * len(b))
    return TokenPlan(
        examples=examples,
        features=round(len(features) * scale),
        tokens_per_epoch=round(sum(lengths) * scale),
        padded_tokens_per_epoch=round(padded * scale),
        micro_batches_per_epoch=micro_batches,
        optimizer_steps=steps,
        micro_batch_size=micro,
        accumulation=accumulation,
        largest_batch=(len(widest), max(lengths[i] for i in widest)),
        sampled=sampled,
        run_tokens=run_tokens,
    )
