"""The small sweep behind the offline sentiment default (recipe ``sentiment/minilm``).

The recipe's held-out split (10% of the Rotten Tomatoes snippets, split seed 42) is never
looked at here: the sweep trains on the other 90% minus a validation part of its own (10%,
split seed 7) and compares settings on that validation part. Only the chosen setting is then
run once by the plain recipe, on its held-out split (``nlptasks run sentiment``).

    HF_HUB_OFFLINE=1 python benchmarks/sentiment_sweep.py --out sweep.jsonl
    HF_HUB_OFFLINE=1 python benchmarks/sentiment_sweep.py --only 2ep-lr5e-5 --out sweep.jsonl

Each setting runs ``nlptasks run sentiment --recipe minilm`` in a fresh subprocess, one after
another (two torch processes on two cores slow each other down many times over), and appends
one JSON line: validation accuracy and macro-F1 with their 95% bootstrap intervals, training
seconds, steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> overrides on top of recipe sentiment/minilm (lr 1e-4, batch 32, length 64); the
# recipe's epochs are 2 since this sweep, so every setting names its own.
SETTINGS: dict[str, list[str]] = {
    "1ep-lr1e-4 (old default)": ["train.epochs=1"],
    "2ep-lr1e-4": ["train.epochs=2"],
    "2ep-lr5e-5": ["train.epochs=2", "train.learning_rate=5e-5"],
    "2ep-lr1e-4-bs16": ["train.epochs=2", "train.batch_size=16"],
    "2ep-lr2e-4": ["train.epochs=2", "train.learning_rate=2e-4"],
}
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 7


def write_training_part(folder: Path) -> Path:
    """The recipe's training part (its held-out split removed) as a csv file."""
    from nlptasks.data import load_splits
    from nlptasks.recipes import load_recipe

    # Sentiment reads no files of its own (no ``read_source``): the data section says it all.
    recipe = load_recipe("sentiment", "minilm")
    train = load_splits(recipe.data)["train"]
    path = folder / "rotten-tomatoes-training-part.csv"
    train.to_csv(str(path), index=False)
    return path


def run_setting(name: str, overrides: list[str], train_csv: Path, folder: Path) -> dict:
    run_dir = folder / name.split(" ")[0]
    command = [
        sys.executable, "-m", "nlptasks", "run", "sentiment", "--recipe", "minilm", "--quiet",
        "--output-dir", str(run_dir),
        f"data.train_path={train_csv}", "~data.dataset",
        f"data.eval_fraction={VALIDATION_FRACTION}", f"data.split_seed={VALIDATION_SEED}",
        *overrides,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]["eval"]
    intervals = results["confidence_intervals"]["eval"]
    return {
        "setting": name,
        "overrides": overrides,
        "validation_examples": results["data"]["eval_examples"],
        "train_examples": results["data"]["train_examples"],
        "accuracy": round(metrics["accuracy"], 4),
        "accuracy_95": [round(v, 4) for v in intervals["accuracy"]],
        "macro_f1": round(metrics["macro_f1"], 4),
        "macro_f1_95": [round(v, 4) for v in intervals["macro_f1"]],
        "train_seconds": results["train"]["train_seconds"],
        "steps": results["train"]["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("sentiment-sweep.jsonl"))
    parser.add_argument("--only", action="append", help="run only settings whose name starts so")
    args = parser.parse_args()
    chosen = {
        name: overrides
        for name, overrides in SETTINGS.items()
        if not args.only or any(name.startswith(prefix) for prefix in args.only)
    }
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        train_csv = write_training_part(folder)
        for name, overrides in chosen.items():
            row = run_setting(name, overrides, train_csv, folder)
            print(json.dumps(row), flush=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
