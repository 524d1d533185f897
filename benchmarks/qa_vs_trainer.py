"""Extractive QA fine-tuning: nlptasks vs transformers.Trainer on the same SQuAD windows.

Same model (all-MiniLM-L6-v2 from its pip package, new span head with the same seed), the
same 3,807-question SQuAD v1.1 train subset cut into the same windows (384 tokens, stride
128, by nlptasks' qa preprocessing), the same optimiser settings (1 epoch, lr 1e-4, batch 32,
10% warm-up, linear decay, weight decay 0.01, bf16 autocast where the CPU has it). The
Trainer gets the windows padded to 384 tokens, as transformers' run_qa example pads them;
nlptasks pads each length-grouped batch to its own longest window. Both models are then scored
by the same code, ``nlptasks eval qa``, on the complete SQuAD v1.1 dev set (10,570 questions).

Each contender runs in a fresh subprocess (peak RSS is its own); ``--recipe`` also runs the
shipped ``qa/minilm`` recipe as it is. Results are appended as JSON lines to ``--out``.

    HF_HUB_OFFLINE=1 python benchmarks/qa_vs_trainer.py --out qa-bench.jsonl [--recipe]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad_v1.1"
DATA = [
    f"data.train_path={SQUAD / 'train-v1.1.first11-articles.json'}",
    f"data.eval_path={SQUAD / 'dev-v1.1.json'}",
]
SHARED = ["train.learning_rate=1e-4", "train.batch_size=32", "train.warmup_ratio=0.1"]
# --smoke: a few questions, to check the script itself in a minute.
LIMITS: list[str] = (
    ["data.max_train_examples=64", "data.max_eval_examples=50"]
    if os.environ.get("QA_BENCH_SMOKE")
    else []
)


def run_nlptasks(epochs: float | None, overrides: list[str]) -> dict[str, object]:
    from nlptasks.events import QuietReporter
    from nlptasks.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            "qa",
            "minilm",
            [
                *DATA,
                *([f"train.epochs={epochs}"] if epochs is not None else []),
                "train.save_checkpoints=false",
                *overrides,
            ],
            output_dir=f"{tmp}/run",
            reporter=QuietReporter(),
        )
    train = result.results["train"]
    return {
        "metrics": result.metrics,
        "train_seconds": train["train_seconds"],
        "eval_seconds": train["eval_seconds"],  # inside train_seconds, not in windows/s
        "windows": train["examples_seen"],
        "windows_per_second": train["examples_per_second"],
        "mixed_precision": result.results["provenance"].get("mixed_precision"),
    }


def run_transformers(epochs: float) -> dict[str, object]:
    import torch
    import transformers
    from transformers import (
        AutoModelForQuestionAnswering,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    import nlptasks
    from nlptasks import data, models
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import _source_reader, load_task
    from nlptasks.training import precision

    transformers.logging.set_verbosity_error()
    recipe = load_recipe("qa", "minilm", [*DATA, *SHARED, *LIMITS])
    task = load_task("qa")
    path = models.resolve_model(recipe.model)
    splits = data.load_splits(recipe.data, read_source=_source_reader(task, recipe))
    splits = task.prepare_data(splits, recipe)
    transformers.set_seed(recipe.train.seed)  # the same new head as nlptasks' run
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    _, tokenizer = task.build_model(path, recipe)  # same tokenizer and window settings
    features = task.preprocess(splits["train"], tokenizer, recipe)
    keep = {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    features = features.remove_columns([c for c in features.column_names if c not in keep])
    bf16 = precision.resolve("auto") == "bf16"
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=32,
            learning_rate=1e-4,
            num_train_epochs=epochs,
            warmup_steps=0.1,  # transformers 5: a float below 1 is a ratio
            weight_decay=0.01,
            lr_scheduler_type="linear",
            bf16=bf16,
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
            # run_qa pads every window to max_seq_length (384).
            data_collator=DataCollatorWithPadding(tokenizer, padding="max_length", max_length=384),
            processing_class=tokenizer,
        )
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
        trainer.save_model(f"{tmp}/model")
        with torch.inference_mode():
            evaluated = nlptasks.evaluate("qa", f"{tmp}/model", "minilm", *DATA, *LIMITS)
    return {
        "metrics": evaluated.metrics,
        "train_seconds": seconds,
        "windows": len(features) * epochs,
        "windows_per_second": output.metrics["train_samples_per_second"],
        "mixed_precision": "bf16" if bf16 else "no",
    }


def child(name: str, epochs: float) -> None:
    started = time.perf_counter()
    if name == "nlptasks":
        extra = [x for x in os.environ.get("QA_BENCH_EXTRA", "").split("\n") if x]
        out = run_nlptasks(epochs, [*SHARED, *LIMITS, *extra])
        out["overrides"] = extra
    elif name == "recipe":
        out = run_nlptasks(None, LIMITS)  # the shipped recipe, as it is
        out["note"] = "qa/minilm as shipped"
    else:
        out = run_transformers(epochs)
    out["contender"] = name
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--out", default="qa-bench.jsonl")
    parser.add_argument("--recipe", action="store_true", help="also run qa/minilm as shipped")
    parser.add_argument("--only", choices=["nlptasks", "transformers", "recipe"])
    parser.add_argument("--child", choices=["nlptasks", "transformers", "recipe"])
    parser.add_argument("--smoke", action="store_true", help="64 train / 50 eval questions")
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        help="an extra override for the nlptasks runs, e.g. train.group_by_length=false",
    )
    args = parser.parse_args()
    if args.smoke:
        os.environ["QA_BENCH_SMOKE"] = "1"
    if args.extra:
        os.environ["QA_BENCH_EXTRA"] = "\n".join(args.extra)
    if args.child:
        child(args.child, args.epochs)
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # after --smoke set its variable
    names = [args.only] if args.only else ["nlptasks", "transformers"]
    if args.recipe and not args.only:
        names.append("recipe")
    for name in names:
        command = [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        result = json.loads(line[len("RESULT ") :])
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
