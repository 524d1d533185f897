"""Extractive QA fine-tuning speed: all-MiniLM-L6-v2 on SQuAD v1.1 windows (384 tokens,
stride 128, cut by nlptasks' qa preprocessing for both), nlptasks' trainer vs
transformers.Trainer at identical settings (model and seeded head, fused AdamW, bf16 autocast,
batch order policy, threads). ``trainer-384`` pads every window to 384 as transformers'
run_qa does.

    python benchmarks/harness.py qa --repeats 3
"""

from __future__ import annotations

from typing import Any

from workloads._common import nlptasks_train, trainer_train, variant

DESCRIPTION = "extractive QA fine-tuning, MiniLM on SQuAD windows of 384, batch 16 (speed)"
PARAMS: dict[str, Any] = {"examples": 1000, "steps": 14, "warmup": 3, "batch_size": 16, "extra": []}
BASELINE = "trainer"


def overrides(p: dict[str, Any]) -> list[str]:
    return [
        f"data.max_train_examples={p['examples']}",
        "data.max_eval_examples=16",
        f"train.max_steps={p['steps']}",
        f"train.batch_size={p['batch_size']}",
        "train.eval_every=1000000",
        "train.bootstrap_resamples=0",
        *p["extra"],
    ]


def nlptasks(p: dict[str, Any]) -> dict[str, Any]:
    return nlptasks_train("qa", "minilm", overrides(p), p["warmup"])


def trainer(p: dict[str, Any]) -> dict[str, Any]:
    return trainer_train("qa", "minilm", overrides(p), p["warmup"])


def trainer_384(p: dict[str, Any]) -> dict[str, Any]:
    return trainer_train("qa", "minilm", overrides(p), p["warmup"], pad_to=384)


CONTENDERS = {
    "nlptasks": nlptasks,
    "trainer": trainer,
    "trainer-384": trainer_384,
    "nlptasks-exact-sort": variant(nlptasks, ["train.length_bucket=1"]),
    "nlptasks-random": variant(nlptasks, ["train.group_by_length=false"]),
    "nlptasks-tokens6144": variant(nlptasks, ["train.max_tokens_per_batch=6144"]),
}
