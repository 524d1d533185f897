"""Corpus BLEU and chrF from sacreBLEU, offline, with their signatures.

sacreBLEU is the reference implementation WMT reports with; its signature string (``nrefs:1|
case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) says exactly how a score was computed,
so it is stored next to the score in results.json. ``evaluate.load("sacrebleu")`` needs the
Hub for its script; :class:`SacreBleu` is the same metric as an ``evaluate.Metric`` that works
offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate
from sacrebleu.metrics import BLEU, CHRF


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[str]
) -> tuple[dict[str, float], dict[str, str]]:
    """(``{"bleu", "chrf"}``, ``{"bleu", "chrf"}`` signatures) of one reference per
    hypothesis, with sacreBLEU's defaults (13a tokenisation, mixed case, exp smoothing)."""
    bleu, chrf = BLEU(), CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    bleu_score = bleu.corpus_score(hyps, refs)
    chrf_score = chrf.corpus_score(hyps, refs)
    scores = {"bleu": float(bleu_score.score), "chrf": float(chrf_score.score)}
    signatures = {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}
    return scores, signatures


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
    """Corpus BLEU and chrF from summed :func:`sentence_statistics`."""
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


class SacreBleu(evaluate.Metric):
    """sacreBLEU corpus BLEU and chrF (one reference per prediction), with signatures."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018.",
            inputs_description="predictions: [str]; references: [str] (one per prediction).",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions: Any, references: Any) -> dict[str, Any]:
        scores, signatures = corpus_scores(predictions, references)
        return {**scores, "signatures": signatures}
