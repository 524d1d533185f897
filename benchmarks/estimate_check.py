"""The dry-run estimate next to a real short run of the same recipe (issue 22): peak memory
(target: within ±30%) and step time (target: within 2x), as a markdown table.

    flock /tmp/heavy.lock env HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/estimate_check.py

Each case runs twice, each time in a fresh process as a user starts it: ``nlptasks run ...
--dry-run --json`` and ``nlptasks run ... train.max_steps=STEPS`` (no checkpoints, a small
eval set: evaluation is not what is compared; SST-2 and SQuAD capped at 2,000 training
examples, so that the estimate reads the run's own batches, not a sample's). The real step
time is the mean of steps 2..STEPS (from events.jsonl); the real peak memory is results.json's
``train.peak_memory_mb_per_process``. sentiment/bert-base runs offline on a local folder
with ``BertConfig()``'s defaults (bert-base-uncased's shape, random weights) and the MiniLM
tokenizer (bert-base-uncased's vocabulary), on SST-2 from the shared data folder.
Exit status 1 when a case misses a target. Takes about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2"
COMMON = [
    "train.log_every=1",
    "train.save_checkpoints=false",
    "train.bootstrap_resamples=0",
    "data.max_eval_examples=32",
]


def bert_base_folder(work: Path) -> Path:
    """bert-base-uncased's shape (random weights) with the MiniLM tokenizer, offline."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from nlptasks.models import resolve_model

    folder = work / "bert-base-shape"
    AutoTokenizer.from_pretrained(resolve_model("all-minilm-l6-v2")).save_pretrained(folder)
    BertModel(BertConfig()).save_pretrained(folder)
    return folder


def cases(work: Path) -> list[tuple[str, Callable[[], list[str]]]]:
    """(name, its arguments of `nlptasks run`, made when the case runs)."""
    return [
        (
            "sentiment/bert-base",
            lambda: [
                "sentiment",
                "--recipe",
                "bert-base",
                f"model={bert_base_folder(work)}",
                f"data.train_path={SST2 / 'train.tsv'}",
                f"data.eval_path={SST2 / 'dev.tsv'}",
                "data.max_train_examples=2000",
            ],
        ),
        ("qa/minilm", lambda: ["qa", "--recipe", "minilm", "data.max_train_examples=2000"]),
        ("generation/smollm2", lambda: ["generation", "--recipe", "smollm2"]),
        ("generation/smollm2-lora", lambda: ["generation", "--recipe", "smollm2-lora"]),
    ]


def nlptasks(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "nlptasks", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    if done.returncode != 0:
        raise SystemExit(f"nlptasks {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def compare(name: str, args: list[str], steps: int, work: Path) -> dict[str, Any]:
    overrides = [*args, f"train.max_steps={steps}", *COMMON]
    found = json.loads(nlptasks("run", *overrides, "--dry-run", "--json", cwd=work))
    run_dir = work / name.replace("/", "-")
    nlptasks("run", *overrides, "--output-dir", str(run_dir), "-q", cwd=work)
    train = json.loads((run_dir / "results.json").read_text())["train"]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    elapsed = [e["elapsed_seconds"] for e in events if e["type"] == "step"]
    # The estimate is of an average step: the mean of steps 2..N (the first is warm-up).
    real_step = statistics.mean(b - a for a, b in zip(elapsed, elapsed[1:], strict=False))
    shutil.rmtree(run_dir)
    return {
        "case": name,
        "parameters": found["parameters"]["total"],
        "trainable": found["parameters"]["trainable"],
        "precision": found["mixed_precision"],
        "batch": found["tokens"]["largest_micro_batch"],
        "estimated_peak_mb": found["memory"]["peak_mb"],
        "real_peak_mb": train["peak_memory_mb_per_process"][0],
        "estimated_step_s": found["time"]["step_seconds"],
        "real_step_s": real_step,
        "states_mb": sum(
            found["memory"][k] for k in ("weights_mb", "gradients_mb", "optimizer_mb")
        ),
        "activations_mb": found["memory"]["activations_mb"],
        "runtime_mb": found["memory"]["runtime_mb"],
    }


def markdown(rows: list[dict[str, Any]]) -> tuple[str, bool]:
    lines = [
        "| case | params (trainable) | precision | widest batch | peak MB est / real (ratio) "
        "| step s est / real (ratio) | est. states / activations / process MB |",
        "|---|---|---|---|---|---|---|",
    ]
    ok = True
    for r in rows:
        memory = r["estimated_peak_mb"] / r["real_peak_mb"]
        step = r["estimated_step_s"] / r["real_step_s"]
        ok = ok and 0.7 <= memory <= 1.3 and 0.5 <= step <= 2.0
        lines.append(
            f"| {r['case']} | {r['parameters'] / 1e6:.1f}M ({r['trainable'] / 1e6:.2f}M) | "
            f"{r['precision']} | {r['batch'][0]}x{r['batch'][1]} | {r['estimated_peak_mb']:,.0f} "
            f"/ {r['real_peak_mb']:,.0f} ({memory:.2f}) | {r['estimated_step_s']:.3f} / "
            f"{r['real_step_s']:.3f} ({step:.2f}) | {r['states_mb']:,.0f} / "
            f"{r['activations_mb']:,.0f} / {r['runtime_mb']:,.0f} |"
        )
    return "\n".join(lines), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps of the real run")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name, args in cases(work):
            if options.only and options.only not in name:
                continue
            rows.append(compare(name, args(), options.steps, work))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    table, ok = markdown(rows)
    print(table)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
