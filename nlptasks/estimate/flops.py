"""Training FLOPs: 6·N·T (Kaplan et al. 2020), plus attention, with the method written out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nlptasks.estimate.size import ModelSize
from nlptasks.estimate.tokens import TokenPlan


@dataclass(frozen=True)
class FlopEstimate:
    total: float
    weights: float
    attention: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "weights": self.weights,
            "attention": self.attention,
            "method": self.method,
        }


def training_flops(size: ModelSize, tokens: TokenPlan) -> FlopEstimate:
    """FLOPs of the whole run over the padded tokens (what the model really computes).

    Per token: a forward pass costs 2 FLOPs per non-embedding weight, the backward pass 4
    (2 for the input gradients, 2 for the weight gradients): 6·N. Frozen weights (LoRA) need
    no weight gradients: 4·N_frozen + 6·N_trainable. Attention adds 6·2·layers·seq·d_model per
    token (QKᵀ and the weighted sum of values, forward and backward; Kaplan et al.'s
    2·n_layer·n_ctx·d_attn forward term), with seq the mean padded feature length.
    """
    n = size.per_token
    trained = min(size.trainable, n)
    padded = tokens.padded_training_tokens
    if size.lora:
        weights = (4 * (n - trained) + 6 * trained) * padded
        method = "(4·N_frozen + 6·N_trainable)·T"
    else:
        weights = 6 * n * padded
        method = "6·N·T"
    mean_seq = tokens.padded_tokens_per_epoch / max(
        1, tokens.micro_batches_per_epoch * tokens.micro_batch_size
    )
    attention = 6 * 2 * size.layers * mean_seq * size.hidden * padded
    tied = " (with the tied output layer)" if size.tied_output else ""
    return FlopEstimate(
        total=float(weights + attention),
        weights=float(weights),
        attention=float(attention),
        method=(
            f"{method} + 12·layers·seq·d_model·T (Kaplan et al. 2020); N = {n:,} non-embedding "
            f"parameters{tied}, T = {padded:,} padded training tokens, seq = {mean_seq:.0f} "
            f"(mean padded length)"
        ),
    )
