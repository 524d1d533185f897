"""Causal-LM fine-tuning throughput: nlptasks vs transformers.Trainer on the same packed blocks.

Same model (SmolLM2-135M-Instruct from its pip package, converted once), the same WikiText-2
text (``wiki.valid.raw`` from ../shared/data) packed by nlptasks' generation preprocessing
into blocks of ``--block`` tokens, the same batch, learning rate, schedule, precision (bf16
autocast where the CPU has it) and number of optimizer steps. The Trainer gets the blocks
through the same collate function. Contenders alternate, each in a fresh subprocess; the
report gives target tokens per second (evaluation time left out), peak RSS, and the ratios.

    HF_HUB_OFFLINE=1 python benchmarks/clm_vs_trainer.py --steps 20 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIKI = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2_raw"


def _overrides(steps: int, batch: int, block: int) -> list[str]:
    return [
        f"data.train_path={WIKI / 'wiki.valid.raw'}",
        f"data.eval_path={WIKI / 'wiki.test.raw'}",
        "~data.max_train_examples",
        "data.max_eval_examples=20",  # a token evaluation: its time is left out anyway
        f"options.block_size={block}",
        f"train.max_steps={steps}",
        f"train.batch_size={batch}",
        "train.save_checkpoints=false",
        "options.sample_prompts=[]",
    ]


def run_nlptasks(steps: int, batch: int, block: int) -> dict[str, float]:
    from nlptasks.events import QuietReporter
    from nlptasks.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            "generation",
            "smollm2",
            _overrides(steps, batch, block),
            output_dir=f"{tmp}/run",
            reporter=QuietReporter(),
        )
    train = result.results["train"]
    seconds = train["train_seconds"] - train["eval_seconds"]
    return {"seconds": seconds, "blocks": train["examples_seen"]}


def run_transformers(steps: int, batch: int, block: int) -> dict[str, float]:
    import transformers
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from nlptasks import data, models
    from nlptasks.batching import collate_for
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import _source_reader, load_task
    from nlptasks.training import precision

    transformers.logging.set_verbosity_error()
    recipe = load_recipe("generation", "smollm2", _overrides(steps, batch, block))
    task = load_task("generation")
    path = models.resolve_model(recipe.model)
    splits = data.load_splits(recipe.data, read_source=_source_reader(task, recipe))
    splits = task.prepare_data(splits, recipe)
    _, tokenizer = task.build_model(path, recipe)
    features = task.preprocess(splits["train"], tokenizer, recipe).remove_columns(["length"])
    transformers.set_seed(recipe.train.seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            learning_rate=recipe.train.learning_rate,
            max_steps=steps,
            warmup_steps=recipe.train.warmup_ratio,  # transformers 5: a float below 1 is a ratio
            weight_decay=recipe.train.weight_decay,
            lr_scheduler_type="linear",
            bf16=precision.resolve("auto") == "bf16",
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=recipe.train.seed,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=features,
            data_collator=collate_for(task, tokenizer),  # the collate nlptasks' run uses
            processing_class=tokenizer,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "blocks": steps * batch}


def child(name: str, steps: int, batch: int, block: int) -> None:
    fn = run_nlptasks if name == "nlptasks" else run_transformers
    out = fn(steps, batch, block)
    out["tokens_per_second"] = out["blocks"] * block / out["seconds"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["nlptasks", "transformers"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.batch, args.block)
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs: dict[str, list[dict[str, float]]] = {"nlptasks": [], "transformers": []}
    for repeat in range(args.repeats):
        order = ("nlptasks", "transformers") if repeat % 2 == 0 else ("transformers", "nlptasks")
        for name in order:
            command = [sys.executable, __file__, "--child", name]
            command += ["--steps", str(args.steps), "--batch", str(args.batch)]
            command += ["--block", str(args.block)]
            out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
            result = json.loads(line[len("RESULT ") :])
            runs[name].append(result)
            print(
                f"{name:<12} run {repeat + 1}: {result['tokens_per_second']:.0f} tokens/s, "
                f"peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    med = {
        name: {
            "tokens_per_second": statistics.median(r["tokens_per_second"] for r in rs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
        }
        for name, rs in runs.items()
    }
    speed = med["nlptasks"]["tokens_per_second"] / med["transformers"]["tokens_per_second"]
    memory = med["nlptasks"]["peak_rss_mb"] / med["transformers"]["peak_rss_mb"]
    print(
        json.dumps(
            {
                "medians": med,
                "speed_ratio_nlptasks_over_transformers": speed,
                "memory_ratio_nlptasks_over_transformers": memory,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
