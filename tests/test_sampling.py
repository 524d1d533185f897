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


def _context_groups(
    n_contexts: int, per_context: int, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Lengths like SQuAD windows: each context's questions give nearly the same length."""
    rng = np.random.default_rng(seed)
    lengths, groups = [], []
    for context in range(n_contexts):
        base = int(rng.integers(100, 380))
        for _ in range(per_context):
            lengths.append(base + int(rng.integers(0, 4)))  # the question's few tokens
            groups.append(context)
    return lengths, groups


def _contexts_per_batch(groups: list[int], batches: list[list[int]]) -> float:
    full = [b for b in batches if len(b) == 32]
    return float(np.mean([len({groups[i] for i in b}) for b in full]))


def test_length_buckets_mix_near_duplicates_and_keep_most_of_the_saved_padding() -> None:
    lengths, groups = _context_groups(400, 5)

    def batches(**kwargs: int | bool) -> list[list[int]]:
        return _batches(LengthGroupedBatchSampler(lengths, 32, seed=0, **kwargs))  # type: ignore[arg-type]

    exact = batches(length_bucket=1)
    bucketed = batches(length_bucket=32)
    shuffled = batches(group_by_length=False)
    # An exact sort puts a context's windows side by side: few contexts per batch.
    # (Measured: exact 13.7 contexts in a batch of 32, buckets of 32 tokens 24.9, random 31.1.)
    assert _contexts_per_batch(groups, exact) < 16
    assert _contexts_per_batch(groups, bucketed) > 22
    # ...while padding stays far below random batches' (bounded by the bucket width).
    assert _padding(lengths, bucketed) * 5 < _padding(lengths, shuffled)
    assert _padding(lengths, exact) < _padding(lengths, bucketed)
    flat = sorted(i for b in bucketed for i in b)
    assert flat == list(range(len(lengths)))


@pytest.mark.parametrize("group_by_length", [True, False])
def test_token_budget_batches_stay_under_the_budget_and_cover_every_example(
    group_by_length: bool,
) -> None:
    lengths = _lengths(1003)
    sampler = LengthGroupedBatchSampler(
        lengths, 16, seed=2, group_by_length=group_by_length, max_tokens=1200
    )
    batches = _batches(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1003))
    assert all(max(lengths[i] for i in b) * len(b) <= 1200 for b in batches)
    assert len(sampler) == len(batches)
    if group_by_length:
        # Short examples fill a batch with more of them than the fixed 16.
        assert max(len(b) for b in batches) > 16
    # A lone example longer than the budget still makes a batch of one (never dropped).
    alone = LengthGroupedBatchSampler([5000, 10, 10], 16, seed=0, max_tokens=100)
    assert sorted(len(b) for b in _batches(alone)) == [1, 2]


def test_token_budget_sharding_is_disjoint_and_even() -> None:
    lengths = _lengths(701)
    ranks = [
        _batches(
            LengthGroupedBatchSampler(lengths, 8, seed=3, num_replicas=2, rank=r, max_tokens=900)
        )
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1])
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
