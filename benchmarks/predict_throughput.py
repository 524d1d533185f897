"""Prediction throughput: ``nlptasks.predict`` vs ``transformers.pipeline``.

Same model (all-MiniLM-L6-v2 from its pip package with a fresh 2-label classification head,
saved once to a temporary folder, or ``--model DIR``), the same 872 SST-2 dev sentences, batch
size 32, fp32 on CPU:

* nlptasks: ``nlptasks.predict("sentiment", MODEL_DIR, records, batch_size=32,
  mixed_precision="no")`` -- the public call, which loads the model from MODEL_DIR itself, so
  its time includes that load (reported separately as ``load s``);
* pipeline: ``transformers.pipeline("text-classification", model=MODEL_DIR, top_k=None)``
  called on the list of texts with ``batch_size=32`` (its own unsorted batching); loading the
  pipeline is not timed.

Each run is a fresh subprocess: load (not timed), one warm-up pass on 64 texts (not timed),
then one timed pass over all texts. Each run also prints its CPU time / wall time: well below
the number of torch threads means something else was using the cores. Contenders alternate;
the report gives medians and the ratio nlptasks / pipeline. Once, outside the timed part, the
predictions of the first run of each are compared: same labels, probabilities within 1e-4.

    HF_HUB_OFFLINE=1 python benchmarks/predict_throughput.py --repeats 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SST2_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"
BATCH_SIZE = 32
WARMUP_TEXTS = 64
TOLERANCE = 1e-4
LABELS = {0: "negative", 1: "positive"}
CONTENDERS = ("nlptasks", "pipeline")


def read_texts() -> list[str]:
    with SST2_DEV.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["sentence"] for row in rows]


def make_model(model_dir: str) -> None:
    """MiniLM with a seeded 2-label head, saved with its tokenizer to ``model_dir``."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nlptasks.builtins.sentiment import minilm_path

    transformers.logging.set_verbosity_error()  # "newly initialized weights" is expected
    torch.manual_seed(0)
    path = minilm_path()
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(LABELS),
        id2label=LABELS,
        label2id={name: i for i, name in LABELS.items()},
        dtype=torch.float32,
    )
    model.save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(path).save_pretrained(model_dir)


def run_nlptasks(model_dir: str, texts: list[str]) -> tuple[dict[str, Any], list[dict[str, float]]]:
    import nlptasks
    from nlptasks.runner import load_task, model_recipe

    records = [{"text": text} for text in texts]

    def predict(chunk: list[dict[str, str]]) -> list[dict[str, Any]]:
        return nlptasks.predict(
            "sentiment", model_dir, chunk, batch_size=BATCH_SIZE, mixed_precision="no"
        )

    predict(records[:WARMUP_TEXTS])  # warm-up: imports, page cache, first-call allocations
    start, cpu = time.perf_counter(), time.process_time()
    out = predict(records)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # What the call above spent loading the model (outside the timing: for the report only).
    task = load_task("sentiment")
    recipe = model_recipe("sentiment", model_dir, None)  # the recipe nlptasks.predict resolves
    start = time.perf_counter()
    model, _ = task.build_model(model_dir, recipe, trained=True)
    model.eval()
    load_seconds = time.perf_counter() - start
    info = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_seconds": load_seconds,
        "dtype": str(next(model.parameters()).dtype),
    }
    return info, [p["probabilities"] for p in out]


def run_pipeline(model_dir: str, texts: list[str]) -> tuple[dict[str, Any], list[dict[str, float]]]:
    import transformers

    transformers.logging.set_verbosity_error()
    pipe = transformers.pipeline("text-classification", model=model_dir, top_k=None)
    pipe(texts[:WARMUP_TEXTS], batch_size=BATCH_SIZE)
    start, cpu = time.perf_counter(), time.process_time()
    out = pipe(texts, batch_size=BATCH_SIZE)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    info = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "dtype": str(next(pipe.model.parameters()).dtype),
    }
    return info, [{d["label"]: d["score"] for d in scores} for scores in out]


