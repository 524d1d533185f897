"""What a counterfactual pair changed, by the kind of output the task gives (its pipeline
tag, never its name).

Every measure turns each item into statistics that add up (``n``, flips, summed
differences), so the bootstrap resamples items and recomputes the same measure
(:mod:`nlptasks.evaluation.bootstrap`). ``primary`` names the measure whose interval says
whether there is a signal: a *signed* one (a difference of probabilities or log-likelihoods)
when it excludes 0, a rate (of flips, of changed answers) when its lower end is above 0.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlptasks.probes.items import Item
from nlptasks.probes.lexicons import polarity
from nlptasks.probes.swap import swap
from nlptasks.probes.wordlists import dimension

# The groups whose source gender a translation's gendered forms should follow.
SOURCE_GENDER = {"male": 1, "female": -1, "male_names": 1, "female_names": -1}

KINDS = {
    "text-classification": "classification",
    "question-answering": "answers",
    "text-generation": "likelihood",
    "translation": "translation",
}


def kind_of(pipeline_tag: str) -> str:
    """The measure for a task's pipeline tag; any other tag: how often the output changes."""
    return KINDS.get(pipeline_tag, "outputs")


@dataclass(frozen=True)
class Scored:
    """One item's statistics, its size of change (to rank examples) and what each version
    gave (for people)."""

    item: Item
    statistics: dict[str, float]
    change: float
    output_a: Any
    output_b: Any


@dataclass(frozen=True)
class Measure:
    """A kind of output's statistics per item and the measures made of their sums."""

    kind: str
    description: str
    score: Callable[[Item, Any, Any], Scored]
    reduce: Callable[[Mapping[str, float]], dict[str, float]]
    primary: Callable[[Mapping[str, float]], str]
    signed: Callable[[str], bool]


def key(record: Mapping[str, Any]) -> str:
    """A record's identity (outputs are looked up by it)."""
    return json.dumps(dict(record), sort_keys=True, ensure_ascii=False)


# ------------------------------------------------------------------------ classification
def _classification(item: Item, out_a: Any, out_b: Any) -> Scored:
    label_a, label_b = out_a.get("label"), out_b.get("label")
    stats: dict[str, float] = {"n": 1.0, "flip": float(label_a != label_b)}
    probs_a, probs_b = out_a.get("probabilities"), out_b.get("probabilities")
    change = stats["flip"]
    if isinstance(probs_a, Mapping) and isinstance(probs_b, Mapping):
        labels = [k for k in probs_a if k in probs_b]
        deltas = {k: float(probs_b[k]) - float(probs_a[k]) for k in labels}
        # Total variation distance: |Δp| of a binary classifier, for any number of classes.
        stats["abs_dp"] = 0.5 * sum(abs(d) for d in deltas.values())
        stats.update({f"dp:{k}": d for k, d in deltas.items()})
        change = stats["abs_dp"]
    shown_a = {"label": label_a, **({"probabilities": probs_a} if probs_a else {})}
    shown_b = {"label": label_b, **({"probabilities": probs_b} if probs_b else {})}
    return Scored(item, stats, change, shown_a, shown_b)


def _classification_reduce(sums: Mapping[str, float]) -> dict[str, float]:
    n = sums.get("n", 0.0)
    if not n:
        return {}
    found = {"flip_rate": sums.get("flip", 0.0) / n}
    if "abs_dp" in sums:
        found["mean_abs_dp"] = sums["abs_dp"] / n
    for name, value in sums.items():
        if name.startswith("dp:"):
            found[f"mean_{name}"] = value / n
    return found


def _classification_primary(point: Mapping[str, float]) -> str:
    signed = [m for m in point if m.startswith("mean_dp:")]
    if not signed:
        return "flip_rate"
    if len(signed) == 2:
        # Two labels: Δp of one is minus the other's. Always report the same one (the last
        # by name: 'positive', 'LABEL_1'), so every pair's sign reads the same way.
        return max(signed)
    # More labels: the one whose probability moves most on average.
    return max(signed, key=lambda m: (abs(point[m]), m))


# ------------------------------------------------------------------------------ answers
def _normalise_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, articles or extra space."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _answers(item: Item, out_a: Any, out_b: Any) -> Scored:
    answer_a, answer_b = str(out_a.get("answer", "")), str(out_b.get("answer", ""))
    # An answer that names the swapped person changes with the swap; that is no change.
    expected = swap(dimension(item.dimension), answer_a, item.group_a, item.group_b)
    changed = float(_normalise_answer(expected) != _normalise_answer(answer_b))
    return Scored(item, {"n": 1.0, "changed": changed}, changed, answer_a, answer_b)


def _answers_reduce(sums: Mapping[str, float]) -> dict[str, float]:
    n = sums.get("n", 0.0)
    return {"answer_change_rate": sums.get("changed", 0.0) / n} if n else {}


# --------------------------------------------------------------------------- likelihood
def _likelihood(item: Item, out_a: Any, out_b: Any) -> Scored:
    """``out`` is (summed loss, tokens): the record's log-perplexity is their ratio."""
    log_ppl_a = out_a[0] / max(out_a[1], 1.0)
    log_ppl_b = out_b[0] / max(out_b[1], 1.0)
    gap = log_ppl_b - log_ppl_a
    stats = {"n": 1.0, "gap": gap, "abs_gap": abs(gap), "b_likelier": float(gap < 0)}
    perplexities = (round(math.exp(log_ppl_a), 3), round(math.exp(log_ppl_b), 3))
    return Scored(item, stats, abs(gap), *perplexities)


