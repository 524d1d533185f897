"""One benchmark harness for every workload: nlptasks against its competitor, measured one way.

A workload is a module in ``benchmarks/workloads/`` with:

- ``DESCRIPTION``: one line;
- ``PARAMS``: default parameters (JSON values), overridden by ``--param KEY=VALUE``;
- ``CONTENDERS``: name -> function(params) -> result dict, each run in a fresh process;
- ``BASELINE``: the contender the others are compared with (``None``: no ratios);
- optionally ``QUALITY``: the result key whose mean +- sd over repeats is the workload's
  quality (each repeat then gets its own seed, ``params["seed"] = seed + repeat``), and
  ``same_outputs(a, b) -> str``: how two contenders' ``outputs`` compare.

A contender's result has ``seconds`` (timed part only, warm-up excluded), ``examples``,
``tokens`` (real, non-pad tokens), and may have ``flops`` (model FLOPs of the timed part:
:func:`model_flops`), ``precision`` (``bf16`` or ``fp32``, which probe the FLOP/s are
compared with), ``final_loss``, ``outputs`` and anything else worth keeping.

Method (the same for every workload):

- every contender in a fresh subprocess, with the same torch thread count;
- contenders alternate (ABAB, then BABA...), ``--repeats`` (>= 3) times; medians and ratios;
- a bf16 and fp32 matmul probe before each run; a run whose probe is under 80% of the best
  probe of this invocation was made on a slowed machine: discarded, and listed as such;
- peak RSS is the child's own ``ru_maxrss``.

    HF_HUB_OFFLINE=1 python benchmarks/harness.py classification --repeats 3
    python benchmarks/harness.py --list

Results go to stdout as a Markdown table and, one JSON object per run, to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED_DATA = HERE.parents[1] / "shared" / "data"
SLOW_MACHINE = 0.8
"""A run whose probe is under this fraction of the invocation's best probe is discarded."""

Result = dict[str, Any]


# ------------------------------------------------------------------------------ the probe
def matmul_probe(seconds: float = 0.6, size: int = 1024) -> dict[str, float]:
    """FLOP/s of square matmuls in bf16 and fp32 on this process's threads: the machine's
    attainable rate now (what a model's FLOP/s are a fraction of, and what says whether the
    machine is slowed by something else)."""
    import torch

    rates: dict[str, float] = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        for _ in range(3):  # warm-up: first calls pick kernels and fault in pages
            a @ b
        best = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            for _ in range(4):
                a @ b
            best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start))
        rates[name] = best
    return rates


