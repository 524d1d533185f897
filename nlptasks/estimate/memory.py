"""Peak training memory: what the trainer keeps, term by term, and the memory this machine
has (:func:`machine`).

What the shared trainer keeps (``nlptasks/training/trainer.py``, ``precision.py``): the
weights as built (float32 unless the task asks otherwise; bf16/fp16 is autocast, so float32
weights stay the master copy), one gradient per trainable weight in its dtype, AdamW's two
states per trainable weight (fused or foreach; same dtype), no gradient checkpointing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nlptasks.estimate.size import ModelSize

MB = 2**20
LOGIT_BYTES = 12
"""Bytes per output logit kept through a training step (vocabulary heads only): the logits
in the model's dtype, the task's float32 copy for the loss, and the log-softmax that the
cross-entropy saves for backward (4 + 4 + 4 at float32; measured on GPT-2 and SmolLM2 shapes
it is the largest activation of small language models)."""


@dataclass(frozen=True)
class Shape:
    """What activations depend on: the micro-batch and the precision."""

    batch: int
    seq: int
    precision: str
    """``no``, ``bf16`` or ``fp16`` (resolved)."""
    attention: str = "sdpa"
    """The attention kernel (transformers' ``attn_implementation``)."""
    scores: bool = False
    """Whether attention keeps its a·s² scores for backward (:func:`keeps_scores`)."""


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    autocast_copies: float
    activations: float
    runtime: float
    """The process's memory before the model exists (Python, torch, data, tokenizer):
    measured in this process on CPU, where peak memory is the resident set; 0 on a GPU,
    where it is the device's allocations."""
    device: str
    method: str
    terms: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.autocast_copies
            + self.activations
            + self.runtime
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_mb": round(self.total / MB, 1),
            "weights_mb": round(self.weights / MB, 1),
            "gradients_mb": round(self.gradients / MB, 1),
            "optimizer_mb": round(self.optimizer / MB, 1),
            "autocast_copies_mb": round(self.autocast_copies / MB, 1),
            "activations_mb": round(self.activations / MB, 1),
            "runtime_mb": round(self.runtime / MB, 1),
            "device": self.device,
            "method": self.method,
        }


AUTOCAST_FACTOR = 1.8
"""Activations under bf16/fp16 autocast with float32 weights, as a multiple of Korthikanti's
all-16-bit figure: autocast computes the matmuls in 16-bit, but norms, softmax and the
residual stream stay float32 and each linear layer keeps its own 16-bit copy of its input.
Measured (bytes saved for backward by a training forward, weights left out; or the peak
resident set of three training steps at a fixed shape, less the process and model states):
1.55x on SmolLM2-135M (8x256), 1.85x on a 6-layer BERT (16x64), 1.9x on MiniLM-L6 (32x384)."""
FLOAT32_FACTOR = 2.4
"""The same at float32 (no autocast): measured 2.29x (SmolLM2-135M), 2.5x (BERT)."""
SCORES_FACTOR = {"autocast": 2.7, "float32": 2.8}
"""The attention scores term (5·a·s/h) when the scores are kept: the softmax and the
dropout output stay float32 (4 + 1 + 4 + 2 bytes against Korthikanti's 5). Measured 2.7x on
MiniLM-L6 at 32x384 with attention dropout 0.1 under bf16 autocast (6.6 GB against 2.2 GB
without the dropout)."""


def keeps_scores(attention: str, device: str, attention_dropout: float) -> bool:
    """Whether attention keeps its a·s² scores for backward: eager attention always; SDPA on
    a CPU when training with attention dropout (the fused CPU kernel takes no dropout, so
    torch runs the math path); fused GPU kernels (flash, memory-efficient) never."""
    if attention == "eager":
        return True
    return device == "cpu" and attention_dropout > 0


