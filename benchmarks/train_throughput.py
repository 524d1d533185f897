"""Fine-tuning throughput and peak memory: nlptasks' trainer vs transformers.Trainer.

Same model (all-MiniLM-L6-v2 from its pip package), same SST-2 examples, batch size, max
length, learning rate and number of optimizer steps. Contenders alternate, each run in a fresh
subprocess; the report gives medians and the ratio nlptasks / transformers.

    HF_HUB_OFFLINE=1 python benchmarks/train_throughput.py --steps 40 --repeats 3
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

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "train.tsv"


def run_nlptasks(steps: int, batch: int, max_length: int, examples: int) -> dict[str, float]:
    from nlptasks.events import QuietReporter
    from nlptasks.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            "sentiment",
            "minilm",
            [
                f"data.train_path={SST2}",
                f"data.max_train_examples={examples}",
                "data.max_eval_examples=32",
                f"data.max_length={max_length}",
                f"train.max_steps={steps}",
                f"train.batch_size={batch}",
                "train.save_checkpoints=false",
                "train.eval_every=100000",
            ],
            output_dir=f"{tmp}/run",
            reporter=QuietReporter(),
        )
        train = result.results["train"]
        return {"seconds": train["train_seconds"], "examples": train["examples_seen"]}


def run_transformers(steps: int, batch: int, max_length: int, examples: int) -> dict[str, float]:
    import datasets
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from nlptasks.builtins.sentiment import minilm_path

    transformers.logging.set_verbosity_error()
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    data = datasets.load_dataset(
        "csv", data_files={"train": str(SST2)}, delimiter="\t", quoting=3, split="train"
    ).select(range(examples))
    data = data.map(
        lambda b: tokenizer(b["sentence"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["sentence"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            learning_rate=1e-4,
            max_steps=steps,
            warmup_steps=0.1,  # transformers 5: a float below 1 is a ratio
            train_sampling_strategy="group_by_length",
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=42,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples": steps * batch}


def child(name: str, steps: int, batch: int, max_length: int, examples: int) -> None:
    fn = run_nlptasks if name == "nlptasks" else run_transformers
    out = fn(steps, batch, max_length, examples)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["nlptasks", "transformers"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.batch, args.max_length, args.examples)
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs: dict[str, list[dict[str, float]]] = {"nlptasks": [], "transformers": []}
    for repeat in range(args.repeats):
        order = ("nlptasks", "transformers") if repeat % 2 == 0 else ("transformers", "nlptasks")
        for name in order:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    name,
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                    "--max-length",
                    str(args.max_length),
                    "--examples",
                    str(args.examples),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
            result = json.loads(line[len("RESULT ") :])
            result["examples_per_second"] = result["examples"] / result["seconds"]
            runs[name].append(result)
            print(
                f"{name:<12} run {repeat + 1}: {result['examples_per_second']:.1f} ex/s, "
                f"peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    med = {
        name: {
            "examples_per_second": statistics.median(r["examples_per_second"] for r in rs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
        }
        for name, rs in runs.items()
    }
    speed = med["nlptasks"]["examples_per_second"] / med["transformers"]["examples_per_second"]
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
