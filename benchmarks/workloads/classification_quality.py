"""Classification quality at speed: the sentiment/minilm recipe's settings (2 epochs, lr 1e-4,
batch 32, length 64, 10% warm-up) on SST-2 sentences, trained by nlptasks (length-grouped
batches) and by transformers.Trainer (its default random batches), one seed per repeat (42,
43, 44...), both scored on the 872 SST-2 dev sentences by the same code (nlptasks'
evaluator). The report gives accuracy mean +- sd per contender.

    python benchmarks/harness.py classification_quality --repeats 3
"""

from __future__ import annotations

from typing import Any

from workloads._common import DATA, nlptasks_train, trainer_train, variant

DESCRIPTION = "sentiment, minilm recipe settings on SST-2, accuracy over seeds (quality)"
PARAMS: dict[str, Any] = {"examples": 4000, "epochs": 2, "warmup": 2, "extra": []}
BASELINE = "trainer"
QUALITY = "accuracy"


def overrides(p: dict[str, Any]) -> list[str]:
    return [
        f"data.train_path={DATA / 'sst2' / 'train.tsv'}",
        f"data.eval_path={DATA / 'sst2' / 'dev.tsv'}",
        f"data.max_train_examples={p['examples']}",
        f"train.epochs={p['epochs']}",
        f"train.seed={p['seed']}",
        "train.eval_every=1000000",
        "train.bootstrap_resamples=0",
        *p["extra"],
    ]


def _scored(result: dict[str, Any]) -> dict[str, Any]:
    result["accuracy"] = result["metrics"]["accuracy"]
    return result


def nlptasks(p: dict[str, Any]) -> dict[str, Any]:
    return _scored(nlptasks_train("sentiment", "minilm", overrides(p), p["warmup"]))


def trainer(p: dict[str, Any]) -> dict[str, Any]:
    extra = ["train.group_by_length=false"]  # the Trainer's default: random batches
    return _scored(
        trainer_train("sentiment", "minilm", [*overrides(p), *extra], p["warmup"], evaluate=True)
    )


CONTENDERS = {
    "nlptasks": nlptasks,
    "trainer": trainer,
    "nlptasks-random": variant(nlptasks, ["train.group_by_length=false"]),
}
