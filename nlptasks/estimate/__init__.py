"""What a run will cost before it runs (``nlptasks estimate``, ``nlptasks run --dry-run``):
parameters, training tokens, FLOPs, peak memory, wall time on this machine and whether it
fits. Nothing is trained and no run directory is written.

One module per job: :mod:`.size` (the model on the meta device, LoRA, counts),
:mod:`.tokens` (tokens and batches from the real data), :mod:`.flops`, :mod:`.memory`,
:mod:`.probe` (timed steps), :mod:`.verdict`, :mod:`.report` (table and JSON). Everything
goes through the task contract (``nlptasks/task.py``): any task plugin is estimated alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nlptasks.estimate.flops import FlopEstimate
    from nlptasks.estimate.memory import Machine, MemoryEstimate
    from nlptasks.estimate.probe import Probe
    from nlptasks.estimate.size import ModelSize
    from nlptasks.estimate.tokens import TokenPlan
    from nlptasks.estimate.verdict import Verdict
    from nlptasks.recipes import Recipe

__all__ = ["Estimate", "estimate", "estimate_recipe"]


@dataclass(frozen=True)
class WallTime:
    seconds: float
    step_seconds: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "step_seconds": round(self.step_seconds, 4),
            "method": self.method,
            "excludes": "model loading, tokenisation, evaluations and checkpoints",
        }


@dataclass(frozen=True)
class Estimate:
    """Everything ``nlptasks estimate`` prints; ``to_dict()`` is its ``--json``."""

    task: str
    recipe: str
    model: str
    precision: str
    size: ModelSize
    tokens: TokenPlan
    flops: FlopEstimate
    memory: MemoryEstimate
    time: WallTime
    machine: Machine
    verdict: Verdict
    probe: Probe | None
    notes: tuple[str, ...] = ()
    """What the estimate leaves out for this recipe (sharding, several processes)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "recipe": self.recipe,
            "model": self.model,
            "mixed_precision": self.precision,
            "parameters": self.size.to_dict(),
            "tokens": self.tokens.to_dict(),
            "flops": self.flops.to_dict(),
            "memory": self.memory.to_dict(),
            "time": self.time.to_dict(),
            "machine": self.machine.to_dict(),
            "verdict": self.verdict.to_dict(),
            "probe": self.probe.to_dict() if self.probe else None,
            "notes": list(self.notes),
        }


def estimate(
    task: str, recipe: str | None = None, overrides: Sequence[str] = (), probe: bool = True
) -> Estimate:
    """Estimate a run of ``task`` with ``recipe`` and ``overrides`` (as ``nlptasks run``
    takes them). ``probe=False`` times the run from FLOPs instead of measured steps."""
    from nlptasks.recipes import load_recipe, with_absolute_paths

    return estimate_recipe(with_absolute_paths(load_recipe(task, recipe, list(overrides))), probe)


def estimate_recipe(recipe: Recipe, probe: bool = True) -> Estimate:
    """Estimate a run of an already validated recipe (see :func:`estimate`)."""
    import os

    import torch

    from nlptasks import data, model_fit, models
    from nlptasks.errors import NlpTasksError
    from nlptasks.estimate import memory as mem
    from nlptasks.estimate.flops import training_flops
    from nlptasks.estimate.probe import matmul_rate, run_probe
    from nlptasks.estimate.size import measure, weights_left_out
    from nlptasks.estimate.tokens import plan, sample_split
    from nlptasks.estimate.verdict import verdict
    from nlptasks.plugins.registry import load_task
    from nlptasks.runner import quiet_libraries, source_reader
    from nlptasks.training import lora, precision

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Each process would probe at once (and contend); the estimate is of one process.
        raise NlpTasksError(
            "nlptasks estimate (run --dry-run) runs in one process: start it without "
            "torchrun or accelerate launch; it estimates what one process holds and computes."
        )
    quiet_libraries()
    resolved = precision.resolve(recipe.train.mixed_precision)
    task = load_task(recipe.task)
    model_path = models.resolve_model(recipe.model)
    model_fit.check_model_fits(task, model_path, "run")
    splits = data.load_splits(recipe.data, read_source=source_reader(task, recipe))
    splits = task.prepare_data(splits, recipe)
    with models.remote_code(recipe.trust_remote_code), weights_left_out():
        model, tokenizer = task.build_model(model_path, recipe)
    if recipe.lora.enabled:
        model = lora.add_adapters(model, recipe.lora, recipe.name or "recipe")
    size = measure(model)
    attention = recipe.train.attn_implementation or str(
        getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"
    )
    del model
    train, sampled = sample_split(splits["train"])
    features = task.preprocess(train, tokenizer, recipe)
    tokens = plan(features, recipe.train, len(splits["train"]), sampled)
    flops = training_flops(size, tokens)
    cuda = torch.cuda.is_available()
    # On CPU the trainer reports the peak resident set, which holds this much already.
    runtime = 0.0 if cuda else mem.resident_bytes()
    device = "cuda" if cuda else "cpu"
    scores = mem.keeps_scores(attention, device, size.attention_dropout)
    shape = mem.Shape(*tokens.largest_batch, resolved, attention, scores)
    memory = mem.estimate_memory(size, shape, runtime, device)
    here = mem.machine()
    can_bf16 = precision.resolve("auto") == "bf16" if not cuda else torch.cuda.is_bf16_supported()
    found = verdict(
        memory, size, shape, tokens.micro_batch_size, tokens.accumulation, here, can_bf16
    )
    measured = None
    if probe and found.fits:
        mean_length = tokens.mean_window / recipe.train.batch_size
        measured = run_probe(task, recipe, model_path, features, mean_length)
        # The timed windows may be shorter or longer than the average one.
        per_step = measured.step_seconds * tokens.mean_window / measured.timed_padded_tokens
        wall = WallTime(
            per_step * tokens.optimizer_steps,
            per_step,
            f"probe median step {measured.step_seconds:.3f} s x (mean window "
            f"{tokens.mean_window:.0f} / timed window {measured.timed_padded_tokens:.0f} padded "
            f"tokens) x {tokens.optimizer_steps} optimizer steps",
        )
    else:
        rate, how = matmul_rate(resolved)
        why = "no probe (--no-probe)" if found.fits else "no probe (the run does not fit)"
        wall = WallTime(
            flops.total / rate,
            flops.total / rate / tokens.optimizer_steps,
            f"{why}: FLOPs / measured matmul rate ({how}); a lower bound",
        )
    return Estimate(
        task=recipe.task,
        recipe=recipe.name or "recipe",
        model=recipe.model,
        precision=resolved,
        size=size,
        tokens=tokens,
        flops=flops,
        memory=memory,
        time=wall,
        machine=here,
        verdict=found,
        probe=measured,
        notes=_left_out(recipe),
    )


def _left_out(recipe: Recipe) -> tuple[str, ...]:
    """What a single-process estimate does not model for this recipe's distributed section."""
    # Every recipe resolves to a strategy (ddp by default, which one process runs plainly);
    # only sharding changes what a process holds.
    if recipe.distributed.strategy not in ("fsdp", "deepspeed"):
        return ()
    return (
        "Estimated for one process, unsharded: under torchrun / accelerate launch with N "
        "processes each takes 1/N of the batches (steps and time about N times fewer), and "
        "FSDP / ZeRO shard the weights, gradients and AdamW states across them (offload and "
        "activation checkpointing are not modelled either).",
    )
