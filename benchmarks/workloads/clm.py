"""Causal-LM fine-tuning speed: SmolLM2-135M (converted from its pip GGUF) on WikiText-2
``wiki.valid.raw`` packed by nlptasks into blocks of 256 tokens, batch 4, nlptasks' trainer vs
transformers.Trainer on the same blocks and collate (fused AdamW, bf16 autocast, threads).

    python benchmarks/harness.py clm --repeats 3
    python benchmarks/harness.py clm --contenders nlptasks,nlptasks-documents   # packing
"""

from __future__ import annotations

from typing import Any

from workloads._common import DATA, nlptasks_train, trainer_train, variant

DESCRIPTION = "causal-LM fine-tuning, SmolLM2-135M on WikiText-2 blocks of 256, batch 4 (speed)"
PARAMS: dict[str, Any] = {"steps": 6, "warmup": 2, "batch_size": 4, "block": 256, "extra": []}
BASELINE = "trainer"


def overrides(p: dict[str, Any]) -> list[str]:
    wiki = DATA / "wikitext2_raw"
    return [
        f"data.train_path={wiki / 'wiki.valid.raw'}",
        f"data.eval_path={wiki / 'wiki.test.raw'}",
        "~data.max_train_examples",
        "data.max_eval_examples=8",
        f"options.block_size={p['block']}",
        "options.sample_prompts=[]",
        # Each line a document (EOS after each), for every contender: only the packing differs.
        "options.documents=rows",
        f"train.max_steps={p['steps']}",
        f"train.batch_size={p['batch_size']}",
        "train.eval_every=1000000",
        "train.bootstrap_resamples=0",
        *p["extra"],
    ]


def nlptasks(p: dict[str, Any]) -> dict[str, Any]:
    return nlptasks_train("generation", "smollm2", overrides(p), p["warmup"], causal=True)


def trainer(p: dict[str, Any]) -> dict[str, Any]:
    return trainer_train("generation", "smollm2", overrides(p), p["warmup"], causal=True)


CONTENDERS = {
    "nlptasks": nlptasks,
    "trainer": trainer,
    "nlptasks-documents": variant(nlptasks, ["options.packing=documents"]),
    "nlptasks-compile": variant(nlptasks, ["train.compile=true"]),
    "nlptasks-eager": variant(nlptasks, ["train.attn_implementation=eager"]),
}
