"""Batch order for training: shuffled, optionally grouped by length, sharded per process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

# Examples are sorted by length inside windows of this many batches: batches then hold
# similar lengths (little padding) while the order across windows stays random.
MEGABATCH_FACTOR = 50


class LengthGroupedBatchSampler:
    """Yields lists of example indices, a new random order each epoch (``set_epoch``).

    Every process builds the same global order from ``seed + epoch`` and keeps every
    ``num_replicas``-th batch starting at ``rank``; the tail is cut so that all processes do
    the same number of steps (DDP needs that).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        group_by_length: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start = 0
        """This process's batches to skip at the start of the epoch (a resumed run)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        if self.group_by_length:
            window = self.batch_size * MEGABATCH_FACTOR
            chunks = [order[i : i + window] for i in range(0, len(order), window)]
            # Longest first inside each window; stable so equal lengths keep the random order.
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [
            order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)
        ]
        if self.group_by_length:
            # Sorted windows would otherwise put long batches first in each window.
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._global_batches()
        usable = len(batches) - len(batches) % self.num_replicas
        yield from batches[self.rank : usable : self.num_replicas][self.start :]

    def __len__(self) -> int:
        total = -(-len(self.lengths) // self.batch_size)
        return total // self.num_replicas