def child(name: str, model_dir: str, dump: str | None) -> None:
    import torch

    texts = read_texts()
    fn = run_nlptasks if name == "nlptasks" else run_pipeline
    info, probabilities = fn(model_dir, texts)
    info.update(examples=len(texts), threads=torch.get_num_threads())
    if dump:
        Path(dump).write_text(json.dumps(probabilities), encoding="utf-8")
    print("RESULT " + json.dumps(info))


def compare(nlptasks_file: Path, pipeline_file: Path) -> tuple[float, int, int]:
    """Max |p_nlptasks - p_pipeline| over all texts and labels, label mismatches, count."""
    ours = json.loads(nlptasks_file.read_text(encoding="utf-8"))
    theirs = json.loads(pipeline_file.read_text(encoding="utf-8"))
    if len(ours) != len(theirs):
        raise SystemExit(f"nlptasks gave {len(ours)} predictions, the pipeline {len(theirs)}")
    max_diff, mismatches = 0.0, 0
    for a, b in zip(ours, theirs, strict=True):
        if set(a) != set(b):
            raise SystemExit(f"label sets differ: {sorted(a)} vs {sorted(b)}")
        max_diff = max(max_diff, *(abs(a[k] - b[k]) for k in a))
        mismatches += max(a, key=a.__getitem__) != max(b, key=b.__getitem__)
    return max_diff, mismatches, len(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a saved sequence-classification model (default: MiniLM)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=[*CONTENDERS, "make-model"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "make-model":
        make_model(args.model_dir)
        return
    if args.child:
        child(args.child, args.model_dir, args.dump)
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def call(*extra: str) -> str:
        cmd = [sys.executable, __file__, *extra]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = f"{tmp}/model"
            call("--child", "make-model", "--model-dir", model_dir)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
        dumps = {name: Path(tmp) / f"{name}.json" for name in CONTENDERS}
        for repeat in range(args.repeats):
            order = CONTENDERS if repeat % 2 == 0 else CONTENDERS[::-1]
            for name in order:
                extra = ["--dump", str(dumps[name])] if repeat == 0 else []
                stdout = call("--child", name, "--model-dir", model_dir, *extra)
                line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
                result = json.loads(line[len("RESULT ") :])
                result["examples_per_second"] = result["examples"] / result["seconds"]
                runs[name].append(result)
                load = ""
                if "load_seconds" in result:
                    load = f", of which model load {result['load_seconds']:.3f} s"
                print(
                    f"{name:<9} run {repeat + 1}: {result['examples_per_second']:6.1f} ex/s "
                    f"({result['examples']} texts in {result['seconds']:.3f} s{load}; "
                    f"{result['dtype']}, {result['threads']} threads, CPU/wall "
                    f"{result['cpu_seconds'] / result['seconds']:.2f})",
                    flush=True,
                )
        max_diff, mismatches, count = compare(dumps["nlptasks"], dumps["pipeline"])

    med = {
        name: {
            "examples_per_second": statistics.median(r["examples_per_second"] for r in rs),
            "seconds": statistics.median(r["seconds"] for r in rs),
        }
        for name, rs in runs.items()
    }
    load = statistics.median(r["load_seconds"] for r in runs["nlptasks"])
    ratio = med["nlptasks"]["examples_per_second"] / med["pipeline"]["examples_per_second"]
    print()
    print(f"| contender | examples/s (median of {args.repeats}) | seconds (median) |")
    print("|---|---|---|")
    for name in CONTENDERS:
        m = med[name]
        print(f"| {name} | {m['examples_per_second']:.1f} | {m['seconds']:.3f} |")
    print(f"| ratio nlptasks / pipeline | **{ratio:.2f}** | |")
    print()
    print(f"nlptasks' time includes loading the model: median {load:.3f} s")
    verdict = "OK" if mismatches == 0 and max_diff <= TOLERANCE else "FAILED"
    print(
        f"agreement on {count} texts: {mismatches} label mismatches, max |probability "
        f"difference| {max_diff:.2e} (tolerance {TOLERANCE:g}): {verdict}"
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "medians": med,
                "nlptasks_load_seconds": load,
                "ratio_nlptasks_over_pipeline": ratio,
                "max_abs_probability_difference": max_diff,
                "label_mismatches": mismatches,
            }
        )
    )
    if verdict != "OK":
        sys.exit(1)


if __name__ == "__main__":
    main()
