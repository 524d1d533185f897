"""Checkpoints of a sharded model (FSDP2): every process writes its own shards with torch's
distributed checkpoint (DCP), and reads back exactly its shards.

No pickle anywhere: the shards are written by DCP's ``HuggingFaceStorageWriter``, one
safetensors file per process (``shards/shard-0000R-model-00001-of-00001.safetensors``), whose
JSON header holds each tensor's name, shape, dtype and offsets in the full tensor; the
reader (``HuggingFaceStorageReader``) builds its plan from those headers alone. DCP's default
``FileSystemWriter`` would pickle a ``.metadata`` file instead, which is why it is not used.
The state's structure (optimizer hyperparameters, parameter names) is JSON (``shards.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SHARDS = "shards"
STRUCTURE = "shards.json"
DEEPSPEED = "deepspeed"
"""DeepSpeed's own checkpoint folder: its files are ``torch.save`` pickles, so they are read
only after the manifest's SHA-256 of every file matched (``checkpoints.find_resumable``)."""


def is_sharded_checkpoint(path: Path) -> bool:
    return (path / SHARDS).is_dir() or (path / DEEPSPEED).is_dir()


def _deepspeed_engine(model: torch.nn.Module) -> Any:
    return (
        model if hasattr(model, "save_checkpoint") and hasattr(model, "zero_optimization") else None
    )


def save(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Write this process's shards of model and optimizer state under ``folder`` (every
    process calls it: it is a collective); the main process writes the structure."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    engine = _deepspeed_engine(model)
    if engine is not None:
        # Model, optimizer partitions and DeepSpeed's own counters, each process its part.
        engine.save_checkpoint(str(folder / DEEPSPEED), tag="state")
        return
    tensors: dict[str, torch.Tensor] = {}
    structure = _split(_states(model, optimizer), "", tensors)
    dcp.save(
        tensors,
        storage_writer=HuggingFaceStorageWriter(str(folder / SHARDS), save_distributed=True),
    )
    if dist.get_rank() == 0:
        (folder / STRUCTURE).write_text(json.dumps(structure))


def load(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Read this process's shards from ``folder`` into ``model`` (and ``optimizer``): every
    process calls it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import set_state_dict

    engine = _deepspeed_engine(model)
    if engine is not None:
        engine.load_checkpoint(
            str(folder / DEEPSPEED),
            tag="state",
            load_optimizer_states=optimizer is not None,
            load_lr_scheduler_states=False,  # the trainer's scheduler resumes from JSON
        )
        return
    # The current states give the targets: tensors of the right shapes, sharded the same way;
    # DCP copies the saved shards into them in place.
    tensors: dict[str, torch.Tensor] = {}
    _split(_states(model, optimizer), "", tensors)
    dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(folder / SHARDS)))
    # The saved structure, of the parts read: the model alone when there is no optimizer.
    saved = dict(_join_names(json.loads((folder / STRUCTURE).read_text())))
    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, _join(saved["model"], tensors))
        return
    set_state_dict(
        model,
        optimizer,
        model_state_dict=_join(saved["model"], tensors),
        optim_state_dict=_join(saved["optimizer"], tensors),
    )


def _states(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state}


def _split(
    node: Any,
    name: str,
    tensors: dict[str, torch.Tensor],
    seen: dict[tuple[Any, ...], str] | None = None,
) -> Any:
    """The structure of ``node`` as JSON data, each tensor replaced by its name in
    ``tensors`` (dotted paths: ``model.bert.pooler.dense.weight``). A tensor met twice (tied
    weights: GPT-2's LM head is its embeddings) is stored once, the second name an alias."""
    seen = {} if seen is None else seen
    if isinstance(node, torch.Tensor):
        memory = _memory(node)
        if memory is not None and memory in seen:
            return {"__tensor__": seen[memory]}
        if memory is not None:
            seen[memory] = name
        tensors[name] = node
        return {"__tensor__": name}
    prefix = f"{name}." if name else ""
    if isinstance(node, dict):
        return {
            "__dict__": [[k, _split(v, f"{prefix}{k}", tensors, seen)] for k, v in node.items()]
        }
    if isinstance(node, tuple):
        return {"__tuple__": [_split(v, f"{prefix}{i}", tensors, seen) for i, v in enumerate(node)]}
    if isinstance(node, list):
        return [_split(v, f"{prefix}{i}", tensors, seen) for i, v in enumerate(node)]
    return node


def _memory(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """Where a tensor's values (a DTensor's: its local shard's) live, to find tied weights."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    if local.numel() == 0:
        return None
    pointer = local.untyped_storage().data_ptr()
    return (str(local.device), pointer, local.storage_offset(), tuple(local.shape))


def _join_names(structure: Any) -> list[tuple[str, Any]]:
    """The top-level parts (``model``, ``optimizer``) of a saved structure."""
    return [(name, part) for name, part in structure["__dict__"]]


def _join(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__tuple__" in node:
            return tuple(_join(v, tensors) for v in node["__tuple__"])
        return {k: _join(v, tensors) for k, v in node["__dict__"]}
    if isinstance(node, list):
        return [_join(v, tensors) for v in node]
    return node


def consolidated_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The model's whole weights from a sharded checkpoint, in this one process (no process
    group needed): for another number of processes, or for a plain model folder."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = HuggingFaceStorageReader(str(folder / SHARDS))
    metadata = reader.read_metadata()
    weights = {
        key: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in metadata.state_dict_metadata.items()
        if key.startswith("model.") and isinstance(meta, TensorStorageMetadata)
    }
    dcp.load(weights, storage_reader=reader, no_dist=True)
    return {key.removeprefix("model."): value for key, value in weights.items()}