# ----------------------------------------------------------------------------- FLOP counts
def non_embedding_parameters(model: Any) -> int:
    """Parameters that do matmuls for every token: all but the input embeddings (a lookup).
    The output projection counts even when it shares the input embedding's weight (tied):
    it is a (width x vocabulary) matmul either way."""
    import torch

    embeddings = {
        id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    count = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    weight = getattr(head, "weight", None)
    if weight is not None and id(weight) in embeddings:  # tied to the input embedding
        count += weight.numel()
    return count


def model_flops(
    model: Any, tokens: float, sequence_length: float, training: bool = True, causal: bool = False
) -> float:
    """Model FLOPs for ``tokens`` real tokens: 2·N per token forward (N: see
    :func:`non_embedding_parameters`; an LM head counts, tied or not), plus attention's scores
    and weighted sum, 2·2·layers·length·width per token forward (PaLM's MFU, appendix B; our
    own choice: half of it for a causal model, whose upper triangle is masked), and 3x for
    training (forward + backward). ``sequence_length`` is the mean real length: with varying
    lengths the attention term is a slight underestimate (it needs E[L²]/E[L])."""
    config = model.config
    text = getattr(config, "text_config", None) or config
    layers = int(getattr(text, "num_hidden_layers", 0) or 0)
    width = int(getattr(text, "hidden_size", 0) or getattr(text, "d_model", 0) or 0)
    attention = 4 * layers * sequence_length * width * (0.5 if causal else 1.0)
    forward = 2 * non_embedding_parameters(model) + attention
    return (3 if training else 1) * forward * tokens


# ------------------------------------------------------------------------- step timing
class StepClock:
    """Times steps after a warm-up: ``tick(examples, tokens)`` after each step; the first
    ``warmup`` steps are excluded from the timed part."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.steps = 0
        self.examples = 0
        self.tokens = 0
        self.start: float | None = None
        self.end: float | None = None
        self.losses: list[float] = []

    def tick(self, examples: int, tokens: int, loss: float | None = None) -> None:
        now = time.perf_counter()
        self.steps += 1
        if loss is not None:
            self.losses.append(loss)
        if self.steps == self.warmup:
            self.start = now
            return
        if self.steps > self.warmup:
            self.examples += examples
            self.tokens += tokens
            self.end = now

    def result(self) -> Result:
        if self.start is None or self.end is None:
            raise RuntimeError(
                f"{self.steps} steps, not more than the {self.warmup} warm-up steps: raise "
                f"the workload's steps or lower its warmup"
            )
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return {
            "seconds": self.end - self.start,
            "examples": self.examples,
            "tokens": self.tokens,
            "timed_steps": self.steps - self.warmup,
            "final_loss": statistics.fmean(tail) if tail else None,
        }


# ------------------------------------------------------------------------------- running
def load_workload(name: str) -> ModuleType:
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module(f"workloads.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"workloads.{name}":
            raise
        raise SystemExit(f"No workload '{name}'. Run: python {__file__} --list") from None


def workloads() -> list[str]:
    return sorted(p.stem for p in (HERE / "workloads").glob("*.py") if not p.stem.startswith("_"))


def probe_in_subprocess() -> dict[str, float]:
    """The probe in its own process: the harness itself never loads torch, so its children
    (whose peak RSS Linux counts from the parent's at fork) report their own memory."""
    done = subprocess.run(
        [sys.executable, __file__, "--probe"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(workload: str, contender: str, params: Mapping[str, Any]) -> None:
    module = load_workload(workload)
    fn: Callable[[dict[str, Any]], Result] = module.CONTENDERS[contender]
    result = fn(dict(params))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def run_child(workload: str, contender: str, params: Mapping[str, Any]) -> Result:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, __file__, "--child", workload, contender, json.dumps(params)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{workload}/{contender} failed:\n{done.stderr[-4000:]}")
    return json.loads(line[len("RESULT ") :])


def rates(result: Result, probe: Mapping[str, float]) -> Result:
    seconds = result["seconds"]
    out: Result = {
        "examples_per_second": result["examples"] / seconds,
        "tokens_per_second": result["tokens"] / seconds if result.get("tokens") else None,
    }
    if result.get("flops"):
        flops_per_second = result["flops"] / seconds
        out["model_tflops"] = flops_per_second / 1e12
        out["probe_fraction"] = flops_per_second / probe[result.get("precision", "fp32")]
    return out


def mark_slowed(runs: Mapping[str, list[Result]]) -> list[str]:
    """Mark each run ``discarded`` when its probe is under ``SLOW_MACHINE`` of the best probe
    of the whole invocation (not of the runs so far); the names of the discarded runs."""
    best = max(r["probe_bf16_tflops"] for rs in runs.values() for r in rs)
    discarded = []
    for rs in runs.values():
        for r in rs:
            r["discarded"] = r["probe_bf16_tflops"] < SLOW_MACHINE * best
            if r["discarded"]:
                discarded.append(f"{r['contender']} run {r['repeat'] + 1}")
    return discarded


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) < 1 and value != 0:
            return f"{value:.3f}"
        return f"{value:,.{digits}f}"
    return str(value)


def table(module: ModuleType, runs: dict[str, list[Result]]) -> str:
    columns = [
        ("seconds", "timed s"),
        ("examples_per_second", "examples/s"),
        ("tokens_per_second", "tokens/s"),
        ("peak_rss_mb", "peak RSS MB"),
        ("final_loss", "final loss"),
        ("first_step_seconds", "first step s"),
        ("probe_fraction", "FLOP/s / probe"),
    ]
    quality = getattr(module, "QUALITY", None)
    lines = [
        "| contender | runs kept | "
        + " | ".join(label for _, label in columns)
        + (f" | {quality} mean ± sd |" if quality else " |"),
        "|---" * (len(columns) + 2 + bool(quality)) + "|",
    ]
    medians: dict[str, dict[str, float | None]] = {}
    for name, rs in runs.items():
        kept = [r for r in rs if not r["discarded"]]
        medians[name] = {key: median([r.get(key) for r in kept]) for key, _ in columns}
        cells = [fmt(medians[name][key], 3 if key == "final_loss" else 1) for key, _ in columns]
        row = f"| {name} | {len(kept)}/{len(rs)} | " + " | ".join(cells)
        if quality:
            # Quality does not depend on the machine's speed: every seed counts.
            values = [r[quality] for r in rs if r.get(quality) is not None]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            row += f" | {statistics.fmean(values):.4f} ± {spread:.4f}" if values else " | -"
        lines.append(row + " |")
    baseline = getattr(module, "BASELINE", None)
    if baseline in medians:
        for name in medians:
            if name == baseline:
                continue
            ratios = []
            for key, label in columns[1:4]:
                ours, theirs = medians[name][key], medians[baseline][key]
                if ours and theirs:
                    ratios.append(f"{label} {ours / theirs:.2f}x")
            lines.append(f"\nratio {name} / {baseline}: " + ", ".join(ratios))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="nlptasks' benchmark harness", epilog="Workloads: " + ", ".join(workloads())
    )
    parser.add_argument("workload", nargs="?")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", help="comma-separated, default: all of the workload's")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="append one JSON object per run to this file")
    parser.add_argument("--list", action="store_true", help="list the workloads")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "CONTENDER", "PARAMS"))
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(matmul_probe()))
        return
    if args.child:
        child(args.child[0], args.child[1], json.loads(args.child[2]))
        return
    if args.list or not args.workload:
        for name in workloads():
            print(f"{name:<16} {load_workload(name).DESCRIPTION}")
        return
    module = load_workload(args.workload)
    params = dict(module.PARAMS)
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param {item!r}: write KEY=VALUE")
        params[key] = parse_value(value)
    names = args.contenders.split(",") if args.contenders else list(module.CONTENDERS)
    unknown = [n for n in names if n not in module.CONTENDERS]
    if unknown:
        raise SystemExit(f"Unknown contender(s) {unknown}; choose from {list(module.CONTENDERS)}")
    quality = getattr(module, "QUALITY", None)
    runs: dict[str, list[Result]] = {name: [] for name in names}
    print(f"# {args.workload}: {module.DESCRIPTION}\nparams: {json.dumps(params)}", flush=True)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            probe = probe_in_subprocess()
            run_params = dict(params)
            if quality:
                run_params["seed"] = int(params.get("seed", 42)) + repeat
            result = run_child(args.workload, name, run_params)
            result.update(rates(result, probe))
            result.update(
                contender=name,
                repeat=repeat,
                probe_bf16_tflops=probe["bf16"] / 1e12,
                probe_fp32_tflops=probe["fp32"] / 1e12,
                workload=args.workload,
                params=run_params,
                time=time.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            runs[name].append(result)
            tokens = result.get("tokens_per_second")
            print(
                f"{name:<24} run {repeat + 1}: {result['examples_per_second']:.1f} ex/s"
                + (f", {tokens:.0f} tok/s" if tokens else "")
                + f", peak RSS {result['peak_rss_mb']:.0f} MB, probe bf16 "
                f"{probe['bf16'] / 1e9:.0f} GFLOP/s"
                + (f", {quality} {result.get(quality)}" if quality else ""),
                flush=True,
            )
    discarded = mark_slowed(runs)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            for rs in runs.values():
                for r in rs:
                    handle.write(json.dumps({k: v for k, v in r.items() if k != "outputs"}) + "\n")
    print()
    print(table(module, runs))
    print(
        "\ndiscarded (probe under 80% of the best, machine slowed): "
        + (", ".join(discarded) if discarded else "none")
    )
    compare = getattr(module, "same_outputs", None)
    baseline = getattr(module, "BASELINE", None)
    if compare and baseline in runs and runs[baseline]:
        for name in names:
            if name != baseline and runs[name]:
                print(
                    f"outputs {name} vs {baseline}: "
                    + compare(runs[name][0].get("outputs"), runs[baseline][0].get("outputs"))
                )


if __name__ == "__main__":
    main()
