"""The training batch order: complete, sharded without overlap, reproducible, little padding."""

from __future__ import annotations

import numpy as np
import pytest

from nlptasks.training.sampling import LengthGroupedBatchSampler


def _lengths(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(5, 200, size=n).tolist()


def _batches(sampler: LengthGroupedBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return [list(batch) for batch in sampler]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_one_replica_yields_every_index_once(group_by_length: bool) -> None:
    # 1003 = 62 full batches of 16 and a tail of 11: the tail is kept with one process.
    sampler = LengthGroupedBatchSampler(_lengths(1003), 16, seed=1, group_by_length=group_by_length)
    for epoch in range(3):
        batches = _batches(sampler, epoch)
        flat = [i for batch in batches for i in batch]
        assert sorted(flat) == list(range(1003))
        assert sorted(len(b) for b in batches) == [11] + [16] * 62


@pytest.mark.parametrize("group_by_length", [True, False])
def test_two_replicas_are_disjoint_even_and_cut_only_the_tail(group_by_length: bool) -> None:
    lengths = _lengths(1003)
    whole = _batches(
        LengthGroupedBatchSampler(lengths, 16, seed=3, group_by_length=group_by_length)
    )
    ranks = [
        _batches(
            LengthGroupedBatchSampler(
                lengths, 16, seed=3, group_by_length=group_by_length, num_replicas=2, rank=rank
            )
        )
        for rank in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 31  # 63 batches: the odd one out is cut
    first = {i for batch in ranks[0] for i in batch}
    second = {i for batch in ranks[1] for i in batch}
    assert not first & second
    # Together they cover every index except those of the cut (last) global batch, which
    # is the same global order one process sees.
    cut = set(whole[-1])
    assert first | second == set(range(1003)) - cut
    assert ranks[0] == whole[0:62:2] and ranks[1] == whole[1:62:2]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_order_depends_only_on_seed_and_epoch(group_by_length: bool) -> None:
    lengths = _lengths(500)

    def order(seed: int, epoch: int) -> list[list[int]]:
        sampler = LengthGroupedBatchSampler(lengths, 8, seed=seed, group_by_length=group_by_length)
        return _batches(sampler, epoch)

    assert order(7, 2) == order(7, 2)  # a new sampler, the same order
    assert order(7, 2) != order(7, 3)
    assert order(7, 2) != order(8, 2)
    # set_epoch back to an earlier epoch gives that epoch's order again.
    sampler = LengthGroupedBatchSampler(lengths, 8, seed=7, group_by_length=group_by_length)
    assert _batches(sampler, 2) == _batches(sampler, 2) != _batches(sampler, 0)


def _padding(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_grouping_by_length_lowers_padding() -> None:
    lengths = _lengths(2000, seed=5)
    grouped = _batches(LengthGroupedBatchSampler(lengths, 16, seed=0, group_by_length=True))
    shuffled = _batches(LengthGroupedBatchSampler(lengths, 16, seed=0, group_by_length=False))
    # Random lengths in [5, 200): random batches pad by ~80 tokens per example; sorted
    # windows of 800 examples by a few.
    assert _padding(lengths, grouped) * 5 < _padding(lengths, shuffled)
    # Grouped batches still come in a random order, not longest first in each window: about
    # half of the neighbouring batches grow (sorted windows would give only 2 of 124).
    maxima = [max(lengths[i] for i in b) for b in grouped]
    rises = sum(a < b for a, b in zip(maxima, maxima[1:], strict=False))
    assert rises > len(maxima) // 4


@pytest.mark.parametrize(
    ("n", "batch_size", "num_replicas"),
    [(1003, 16, 1), (1003, 16, 2), (1003, 16, 3), (64, 16, 4), (65, 16, 4), (10, 16, 1), (5, 4, 3)],
)
@pytest.mark.parametrize("group_by_length", [True, False])
def test_len_is_the_number_of_batches(
    n: int, batch_size: int, num_replicas: int, group_by_length: bool
) -> None:
    lengths = _lengths(n)
    for rank in range(num_replicas):
        sampler = LengthGroupedBatchSampler(
            lengths, batch_size, 0, group_by_length, num_replicas=num_replicas, rank=rank
        )
        assert len(sampler) == len(_batches(sampler))
