"""Evaluation throughput: the same model and eval features scored by nlptasks' evaluator
(length-sorted batches, bf16 body with float32 heads, metrics) and by
``transformers.Trainer.predict`` (the Trainer's evaluation loop, bf16 autocast, then the same
metric from its logits), batch 64. Sentiment: MiniLM with a seeded head on the 872 SST-2 dev
sentences; qa: SQuAD v1.1 dev windows.

    python benchmarks/harness.py evaluation --repeats 3
    python benchmarks/harness.py evaluation --param task=qa --repeats 3
"""

from __future__ import annotations

import time
from typing import Any

from harness import Result, model_flops

from workloads._common import DATA, _precision

DESCRIPTION = "evaluation throughput, nlptasks' evaluator vs Trainer.predict, batch 64 (speed)"
PARAMS: dict[str, Any] = {"task": "sentiment", "examples": None, "batch_size": 64}
BASELINE = "trainer"


def _prepared(p: dict[str, Any]) -> Any:
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import prepare_run

    data = []
    if p["task"] == "sentiment":
        data = [
            f"data.train_path={DATA / 'sst2' / 'train.tsv'}",
            f"data.eval_path={DATA / 'sst2' / 'dev.tsv'}",
            "data.max_train_examples=64",
        ]
    else:
        data = ["data.max_train_examples=16"]
    if p["examples"]:
        data.append(f"data.max_eval_examples={p['examples']}")
    recipe = load_recipe(
        p["task"],
        "minilm",
        [*data, f"train.eval_batch_size={p['batch_size']}", "train.bootstrap_resamples=0"],
    )
    return prepare_run(recipe)


def _tokens(features: Any) -> int:
    return int(sum(sum(mask) for mask in features["attention_mask"]))


def _result(prepared: Any, seconds: float, metric: float) -> Result:
    features = prepared.features["eval"]
    tokens = _tokens(features)
    length = tokens / len(features)
    return {
        "seconds": seconds,
        "examples": len(features),
        "tokens": tokens,
        "flops": model_flops(prepared.model, tokens, length, training=False),
        "precision": _precision(prepared.recipe),
        "metric": metric,
    }


def _warm(prepared: Any) -> None:
    """The same untimed first forward for both contenders (kernels picked, pages touched)."""
    import torch

    prepared.model.eval()
    with torch.inference_mode(), prepared.accelerator.autocast():
        prepared.model(input_ids=torch.ones(8, 32, dtype=torch.long))


def nlptasks(p: dict[str, Any]) -> Result:
    prepared = _prepared(p)
    _warm(prepared)
    start = time.perf_counter()
    evaluation = prepared.evaluator.evaluate(prepared.model)
    seconds = time.perf_counter() - start
    main = prepared.task.info.main_metric
    return _result(prepared, seconds, evaluation.metrics[main])


def trainer(p: dict[str, Any]) -> Result:
    import tempfile

    import numpy as np
    import transformers
    from transformers import Trainer, TrainingArguments

    transformers.logging.set_verbosity_error()
    prepared = _prepared(p)
    features = prepared.features["eval"]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_eval_batch_size=p["batch_size"],
            bf16=_precision(prepared.recipe) == "bf16",
            use_cpu=True,
            report_to=[],
            disable_tqdm=True,
        )
        trainer = Trainer(model=prepared.model, args=args, data_collator=prepared.collate)
        _warm(prepared)
        start = time.perf_counter()
        output = trainer.predict(features)
        seconds = time.perf_counter() - start
    metric = float("nan")
    if p["task"] == "sentiment":
        predictions = np.asarray(output.predictions).argmax(-1)
        metric = float((predictions == np.asarray(features["labels"])).mean())
    return _result(prepared, seconds, metric)


CONTENDERS = {"nlptasks": nlptasks, "trainer": trainer}
