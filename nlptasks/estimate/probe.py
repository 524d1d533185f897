"""Wall time from a short measured probe: a few real optimizer steps of the shared trainer.

The probe is the run's own training loop (:class:`~nlptasks.training.trainer.Trainer`) with
the model the run would train (``task.build_model``: its real pretrained weights; LoRA as
the recipe says), the recipe's precision, optimizer and batch size, for ``PROBE_STEPS``
optimizer steps, without evaluation or checkpoints. Its windows are made of the run's own
features of the run's mean padded length, so that a probe step is an average step of the run
(the first windows of a length-grouped order can be far shorter or longer than average). The
first step (allocation, warm-up) is left out; the median of the others is the step time.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

from nlptasks.events import Event, EventLog

PROBE_STEPS = 4
"""Optimizer steps the probe takes: the first is warm-up, the median of the rest counts."""


@dataclass(frozen=True)
class Probe:
    step_seconds: float
    """Median seconds of the timed optimizer steps."""
    steps: int
    timed_padded_tokens: float
    """Mean padded tokens of the timed steps' windows."""
    peak_mb: float | None
    """The GPU's peak allocation during the probe (None on CPU, whose peak resident set
    cannot be reset in-process)."""
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_seconds": round(self.step_seconds, 4),
            "steps": self.steps,
            "timed_padded_tokens_per_step": round(self.timed_padded_tokens, 1),
            "peak_mb": self.peak_mb,
            "method": self.method,
        }


class _StepTimes(EventLog):
    """Keeps the trainer's events in memory: the probe's steps are not a run (no file, no
    tracker plugins)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.events: list[Event] = []

    def emit(self, type: str, **fields: Any) -> Event:
        event: Event = {"type": type, "time": time.time(), **fields}
        self.events.append(event)
        return event


def run_probe(task: Any, recipe: Any, model_path: str, features: Any, mean_length: float) -> Probe:
    """Time ``PROBE_STEPS`` optimizer steps of the run on those of ``features`` (its train
    features) whose length is nearest ``mean_length`` (the run's mean padded length)."""
    import torch
    from accelerate.utils import set_seed

    from nlptasks import model_fit, models
    from nlptasks.batching import collate_for
    from nlptasks.errors import RunInterrupted
    from nlptasks.estimate.tokens import batches_of, window_tokens
    from nlptasks.training import lora
    from nlptasks.training.distributed import make_accelerator
    from nlptasks.training.trainer import Trainer

    lengths = [int(n) for n in features["length"]]
    wanted = recipe.train.batch_size * PROBE_STEPS
    nearest = sorted(range(len(lengths)), key=lambda i: (abs(lengths[i] - mean_length), i))
    chosen = sorted(nearest[:wanted])
    subset = features.select(chosen)
    sizes = window_tokens(
        [lengths[i] for i in chosen],
        batches_of([lengths[i] for i in chosen], recipe.train),
        recipe.train.gradient_accumulation_steps,
    )
    set_seed(recipe.train.seed)
    with models.remote_code(recipe.trust_remote_code):
        model, tokenizer = task.build_model(model_path, recipe)
    model_fit.check_built_model(task, model, tokenizer, model_path, "run")
    if recipe.train.attn_implementation and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(recipe.train.attn_implementation)
    if recipe.lora.enabled:
        model = lora.add_adapters(model, recipe.lora, recipe.name or "recipe")
    steps = min(PROBE_STEPS, max(1, len(sizes)))
    config = replace(recipe.train, max_steps=steps, log_every=1, save_checkpoints=False)
    accelerator = make_accelerator(config, recipe.distributed)
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    log = _StepTimes()
    trainer = Trainer(
        task,
        model,
        tokenizer,
        config,
        subset,
        events=log,
        accelerator=accelerator,
        collate=collate_for(task, tokenizer),
    )
    try:
        trainer.train()
    except RunInterrupted as stopped:
        # The trainer's own message speaks of a run to restart; a dry run has none.
        raise RunInterrupted(
            "Estimate interrupted during its timing probe; nothing was trained or written. "
            "Run it again, or add --no-probe to skip the probe.",
            stopped.exit_code,
        ) from None
    elapsed = [float(e["elapsed_seconds"]) for e in log.events if e["type"] == "step"]
    # Step k's time is the difference of the elapsed times; the first step is warm-up.
    durations = [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)] or elapsed
    timed = sizes[1:steps] or sizes[:1]
    peak = None
    if accelerator.device.type == "cuda":
        peak = round(torch.cuda.max_memory_allocated(accelerator.device) / 2**20, 1)
    del trainer, model
    return Probe(
        step_seconds=statistics.median(durations),
        steps=steps,
        timed_padded_tokens=sum(timed) / max(len(timed), 1),
        peak_mb=peak,
        method=(
            f"{steps} optimizer steps of the shared trainer on windows of the run's features "
            f"of its mean padded length ({mean_length:.0f}), the model's real weights, "
            f"{accelerator.mixed_precision} precision; median of steps 2-{steps}"
            if steps > 1
            else "1 optimizer step of the shared trainer (warm-up included)"
        ),
    )


def matmul_rate(precision: str) -> tuple[float, str]:
    """FLOP/s of a large matrix product on this machine at ``precision``: the rate a run
    without a probe is timed with (a lower bound on its time: attention kernels, the
    optimizer and data loading are slower than a matmul)."""
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    n = 4096 if cuda else 1024
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    if cuda:
        torch.cuda.synchronize()  # the warm-up (and cuBLAS start-up) is not timed
    runs, started = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < 0.2:
        a @ b
        runs += 1
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / runs
    rate = 2 * n**3 / seconds
    return rate, f"{n}x{n} {dtype} matmul on {device}: {rate / 1e9:.1f} GFLOP/s"
