"""Bootstrap confidence intervals and paired comparisons over evaluation examples.

Every metric is computed from per-example statistics that add up: a correct answer, a
question's F1, a sentence's BLEU n-gram counts, a block's summed loss and token count. A
resample draws examples with replacement; its statistics are the sums over the drawn
examples (``counts @ statistics``), and the task turns sums into metrics. Corpus-level
metrics such as BLEU are so recomputed from the resampled corpus, not averaged per sentence.

Intervals are percentile intervals (Efron & Tibshirani): the 2.5th and 97.5th percentiles of
the metric over the resamples, for a 95% interval. Resampling is seeded: the same statistics,
resamples and seed give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nlptasks.errors import NlpTasksError
from nlptasks.recipes.schema import seed_problem

Reduce = Callable[[Mapping[str, float]], Mapping[str, float]]
"""Metrics from statistics summed over a multiset of examples."""

# Resamples are drawn this many at a time: (chunk, examples) counts stay small in memory.
_CHUNK = 100


@dataclass(frozen=True)
class Interval:
    """A metric's point estimate and its bootstrap confidence interval."""

    value: float
    low: float
    high: float


def statistics_matrix(rows: Sequence[Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    """Column names (sorted) and an (examples, columns) float64 matrix; a statistic missing
    from a row counts 0 there."""
    names = sorted({name for row in rows for name in row})
    matrix = np.zeros((len(rows), len(names)), dtype=np.float64)
    column = {name: j for j, name in enumerate(names)}
    for i, row in enumerate(rows):
        for name, value in row.items():
            matrix[i, column[name]] = value
    return names, matrix


def reduce_sums(names: list[str], sums: np.ndarray, reduce: Reduce) -> Mapping[str, float]:
    """The metrics ``reduce`` gives for one vector of summed statistics (named by ``names``)."""
    return reduce(dict(zip(names, sums.tolist(), strict=True)))


def point_estimate(rows: Sequence[Mapping[str, float]], reduce: Reduce) -> Mapping[str, float]:
    """The metrics of the whole set of ``rows``: ``reduce`` of their summed statistics."""
    names, matrix = statistics_matrix(rows)
    return reduce_sums(names, matrix.sum(axis=0), reduce)


def _resample_counts(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """(chunk, n) arrays of how often each example is drawn, resample after resample."""
    problem = seed_problem("seed", seed)  # the range of every seed, numpy's or not
    if problem:
        raise NlpTasksError(f"The bootstrap {problem}.")
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        size = min(_CHUNK, resamples - done)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)
        done += size


def resampled_metrics(
    names: list[str], matrix: np.ndarray, reduce: Reduce, resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Each metric over ``resamples`` bootstrap resamples of the rows of ``matrix``."""
    values: dict[str, list[float]] = {}
    for counts in _resample_counts(len(matrix), resamples, seed):
        for sums in counts @ matrix:
            for metric, value in reduce_sums(names, sums, reduce).items():
                values.setdefault(metric, []).append(float(value))
    return {metric: np.asarray(v, dtype=np.float64) for metric, v in values.items()}


def intervals(
    rows: Sequence[Mapping[str, float]],
    reduce: Reduce,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Point estimate and ``level`` percentile interval of every metric ``reduce`` gives,
    resampling ``rows`` (one per example). No rows: no intervals."""
    if not rows or resamples < 1:
        return {}
    names, matrix = statistics_matrix(rows)
    point = reduce_sums(names, matrix.sum(axis=0), reduce)
    samples = resampled_metrics(names, matrix, reduce, resamples, seed)
    tail = (1.0 - level) / 2.0 * 100.0
    found = {}
    for metric, value in point.items():
        drawn = samples[metric]
        drawn = drawn[np.isfinite(drawn)]
        if not math.isfinite(value) or drawn.size == 0:
            found[metric] = Interval(float(value), math.nan, math.nan)
            continue
        low, high = np.percentile(drawn, [tail, 100.0 - tail])
        found[metric] = Interval(float(value), float(low), float(high))
    return found


@dataclass(frozen=True)
class Comparison:
    """A metric of run A against run B on the same examples (paired bootstrap)."""

    metric: str
    a: float
    b: float
    low: float
    """Interval of the difference A - B."""
    high: float
    p_value: float
    """Two-sided: how often the resampled difference falls on the other side of zero."""

    @property
    def difference(self) -> float:
        return self.a - self.b

    @property
    def significant(self) -> bool:
        """The interval of A - B excludes zero."""
        return self.low > 0 or self.high < 0


def paired(
    rows_a: Sequence[Mapping[str, float]],
    rows_b: Sequence[Mapping[str, float]],
    reduce_a: Reduce,
    reduce_b: Reduce | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Comparison]:
    """Paired bootstrap (Koehn 2004): the same resampled examples score both runs, so the
    interval of the difference holds only the variation that the data causes once, not the
    examples each run happened to find easy. ``rows_a[i]`` and ``rows_b[i]`` are the same
    example."""
    if len(rows_a) != len(rows_b):
        raise ValueError(f"the runs scored {len(rows_a)} and {len(rows_b)} examples")
    reduce_b = reduce_b or reduce_a
    names_a, matrix_a = statistics_matrix(rows_a)
    names_b, matrix_b = statistics_matrix(rows_b)
    point_a = reduce_sums(names_a, matrix_a.sum(axis=0), reduce_a)
    point_b = reduce_sums(names_b, matrix_b.sum(axis=0), reduce_b)
    differences: dict[str, list[float]] = {}
    for counts in _resample_counts(len(matrix_a), resamples, seed):
        for sums_a, sums_b in zip(counts @ matrix_a, counts @ matrix_b, strict=True):
            got_a = reduce_sums(names_a, sums_a, reduce_a)
            got_b = reduce_sums(names_b, sums_b, reduce_b)
            for metric in got_a.keys() & got_b.keys():
                differences.setdefault(metric, []).append(got_a[metric] - got_b[metric])
    tail = (1.0 - level) / 2.0 * 100.0
    found = {}
    for metric in sorted(point_a.keys() & point_b.keys()):
        drawn = np.asarray(differences.get(metric, []), dtype=np.float64)
        drawn = drawn[np.isfinite(drawn)]
        if drawn.size == 0:
            continue
        low, high = np.percentile(drawn, [tail, 100.0 - tail])
        # Two-sided p-value of "no difference": the share of resamples on the far side of 0.
        below, above = float(np.mean(drawn <= 0)), float(np.mean(drawn >= 0))
        found[metric] = Comparison(
            metric,
            float(point_a[metric]),
            float(point_b[metric]),
            float(low),
            float(high),
            min(1.0, 2.0 * min(below, above)),
        )
    return found
