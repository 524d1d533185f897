"""Generation tokens/s through ``nlptasks serve`` (a streamed ``/v1/completions``) against
``model.generate`` alone, on the same model, prompt and settings (greedy, 64 new tokens),
in the same run: the served request and the bare call alternate, each ``--repeats`` times,
and the table shows medians and their ratio.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/serve_generation.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/serve_generation.py --model tiny --repeats 5

The model is SmolLM2-135M-Instruct from the offline assets (the ``smollm2-135m`` preset,
converted once); ``--model tiny`` uses a tiny random GPT-2 instead (what is left when the
preset cannot load). Loopback only (the server binds 127.0.0.1 on a free port); every
request has a timeout and the run is bounded by ``--repeats``. Both sides run in float32
with ``--threads`` torch threads; while one side works the other is idle, so they never
compete for the cores. Run nothing else CPU-heavy meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

TINY_PROMPT = "a gripping , funny"
"""The tiny GPT-2 has 128 positions: a short prompt leaves room for the new tokens."""
PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg"
)
NEW_TOKENS = 64
SERVING = re.compile(r"Serving .* on (http://[0-9.]+:\d+)")


def model_folder(choice: str, scratch: Path) -> tuple[str, str]:
    """(folder, what it is): SmolLM2-135M when asked and it loads, else a tiny GPT-2."""
    if choice == "smollm2":
        from nlptasks.models import resolve_model

        try:
            return resolve_model("smollm2-135m"), "SmolLM2-135M-Instruct (float32)"
        except Exception as error:  # noqa: BLE001 - any failure: say why, fall back
            print(f"SmolLM2-135M is not available ({error}); using a tiny GPT-2.")
    from nlptasks.testing import make_tiny_gpt2

    return str(make_tiny_gpt2(scratch / "tiny-gpt2", dropout=0)), "tiny random GPT-2"


class Server:
    """``nlptasks serve`` as a subprocess on a free loopback port."""

    def __init__(self, folder: str, threads: int) -> None:
        command = [
            sys.executable, "-m", "nlptasks.cli", "serve", folder, "--task", "generation",
            "--host", "127.0.0.1", "--port", "0", "--model-name", "bench",
            "--mixed-precision", "no",
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        found = threading.Event()
        threading.Thread(target=self._read, args=(found,), daemon=True).start()
        if not found.wait(300) or self.process.poll() is not None:
            self.stop()
            raise SystemExit(f"nlptasks serve did not start: {''.join(self.lines)[-2000:]}")
        match = next(m for line in self.lines if (m := SERVING.search(line)))
        self.url = match.group(1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{self.url}/health did not answer")

    def _read(self, found: threading.Event) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if SERVING.search(line):
                found.set()
        found.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def served(url: str, prompt: str) -> dict[str, Any]:
    """One streamed completion: its text, new tokens, seconds to the first text and in all."""
    body = {
        "model": "bench", "prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    start = time.perf_counter()
    first, text, tokens = None, [], 0
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as response:
        if response.status_code != 200:
            raise SystemExit(
                f"/v1/completions answered {response.status_code}: {response.read()!r}"
            )
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if choice.get("text"):
                    first = first or time.perf_counter() - start
                    text.append(choice["text"])
    return {"text": "".join(text), "tokens": tokens, "first": first,
            "seconds": time.perf_counter() - start}  # fmt: skip


def bare(model: Any, tokenizer: Any, prompt: str) -> dict[str, Any]:
    """``model.generate`` alone on the same prompt and settings."""
    import torch

    inputs = tokenizer(prompt, return_tensors="pt")
    start = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    new = output[0, inputs["input_ids"].shape[1] :]
    return {"text": tokenizer.decode(new, skip_special_tokens=True), "tokens": len(new),
            "first": None, "seconds": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--repeats", type=int, default=5, help="Runs of each side (>= 3).")
    parser.add_argument("--threads", type=int, default=2, help="Torch threads of each side.")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (medians)")
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        folder, what = model_folder(args.model, Path(scratch))
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model.eval()
        prompt = TINY_PROMPT if what.startswith("tiny") else PROMPT
        started = time.perf_counter()
        server = Server(folder, args.threads)
        print(f"{what}; server up in {time.perf_counter() - started:.1f} s at {server.url}")
        try:
            served(server.url, prompt), bare(model, tokenizer, prompt)  # warm-up, not timed
            runs: dict[str, list[dict[str, Any]]] = {"served": [], "bare": []}
            for _ in range(args.repeats):
                runs["served"].append(served(server.url, prompt))
                runs["bare"].append(bare(model, tokenizer, prompt))
        finally:
            server.stop()
    rate = {k: statistics.median(r["tokens"] / r["seconds"] for r in v) for k, v in runs.items()}
    same = runs["served"][0]["text"] == runs["bare"][0]["text"]
    first = statistics.median(r["first"] for r in runs["served"] if r["first"] is not None)
    length = len(tokenizer(prompt)["input_ids"])
    print(f"\n{args.repeats} alternating runs each, greedy, {NEW_TOKENS} new tokens, "
          f"{args.threads} threads, a prompt of {length} tokens")  # fmt: skip
    print("| contender | new tokens | median s | median tokens/s | first text (s) |")
    print("|---|---|---|---|---|")
    for name, label in (("bare", "`model.generate` alone"),
                        ("served", "`nlptasks serve`, streamed /v1/completions")):  # fmt: skip
        found = runs[name]
        print(
            f"| {label} | {found[0]['tokens']} | "
            f"{statistics.median(r['seconds'] for r in found):.3f} | {rate[name]:.1f} | "
            f"{f'{first:.3f}' if name == 'served' else '-'} |"
        )
    print(f"\nserved / bare tokens/s: {rate['served'] / rate['bare']:.3f}; "
          f"same text: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
