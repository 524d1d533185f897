"""The model of a run without its weights: the task's own ``build_model`` on the meta
device, LoRA applied as the run applies it, and the counts the estimate needs.

Why the task's ``build_model`` and not ``AutoConfig`` + an Auto class: the task decides the
head (sentiment's label count comes from the data), and ``preprocess`` reads what
``build_model`` learnt (position limits, tokenizer digests, QA windows). Calling it through
the contract keeps every task, built-in or third-party, without special cases; only the
weights are left out (:func:`weights_left_out`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# What from_pretrained takes besides the config's own settings; meaningless without weights.
_LOADING_ONLY = (
    "ignore_mismatched_sizes",
    "device_map",
    "low_cpu_mem_usage",
    "output_loading_info",
    "state_dict",
    "use_safetensors",
    "weights_only",
    "revision",
    "cache_dir",
    "local_files_only",
    "token",
    "force_download",
    "proxies",
    "subfolder",
    "variant",
    "max_memory",
    "offload_folder",
    "offload_buffers",
    "quantization_config",
    "key_mapping",
    "tp_plan",
    "gguf_file",
)


@contextlib.contextmanager
def weights_left_out() -> Iterator[None]:
    """Inside: every ``PreTrainedModel.from_pretrained`` builds the model from its
    ``config.json`` on the meta device (shapes and dtypes, no storage), with the keyword
    arguments the task gives (``num_labels``...), instead of reading its weights.

    A 7B model then costs nothing to "build", and the task's ``build_model`` runs unchanged.
    The dtype is the one ``from_pretrained`` would give (its ``dtype`` argument; default the
    torch default, float32; ``"auto"`` the config's).
    """
    import torch
    from accelerate import init_empty_weights
    from transformers import PretrainedConfig, PreTrainedModel

    original = PreTrainedModel.__dict__["from_pretrained"]

    def from_config_only(cls: Any, reference: Any, *args: Any, **kwargs: Any) -> Any:
        # Loading-only and internal arguments (_from_auto, adapter_kwargs...) mean nothing
        # without weights; the rest are the config's (num_labels, id2label...).
        kwargs = {
            k: v
            for k, v in kwargs.items()
            if k not in _LOADING_ONLY and not k.startswith(("_", "adapter_"))
        }
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        trust = kwargs.pop("trust_remote_code", None)
        config = kwargs.pop("config", None)
        if not isinstance(config, PretrainedConfig):
            extra = {"trust_remote_code": trust} if trust is not None else {}
            config, _ = cls.config_class.from_pretrained(
                config if config is not None else reference,
                return_unused_kwargs=True,
                **extra,
                **kwargs,
            )
        else:
            for key, value in kwargs.items():
                setattr(config, key, value)
        if dtype == "auto":
            dtype = getattr(config, "dtype", None) or torch.get_default_dtype()
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        with init_empty_weights(include_buffers=False):
            model = cls._from_config(config, dtype=dtype or torch.get_default_dtype())
        # from_pretrained ties shared weights (BART's embeddings and LM head) after loading;
        # counted untied, they would count twice.
        model.tie_weights()
        return model

    PreTrainedModel.from_pretrained = classmethod(from_config_only)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        PreTrainedModel.from_pretrained = original  # type: ignore[method-assign]


@dataclass(frozen=True)
class ModelSize:
    """What the estimate needs to know about the model: counts and shape."""

    architecture: str
    parameters: int
    trainable: int
    embedding: int
    """Parameters of the input embeddings (token, position, type): no FLOPs per token."""
    lora: bool
    layers: int
    hidden: int
    heads: int
    vocab: int
    """Size of the output layer's rows over the vocabulary (0: the model has no LM head)."""
    weight_bytes: int
    """Bytes the weights take in their dtype (the trainer keeps them as built)."""
    trainable_bytes: int
    """Bytes of the trainable weights (their gradients take as much)."""
    matmul_parameters: int
    """Parameters of the linear layers (what autocast keeps a 16-bit copy of)."""
    tied_output: int = 0
    """Parameters of an output layer tied to the input embeddings: counted once in
    ``parameters`` and in ``embedding``, yet every token goes through it (2·V·d FLOPs)."""
    lora_inputs: int = 0
    """Summed input widths of the layers LoRA adapts: their adapters keep their own copy of
    the input (dropout mask, 16-bit cast) for backward."""
    half_weights: bool = False
    """The weights themselves are 16-bit (the task built the model in bf16/fp16)."""
    attention_dropout: float = 0.0
    """The config's dropout on attention probabilities (it decides whether a CPU keeps the
    attention scores: :func:`nlptasks.estimate.memory.keeps_scores`)."""

    @property
    def non_embedding(self) -> int:
        return self.parameters - self.embedding

    @property
    def per_token(self) -> int:
        """The weights each token is multiplied by: the non-embedding ones, plus an output
        layer tied to the embeddings (dropping it would undercount a 135M LM by ~21%)."""
        return self.non_embedding + self.tied_output

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "total": self.parameters,
            "trainable": self.trainable,
            "non_embedding": self.non_embedding,
            "embedding": self.embedding,
            "lora": self.lora,
            "layers": self.layers,
            "hidden_size": self.hidden,
            "attention_heads": self.heads,
            "output_vocabulary": self.vocab,
        }


def _config_value(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _layers(config: Any) -> int:
    """Transformer layers: an encoder-decoder's encoder and decoder layers together."""
    if getattr(config, "is_encoder_decoder", False):
        encoder = _config_value(config, "encoder_layers", "num_layers")
        decoder = _config_value(config, "decoder_layers", "num_decoder_layers") or encoder
        return encoder + decoder
    return _config_value(config, "num_hidden_layers", "n_layer", "num_layers")


def measure(model: Any) -> ModelSize:
    """The counts of a built model (meta or real, with or without LoRA adapters)."""
    import torch

    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(core, "config", None)
    # A parameter shared by two modules (tied embeddings) is counted once, as the
    # optimizer sees it.
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    embedding_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            embedding_ids.update(id(p) for p in module.parameters())
    output = core.get_output_embeddings() if hasattr(core, "get_output_embeddings") else None
    vocab = 0
    if output is not None and getattr(output, "weight", None) is not None:
        vocab = int(output.weight.shape[0])
    linear = [
        m for m in model.modules() if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"
    ]
    matmul_ids = {id(m.weight) for m in linear}
    return ModelSize(
        architecture=type(core).__name__,
        parameters=total,
        trainable=trainable,
        embedding=sum(p.numel() for p in params if id(p) in embedding_ids),
        lora=hasattr(model, "peft_config"),
        layers=_layers(config),
        hidden=_config_value(config, "hidden_size", "n_embd", "d_model", "dim"),
        heads=_config_value(config, "num_attention_heads", "n_head", "encoder_attention_heads"),
        vocab=vocab,
        weight_bytes=sum(p.numel() * p.element_size() for p in params),
        trainable_bytes=sum(p.numel() * p.element_size() for p in params if p.requires_grad),
        matmul_parameters=sum(p.numel() for p in params if id(p) in matmul_ids),
        tied_output=(
            int(output.weight.numel())
            if output is not None and id(getattr(output, "weight", None)) in embedding_ids
            else 0
        ),
        lora_inputs=sum(
            int(m.in_features)
            for m in model.modules()
            if hasattr(m, "lora_A") and isinstance(getattr(m, "in_features", None), int)
        ),
        half_weights=any(p.dtype in (torch.bfloat16, torch.float16) for p in params),
        attention_dropout=_attention_dropout(config),
    )


def _attention_dropout(config: Any) -> float:
    for name in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0
