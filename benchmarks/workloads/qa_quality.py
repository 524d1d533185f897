"""Extractive QA quality at speed: the qa/minilm recipe (1 epoch, lr 1e-4, batch 32, windows
of 384 with stride 128) trained by nlptasks and by transformers.Trainer with its default random
batches, one seed per repeat (42, 43, 44...), each scored on SQuAD v1.1 dev by the same code
(nlptasks' evaluator). The report gives F1 mean +- sd per contender.

    python benchmarks/harness.py qa_quality --repeats 3                        # full: ~2.5 h
    python benchmarks/harness.py qa_quality --repeats 3 --param train_examples=1200 \\
        --param eval_examples=2000                                             # smaller
"""

from __future__ import annotations

from typing import Any

from workloads._common import nlptasks_train, trainer_train, variant

DESCRIPTION = "extractive QA, qa/minilm recipe, F1 over seeds: nlptasks vs Trainer (quality)"
PARAMS: dict[str, Any] = {
    "train_examples": None,  # the recipe's 3,807 questions
    "eval_examples": None,  # the whole dev set (10,570)
    "warmup": 2,
    "extra": [],
}
BASELINE = "trainer"
QUALITY = "f1"


def overrides(p: dict[str, Any]) -> list[str]:
    limits = []
    if p["train_examples"]:
        limits.append(f"data.max_train_examples={p['train_examples']}")
    if p["eval_examples"]:
        limits.append(f"data.max_eval_examples={p['eval_examples']}")
    return [*limits, f"train.seed={p['seed']}", "train.bootstrap_resamples=0", *p["extra"]]


def _scored(result: dict[str, Any]) -> dict[str, Any]:
    result["f1"] = result["metrics"]["f1"]
    result["exact_match"] = result["metrics"]["exact_match"]
    return result


def nlptasks(p: dict[str, Any]) -> dict[str, Any]:
    return _scored(nlptasks_train("qa", "minilm", overrides(p), p["warmup"]))


def trainer(p: dict[str, Any]) -> dict[str, Any]:
    extra = ["train.group_by_length=false"]  # the Trainer's default: random batches
    return _scored(
        trainer_train("qa", "minilm", [*overrides(p), *extra], p["warmup"], evaluate=True)
    )


CONTENDERS = {
    "nlptasks": nlptasks,
    "trainer": trainer,
    "nlptasks-exact-sort": variant(nlptasks, ["train.length_bucket=1"]),
}
