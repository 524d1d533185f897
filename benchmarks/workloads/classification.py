"""Classification fine-tuning speed: all-MiniLM-L6-v2 on SST-2 sentences, nlptasks' trainer
vs transformers.Trainer at identical settings (features, model and seeded head, fused AdamW,
bf16 autocast where the CPU has it, length-grouped batches, threads).

    python benchmarks/harness.py classification --repeats 3
    python benchmarks/harness.py classification --param 'extra=["train.compile=true"]'
"""

from __future__ import annotations

from typing import Any

from workloads._common import DATA, nlptasks_train, trainer_train, variant

DESCRIPTION = "sentiment fine-tuning, MiniLM on SST-2, batch 32, length 64 (speed)"
PARAMS: dict[str, Any] = {
    "examples": 4000,
    "steps": 60,
    "warmup": 5,
    "batch_size": 32,
    "max_length": 64,
    "extra": [],
}
BASELINE = "trainer"


def overrides(p: dict[str, Any]) -> list[str]:
    return [
        f"data.train_path={DATA / 'sst2' / 'train.tsv'}",
        f"data.eval_path={DATA / 'sst2' / 'dev.tsv'}",
        f"data.max_train_examples={p['examples']}",
        "data.max_eval_examples=32",
        f"data.max_length={p['max_length']}",
        f"train.max_steps={p['steps']}",
        f"train.batch_size={p['batch_size']}",
        "train.eval_every=1000000",
        "train.bootstrap_resamples=0",
        *p["extra"],
    ]


def nlptasks(p: dict[str, Any]) -> dict[str, Any]:
    return nlptasks_train("sentiment", "minilm", overrides(p), p["warmup"])


def trainer(p: dict[str, Any]) -> dict[str, Any]:
    return trainer_train("sentiment", "minilm", overrides(p), p["warmup"])


# The speed-ups of issue 20, each on against the default (off or on): `--contenders
# nlptasks,nlptasks-compile` measures one.
VARIANTS = {
    "compile": ["train.compile=true"],
    "unfused": ["train.fused_optimizer=false"],
    "eager": ["train.attn_implementation=eager"],
    "bucket16": ["train.length_bucket=16"],
    "tokens1024": ["train.max_tokens_per_batch=1024"],
    "random": ["train.group_by_length=false"],
}


CONTENDERS = {
    "nlptasks": nlptasks,
    "trainer": trainer,
    **{f"nlptasks-{name}": variant(nlptasks, extra) for name, extra in VARIANTS.items()},
}
