"""Corpus BLEU and chrF from sacreBLEU, offline, with their signatures.

sacreBLEU is the reference implementation WMT reports with; its signature string (``nrefs:1|
case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) says exactly how a score was computed,
so it is stored next to the score in results.json. ``evaluate.load("sacrebleu")`` needs the
Hub for its script; :class:`SacreBleu` is the same metric as an ``evaluate.Metric`` that works
offline.
"""

from __future__ import annotations

from collections.abc import Sequence
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