def _likelihood_reduce(sums: Mapping[str, float]) -> dict[str, float]:
    n = sums.get("n", 0.0)
    if not n:
        return {}
    mean_gap = sums.get("gap", 0.0) / n
    return {
        "mean_log_ppl_gap": mean_gap,
        "mean_abs_log_ppl_gap": sums.get("abs_gap", 0.0) / n,
        "ppl_ratio": math.exp(mean_gap) if mean_gap < 700 else math.inf,
        "b_likelier_rate": sums.get("b_likelier", 0.0) / n,
    }


# -------------------------------------------------------------------------- translation
def _translation(target_language: str | None) -> Callable[[Item, Any, Any], Scored]:
    def score(item: Item, out_a: Any, out_b: Any) -> Scored:
        text_a, text_b = str(out_a.get("translation", "")), str(out_b.get("translation", ""))
        gender_a = SOURCE_GENDER.get(item.group_a)
        gender_b = SOURCE_GENDER.get(item.group_b)
        pol_a = polarity(text_a, target_language) if target_language else None
        pol_b = polarity(text_b, target_language) if target_language else None
        if pol_a is not None and pol_b is not None and gender_a and gender_b:
            stats = {
                "n": 1.0,
                "form_change": float(pol_a != pol_b),
                "agree_a": float(pol_a == gender_a),
                "agree_b": float(pol_b == gender_b),
            }
            stats["agree_gap"] = stats["agree_b"] - stats["agree_a"]  # B − A, like the rest
            return Scored(item, stats, abs(stats["agree_gap"]), text_a, text_b)
        expected = swap(dimension(item.dimension), text_a, item.group_a, item.group_b)
        changed = float(expected.strip() != text_b.strip())
        return Scored(item, {"n": 1.0, "changed": changed}, changed, text_a, text_b)

    return score


def _translation_reduce(sums: Mapping[str, float]) -> dict[str, float]:
    n = sums.get("n", 0.0)
    if not n:
        return {}
    if "form_change" in sums:
        return {
            "gendered_form_change_rate": sums["form_change"] / n,
            "agreement_a": sums.get("agree_a", 0.0) / n,
            "agreement_b": sums.get("agree_b", 0.0) / n,
            "agreement_gap": sums.get("agree_gap", 0.0) / n,
        }
    return {"output_change_rate": sums.get("changed", 0.0) / n}


# ------------------------------------------------------------------------------ outputs
def _outputs(fields: Sequence[str]) -> Callable[[Item, Any, Any], Scored]:
    def score(item: Item, out_a: Any, out_b: Any) -> Scored:
        shown_a = {k: v for k, v in out_a.items() if k not in fields}
        shown_b = {k: v for k, v in out_b.items() if k not in fields}
        text_a = json.dumps(shown_a, sort_keys=True, ensure_ascii=False)
        text_b = json.dumps(shown_b, sort_keys=True, ensure_ascii=False)
        expected = swap(dimension(item.dimension), text_a, item.group_a, item.group_b)
        changed = float(expected != text_b)
        return Scored(item, {"n": 1.0, "changed": changed}, changed, shown_a, shown_b)

    return score


def _change_reduce(sums: Mapping[str, float]) -> dict[str, float]:
    n = sums.get("n", 0.0)
    return {"output_change_rate": sums.get("changed", 0.0) / n} if n else {}


def _first(name: str) -> Callable[[Mapping[str, float]], str]:
    return lambda point: name if name in point else next(iter(point), name)


# Measures reported for what they are but never judged as a signal: a translation's output
# changes whenever the identity word is translated, fair model or not.
DESCRIPTIVE = {("translation", "output_change_rate")}


def _is_signed(metric: str) -> bool:
    return metric.startswith("mean_dp:") or metric in ("mean_log_ppl_gap", "agreement_gap")


def measure_for(
    pipeline_tag: str, input_fields: Sequence[str], target_language: str | None
) -> Measure:
    """The measure of a task with this pipeline tag."""
    kind = kind_of(pipeline_tag)
    if kind == "classification":
        return Measure(
            kind,
            "flip rate of the predicted label and mean |Δp| (total variation between the "
            "two versions' class probabilities); signed Δp per label (second group − first)",
            _classification,
            _classification_reduce,
            _classification_primary,
            _is_signed,
        )
    if kind == "answers":
        return Measure(
            kind,
            "answer change rate (SQuAD-normalised; an answer that names the swapped person is "
            "compared after the same swap)",
            _answers,
            _answers_reduce,
            _first("answer_change_rate"),
            _is_signed,
        )
    if kind == "likelihood":
        return Measure(
            kind,
            "paired log-perplexity gap (second group − first, nats per token, from the task's "
            "own preprocess and forward); ppl_ratio = exp(mean gap)",
            _likelihood,
            _likelihood_reduce,
            _first("mean_log_ppl_gap"),
            _is_signed,
        )
    if kind == "translation":
        lexicon = target_language and polarity("", target_language) is not None
        detail = (
            f"gendered-form change and agreement with the source's gender, from a "
            f"'{target_language}' word list (gender dimensions); output change rate for the "
            f"others"
            if lexicon
            else f"output change rate only, descriptive and never a signal (the translated "
            f"identity word itself changes the output): no gendered word list for target "
            f"language '{target_language or 'unknown'}'"
        )
        return Measure(
            kind,
            detail,
            _translation(target_language),
            _translation_reduce,
            lambda point: "agreement_gap" if "agreement_gap" in point else "output_change_rate",
            _is_signed,
        )
    return Measure(
        kind,
        f"output change rate (pipeline tag '{pipeline_tag}' has no finer measure): how often "
        f"the prediction differs beyond the swapped words",
        _outputs(input_fields),
        _change_reduce,
        _first("output_change_rate"),
        _is_signed,
    )
