"""What the float32 output head (issue 18) costs in evaluation: the same model's forward
under bf16 autocast with and without ``keep_heads_float32``, interleaved, medians and their
ratio, and the largest difference of the logits.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/float32_head.py

One thread, so the two contenders share nothing; run nothing else CPU-heavy meanwhile.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import torch
import transformers

from nlptasks.evaluation.heads import keep_heads_float32
from nlptasks.models import resolve_model


def _model(kind: str) -> Any:
    if kind == "tiny BERT":
        config = transformers.BertConfig(
            vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=37,
        )  # fmt: skip
        return transformers.BertForSequenceClassification(config)
    if kind == "MiniLM classifier":
        path = resolve_model("all-minilm-l6-v2")
        return transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    path = resolve_model("smollm2-135m")  # converted once, then cached
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def main() -> None:
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    print("| model | batch | plain bf16 head (s) | float32 head (s) | ratio | max abs diff |")
    print("|---|---|---|---|---|---|")
    for kind, shape, repeats in (
        ("tiny BERT", (32, 64), 21),
        ("MiniLM classifier", (32, 64), 7),
        ("SmolLM2-135M LM head", (4, 64), 5),
    ):
        torch.manual_seed(0)
        plain = _model(kind).eval()
        ours = _model(kind).eval()
        ours.load_state_dict(plain.state_dict())
        keep_heads_float32(ours)
        ids = torch.randint(5, 1000, shape)
        times: dict[str, list[float]] = {"plain": [], "ours": []}
        logits: dict[str, torch.Tensor] = {}
        for repeat in range(repeats):  # alternate who goes first
            order = [("plain", plain), ("ours", ours)][:: 1 if repeat % 2 else -1]
            for name, model in order:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    start = time.perf_counter()
                    logits[name] = model(input_ids=ids).logits
                    times[name].append(time.perf_counter() - start)
        a, b = statistics.median(times["plain"]), statistics.median(times["ours"])
        diff = (logits["plain"].float() - logits["ours"].float()).abs().max().item()
        print(f"| {kind} | {shape[0]}x{shape[1]} | {a:.4f} | {b:.4f} | {b / a:.2f} | {diff:.3g} |")


if __name__ == "__main__":
    main()
