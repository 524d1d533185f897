"""Output heads in float32 under mixed precision: what every prediction and metric is made of.

Under autocast (``train.mixed_precision: bf16``) every matmul runs in bf16, the output head's
too, so logits, regression scores and the probabilities made from them keep bf16's 8 bits of
mantissa (a score of 2.8812 comes out as 2.875). :func:`keep_heads_float32` makes the model's
output head (the modules beside its body: ``classifier``, ``score``, ``qa_outputs``,
``lm_head``, ...) run outside autocast on float32 inputs whenever no gradient is taken: in
evaluation, ``predict`` and generation. The body still runs in bf16, and training steps are
unchanged (their head stays in bf16, so training speed is too).
"""

from __future__ import annotations

from typing import Any

import torch

# Per head, the autocast contexts its pre-hook left (one per call in flight), for its hook.
_MARK = "_nlptasks_autocast_stack"

# Heads of models whose body is not an attribute named by ``base_model_prefix`` (T5 keeps
# ``encoder`` / ``decoder`` at the top) or of a plugin's own model class.
_HEAD_NAMES = ("classifier", "score", "qa_outputs", "classification_head", "lm_head")


def keep_heads_float32(model: torch.nn.Module) -> list[str]:
    """Make ``model``'s output heads run in float32 outside autocast when no gradient is
    taken; idempotent. Returns the heads' names (empty for a model without a head).

    Forward hooks, not a patched ``forward``: hooks are module-level functions kept in the
    module's hook dicts, so a deep copy of the model (peft's ``modules_to_save`` makes one)
    runs its own head, and the model still pickles.
    """
    inner = unwrapped(model)
    heads = output_heads(inner)
    for head in heads.values():
        if _autocast_off not in head._forward_pre_hooks.values():
            head.register_forward_pre_hook(_autocast_off, with_kwargs=True)
            # always_call: autocast is restored even when the head's forward raises.
            head.register_forward_hook(_autocast_back, always_call=True)
    return list(heads)


# Run eagerly under torch.compile: traced, the pre-hook's autocast.__enter__ becomes part of
# the graph and the hook's __exit__ finds no state ("'autocast' object has no attribute 'prev'").
@torch.compiler.disable
def _autocast_off(
    head: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Before the head: leave autocast and cast half-precision inputs to float32."""
    weight = next(head.parameters(), None)
    stack = head.__dict__.setdefault(_MARK, [])
    if (
        torch.is_grad_enabled()  # a training step: as fast as before
        or weight is None
        or weight.dtype != torch.float32  # a model loaded in bf16 has no float32 to give
        or not torch.is_autocast_enabled(weight.device.type)
    ):
        stack.append(None)
        return None
    off = torch.autocast(device_type=weight.device.type, enabled=False)
    off.__enter__()
    stack.append(off)
    return _to_float32(args), _to_float32(kwargs)


@torch.compiler.disable
def _autocast_back(head: torch.nn.Module, args: Any, output: Any) -> None:
    """After the head: back to the autocast state the body runs in."""
    stack = head.__dict__.get(_MARK)
    off = stack.pop() if stack else None
    if off is not None:
        off.__exit__(None, None, None)


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP / DataParallel, torch.compile and peft wrappers."""
    seen: set[int] = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner: object = model
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            inner = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):  # torch.compile
            inner = model._orig_mod
        elif callable(base := getattr(model, "get_base_model", None)):  # peft
            inner = base()
        if isinstance(inner, torch.nn.Module):
            model = inner
    return model


def output_heads(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The modules that turn the body's hidden states into outputs, by attribute name.

    A transformers model keeps its body under ``base_model_prefix`` (``bert``, ``model``,
    ``transformer``): every other top-level module with weights is head (BERT's
    ``classifier``, DistilBERT's ``pre_classifier`` too, RoBERTa's whole classification
    head). Without such a body: the output embeddings and the usual head names.
    """
    prefix = getattr(model, "base_model_prefix", "")
    body = getattr(model, prefix, None) if prefix else None
    if isinstance(body, torch.nn.Module) and body is not model:
        return {
            name: child
            for name, child in model.named_children()
            if child is not body and any(True for _ in child.parameters())
        }
    heads: dict[str, torch.nn.Module] = {}
    get_output = getattr(model, "get_output_embeddings", None)
    found = get_output() if callable(get_output) else None
    for name in _HEAD_NAMES:
        child = getattr(model, name, None)
        if isinstance(child, torch.nn.Module) and child is not model:
            heads[name] = child
    if isinstance(found, torch.nn.Module) and all(found is not h for h in heads.values()):
        heads["output_embeddings"] = found
    return heads


def _to_float32(value: Any) -> Any:
    """Half-precision tensors (in tuples, lists and dicts too) as float32; the rest as is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
    if isinstance(value, tuple):
        return tuple(_to_float32(v) for v in value)
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    return value
