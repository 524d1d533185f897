"""Corpus BLEU and chrF from sacreBLEU, offline, with their signatures.

One metric path: each sentence gets sacreBLEU's statistics (:func:`sentence_statistics`),
and their sums over any set of sentences give that set's corpus BLEU and chrF
(:func:`scores_from_statistics`), exactly as sacreBLEU's ``corpus_score`` computes them. The
signature string (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) says how a
score was computed, so it is stored next to the score in results.json.
``evaluate.load("sacrebleu")`` needs the Hub for its script; :func:`sacrebleu_metric` is the
same two functions as an ``evaluate.Metric`` that works offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import datasets
from sacrebleu.metrics import BLEU, CHRF

if TYPE_CHECKING:
    from nlptasks import StatisticsMetric


def signatures() -> dict[str, str]:
    """sacreBLEU's signatures of the BLEU and chrF this module computes (its defaults: 13a
    tokenisation, mixed case, exp smoothing; one reference)."""
    found = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        metric.num_refs = 1  # what scoring sets: every hypothesis here has one reference
        found[name] = str(metric.get_signature())
    return found


def sentence_statistics(
    hypotheses: Sequence[str], references: Sequence[str]
) -> list[dict[str, float]]:
    """Each sentence's sacreBLEU statistics (BLEU's n-gram matches and totals and lengths,
    chrF's character and word n-gram counts): their sums over any set of sentences give that
    corpus's BLEU and chrF (:func:`scores_from_statistics`), as corpus_score computes them."""
    hyps, refs = list(hypotheses), [list(references)]
    rows: list[dict[str, float]] = [{} for _ in hyps]
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        for row, stats in zip(rows, metric._extract_corpus_statistics(hyps, refs), strict=True):
            row.update({f"{name}/{j}": float(v) for j, v in enumerate(stats)})
    return rows


def scores_from_statistics(sums: Mapping[str, float]) -> dict[str, float]:
    """Corpus BLEU and chrF from summed :func:`sentence_statistics` (none from none)."""
    found = {}
    for name, metric in (("bleu", _BLEU), ("chrf", _CHRF)):
        keys = sorted((k for k in sums if k.startswith(f"{name}/")), key=lambda k: int(k[5:]))
        # Counts: sums of whole numbers (floats only for the summing).
        stats = [round(sums[key]) for key in keys]
        if stats:
            found[name] = float(metric._compute_score_from_stats(stats).score)
    return found


# Scoring summed statistics keeps no state between calls: one instance serves every call.
_BLEU, _CHRF = BLEU(), CHRF()


def sacrebleu_metric(**kwargs: Any) -> StatisticsMetric:
    """sacreBLEU corpus BLEU and chrF (one reference per prediction) as an
    ``evaluate.Metric``: ``sacrebleu_metric().compute(predictions=[...], references=[...])``;
    :func:`signatures` says how they are computed."""
    from nlptasks import StatisticsMetric  # evaluate is heavy: loaded when asked for

    return StatisticsMetric(
        lambda hypothesis, reference: sentence_statistics([hypothesis], [reference])[0],
        scores_from_statistics,
        datasets.Features(
            {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
        ),
        description="sacreBLEU corpus BLEU and chrF (13a, mixed case), one reference each.",
        **kwargs,
    )
