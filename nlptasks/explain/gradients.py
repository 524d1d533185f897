"""Integrated Gradients on the input embeddings, through captum.

Why the embeddings layer (``LayerIntegratedGradients`` on the model's word-embedding module)
and not ``inputs_embeds``: the model is called with token ids as usual, so whatever it does
after the lookup (BERT's position and type embeddings, Marian's embedding scale) stays as in
prediction; only the looked-up word vectors move along the straight path from the
baseline's to the input's. The baseline is the same sequence with every non-special token
replaced by [PAD] (else [MASK], [UNK] or EOS): [CLS]/[SEP]/BOS stay, so the attributions
are about the words.

IG's completeness: the attributions sum to ``f(input) - f(baseline)`` up to the integral's
approximation error, which captum reports as the convergence delta (Gauss-Legendre, 50
steps by default). Gradients run in float32 whatever the prediction's precision (bf16
gradients make the sum miss by more than the quantity itself on small models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nlptasks.explain.dependency import require_captum

N_STEPS = 50
"""Integration steps: enough for |delta| well below 1% of f(x) - f(b) on the built-in
models (the tests measure it)."""
STEP_BUDGET = 8192
"""Tokens of interpolated inputs per forward pass: bounds the memory of long inputs."""
OUTPUT_BUDGET = 2**26
"""Output values (e.g. logits: positions x vocabulary) per forward pass, all rows together:
bounds the memory of a large vocabulary (64 Mi float32 values = 256 MiB, times the few
copies log_softmax makes)."""


@dataclass(frozen=True)
class Attribution:
    """IG's answer for one input: one number per token and the completeness terms."""

    attributions: list[float]
    score: float
    """f(input): the explained quantity for the input."""
    baseline_score: float
    """f(baseline): the same quantity for the all-[PAD] baseline."""
    convergence_delta: float
    """sum(attributions) - (score - baseline_score): IG's approximation error."""
    n_steps: int

    def fields(self) -> dict[str, Any]:
        """The JSON fields of an explanation (see :mod:`nlptasks.explain.schema`)."""
        return {
            "attributions": self.attributions,
            "score": self.score,
            "baseline_score": self.baseline_score,
            "convergence_delta": self.convergence_delta,
            "n_steps": self.n_steps,
        }


def baseline_token_id(tokenizer: Any) -> int:
    """The token that stands for "no word": [PAD], else [MASK], [UNK] or EOS."""
    for name in ("pad_token_id", "mask_token_id", "unk_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def baseline_ids(tokenizer: Any, ids: Sequence[int], explained: Sequence[bool]) -> list[int]:
    """``ids`` with every explained, non-special token replaced by the baseline token."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    blank = baseline_token_id(tokenizer)
    return [
        blank if wanted and token not in special else token
        for token, wanted in zip(ids, explained, strict=True)
    ]


def embedding_layer(model: torch.nn.Module, encoder: bool = False) -> torch.nn.Module:
    """The word-embedding module whose output IG interpolates (an encoder-decoder model's
    encoder's: the decoder gets its embeddings precomputed, so the layer runs once)."""
    pretrained: Any = model  # a transformers PreTrainedModel
    if encoder and hasattr(pretrained, "get_encoder"):
        found = getattr(pretrained.get_encoder(), "embed_tokens", None)
        if isinstance(found, torch.nn.Module):
            return found
    layer = pretrained.get_input_embeddings()
    assert isinstance(layer, torch.nn.Module)
    return layer


@contextlib.contextmanager
def float32(model: torch.nn.Module) -> Iterator[None]:
    """The model in float32 for the duration, then each tensor back to its own dtype
    (bf16 -> fp32 -> bf16 loses nothing)."""
    dtypes = {name: t.dtype for name, t in _tensors(model)}
    lowered = any(d.is_floating_point and d != torch.float32 for d in dtypes.values())
    if lowered:
        for _, tensor in _tensors(model):
            if tensor.dtype.is_floating_point:
                tensor.data = tensor.data.float()
    try:
        yield
    finally:
        if lowered:
            for name, tensor in _tensors(model):
                tensor.data = tensor.data.to(dtypes[name])


def _tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


@contextlib.contextmanager
def gradients_on(model: torch.nn.Module) -> Iterator[None]:
    """Gradients in float32 even inside ``inference_mode`` or autocast, weights unchanged."""
    device = next(model.parameters()).device
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.autocast(device_type=device.type, enabled=False),
        float32(model),
    ):
        yield


def integrated_gradients(
    model: torch.nn.Module,
    forward: Callable[..., torch.Tensor],
    layer: torch.nn.Module,
    input_ids: torch.Tensor,
    baseline: torch.Tensor,
    additional: tuple[Any, ...] = (),
    n_steps: int = N_STEPS,
    outputs_per_row: int = 0,
) -> Attribution:
    """IG of ``forward(ids, *additional)`` (one number per row) for one input (1, L),
    attributed to each position's word embedding (summed over the hidden size).

    ``forward`` must accept a batch of any size (captum repeats the input ``n_steps``
    times); ``additional`` tensors of batch size 1 are repeated with it.
    ``outputs_per_row``: how many values (e.g. logits) one row's forward pass computes, so
    that a pass stays within ``OUTPUT_BUDGET`` as well as ``STEP_BUDGET`` tokens.
    """
    require_captum()
    from captum.attr import LayerIntegratedGradients

    with gradients_on(model):
        lig = LayerIntegratedGradients(forward, layer)
        per_pass = max(1, STEP_BUDGET // max(1, input_ids.shape[1]))
        if outputs_per_row > 0:
            per_pass = min(per_pass, max(1, OUTPUT_BUDGET // outputs_per_row))
        attributions, delta = lig.attribute(
            inputs=input_ids,
            baselines=baseline,
            additional_forward_args=additional or None,
            n_steps=n_steps,
            internal_batch_size=min(n_steps, per_pass),
            return_convergence_delta=True,
        )
        with torch.no_grad():
            score = float(forward(input_ids, *additional).reshape(-1)[0])
            base = float(forward(baseline, *additional).reshape(-1)[0])
    summed = attributions.detach().float().sum(dim=-1).reshape(-1)
    return Attribution(
        attributions=[float(v) for v in summed.tolist()],
        score=score,
        baseline_score=base,
        convergence_delta=float(delta.reshape(-1)[0]),
        n_steps=n_steps,
    )


def expand(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """A (1, ...) tensor as ``rows`` rows (a view): for forward functions that close over
    tensors captum does not repeat."""
    return tensor.expand(rows, *tensor.shape[1:])
