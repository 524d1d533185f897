"""Prompted translation fine-tuning speed: SmolLM2-135M prompted English -> French on Bible
verse pairs (the translation/smollm2 recipe's data and prompt), batch 8, nlptasks' trainer vs
transformers.Trainer on the same features and collate (fused AdamW, bf16 autocast, threads).
The loss covers the target tokens only for both.

    python benchmarks/harness.py translation --repeats 3
"""

from __future__ import annotations

from typing import Any

from workloads._common import nlptasks_train, trainer_train, variant

DESCRIPTION = "prompted translation fine-tuning, SmolLM2-135M en->fr verses, batch 8 (speed)"
PARAMS: dict[str, Any] = {"examples": 400, "steps": 8, "warmup": 2, "batch_size": 8, "extra": []}
BASELINE = "trainer"


def overrides(p: dict[str, Any]) -> list[str]:
    return [
        f"data.max_train_examples={p['examples']}",
        "data.max_eval_examples=8",
        f"train.max_steps={p['steps']}",
        f"train.batch_size={p['batch_size']}",
        "train.eval_every=1000000",
        "train.bootstrap_resamples=0",
        *p["extra"],
    ]


def nlptasks(p: dict[str, Any]) -> dict[str, Any]:
    return nlptasks_train("translation", "smollm2", overrides(p), p["warmup"], causal=True)


def trainer(p: dict[str, Any]) -> dict[str, Any]:
    return trainer_train("translation", "smollm2", overrides(p), p["warmup"], causal=True)


CONTENDERS = {
    "nlptasks": nlptasks,
    "trainer": trainer,
    "nlptasks-compile": variant(nlptasks, ["train.compile=true"]),
}