def activation_bytes(size: ModelSize, shape: Shape) -> float:
    """Activations kept for backward over one micro-batch.

    Per layer s·b·h·34 bytes plus 5·a·s²·b for the attention scores where they are kept
    (Korthikanti et al. 2022, "Reducing Activation Recomputation", no recomputation; see
    :func:`keeps_scores`). Their figure assumes every activation is 16-bit (16-bit weights);
    with float32 weights it is multiplied by ``AUTOCAST_FACTOR`` under autocast or
    ``FLOAT32_FACTOR`` at float32, the scores by ``SCORES_FACTOR``. Plus the output logits
    (``LOGIT_BYTES`` each), and the input copies LoRA adapters keep (a dropout mask and a
    16-bit cast: 3 bytes per input value under autocast, the dropped-out input at float32).
    """
    s, b, h, a = shape.seq, shape.batch, max(size.hidden, 1), max(size.heads, 1)
    mixed = shape.precision in ("bf16", "fp16")
    kind = "autocast" if mixed else "float32"
    if size.half_weights:
        body, scores_factor = 1.0, 1.0
    else:
        body = AUTOCAST_FACTOR if mixed else FLOAT32_FACTOR
        scores_factor = SCORES_FACTOR[kind]
    per_layer = s * b * h * 34 * body
    if shape.scores:
        per_layer += 5 * a * s * s * b * scores_factor
    logits = b * s * size.vocab * LOGIT_BYTES
    adapters = s * b * size.lora_inputs * (3 if mixed else 5)
    return size.layers * per_layer + logits + adapters


def estimate_memory(size: ModelSize, shape: Shape, runtime: float, device: str) -> MemoryEstimate:
    """The peak of a training step (the second one: the optimizer states exist)."""
    mixed = shape.precision in ("bf16", "fp16")
    trainable_fraction = size.trainable / max(size.parameters, 1)
    # Autocast runs each linear layer on a 16-bit copy of its weight, which backward keeps.
    copies = 2.0 * size.matmul_parameters if mixed else 0.0
    optimizer = 2.0 * size.trainable_bytes
    return MemoryEstimate(
        weights=float(size.weight_bytes),
        gradients=float(size.trainable_bytes),
        optimizer=optimizer,
        autocast_copies=copies,
        activations=activation_bytes(size, shape),
        runtime=runtime,
        device=device,
        method=(
            "weights as built + one gradient and two AdamW states per trainable weight "
            f"({trainable_fraction:.1%} trainable) + "
            + ("16-bit autocast copies of the linear weights + " if mixed else "")
            + f"activations of the widest micro-batch ({shape.batch}x{shape.seq}, "
            f"Korthikanti et al. 2022, {shape.attention} attention "
            + ("keeping" if shape.scores else "without")
            + " its scores) + logits"
            + (" + the process before the model (measured resident set)" if runtime else "")
        ),
    )


def with_shape(memory: MemoryEstimate, size: ModelSize, shape: Shape) -> MemoryEstimate:
    """The same estimate for another batch shape or precision (for the suggestions)."""
    mixed = shape.precision in ("bf16", "fp16")
    return replace(
        memory,
        activations=activation_bytes(size, shape),
        autocast_copies=2.0 * size.matmul_parameters if mixed else 0.0,
    )


def resident_bytes() -> float:
    """This process's resident set now (Linux /proc; 0 elsewhere)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return float(found.group(1)) * 1024 if found else 0.0


@dataclass(frozen=True)
class Machine:
    """The machine the estimate assumes: this one."""

    cpu: str
    cores: int
    threads: int
    gpu: str | None
    memory: float
    """Bytes a run may use: the GPU's memory, else available RAM (plus this process's own,
    which a run started after it gets back)."""
    memory_kind: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "cpu_cores": self.cores,
            "torch_threads": self.threads,
            "gpu": self.gpu,
            "memory_mb": round(self.memory / MB, 1),
            "memory_kind": self.memory_kind,
        }


def machine() -> Machine:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Machine(
            cpu, cores or 1, torch.get_num_threads(), props.name, props.total_memory, "GPU memory"
        )
    return Machine(
        cpu, cores or 1, torch.get_num_threads(), None, _available_ram() + resident_bytes(), "RAM"
    )


def _available_ram() -> float:
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return float("inf")
    found = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return float(found.group(1)) * 1024 if found else float("inf")
