"""Fits or not, and what to change when it does not: each suggestion with its estimate."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nlptasks.estimate.memory import MB, Machine, MemoryEstimate, Shape, with_shape
from nlptasks.estimate.size import ModelSize

HEADROOM = 0.9
"""A run fits when its estimated peak is at most this share of the memory available: the
estimate is good to about ±30%, and the machine runs other things."""


@dataclass(frozen=True)
class Verdict:
    fits: bool
    peak_mb: float
    available_mb: float
    suggestions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fits": self.fits,
            "peak_mb": round(self.peak_mb, 1),
            "available_mb": round(self.available_mb, 1),
            "headroom": HEADROOM,
            "suggestions": self.suggestions,
        }


def verdict(
    memory: MemoryEstimate,
    size: ModelSize,
    shape: Shape,
    micro_batch: int,
    accumulation: int,
    machine: Machine,
    can_bf16: bool,
) -> Verdict:
    """Whether the peak fits in ``HEADROOM`` of the machine's memory; if not, the changes
    that help, in the order to try them (each with the peak it would have): bf16, LoRA, a
    smaller micro-batch with more accumulation (the same batch), gradient checkpointing."""
    fits = memory.total <= HEADROOM * machine.memory
    if fits:
        return Verdict(True, memory.total / MB, machine.memory / MB)
    found: list[str] = []

    def mb(value: float) -> str:
        return f"{value / MB:,.0f} MB"

    if shape.precision == "no" and can_bf16:
        lower = with_shape(memory, size, replace(shape, precision="bf16"))
        found.append(f"train.mixed_precision=bf16 (16-bit activations): about {mb(lower.total)}")
    if not size.lora:
        # LoRA r 8 on the attention projections trains well under 1% of the weights.
        states = memory.gradients + memory.optimizer
        found.append(
            f"lora.enabled=true (no gradients or AdamW states for the frozen weights): "
            f"about {mb(memory.total - 0.99 * states)}"
        )
    # The largest factor up to 4 that divides the micro-batch: the recipe's batch size must
    # stay a multiple of the accumulation, and the batch the same.
    factor = next((f for f in (4, 3, 2) if micro_batch % f == 0), 1)
    if factor > 1:
        smaller = micro_batch // factor
        lower = with_shape(memory, size, replace(shape, batch=smaller))
        found.append(
            f"train.gradient_accumulation_steps={accumulation * factor} (micro-batches of "
            f"{smaller}, the same batch size): about {mb(lower.total)}"
        )
    found.append(
        "gradient checkpointing (activations recomputed in backward): "
        "distributed.activation_checkpointing=true under distributed.strategy=fsdp; the "
        "single-process trainer has none yet"
    )
    return Verdict(False, memory.total / MB, machine.memory / MB, found)
