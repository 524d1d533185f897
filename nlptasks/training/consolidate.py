"""A sharded (FSDP) checkpoint as a plain model folder, in one process: for another number of
processes, or to evaluate a checkpoint (``nlptasks consolidate``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import save_file

from nlptasks.errors import NlpTasksError
from nlptasks.training import sharded
from nlptasks.training.checkpoints import check_whole


def consolidate(checkpoint: Path, destination: Path) -> Path:
    """Write the sharded ``checkpoint`` as a plain model folder at ``destination`` (new):
    the whole weights as ``model.safetensors``, with the checkpoint's config and tokenizer."""
    if not (checkpoint / sharded.SHARDS).is_dir():
        raise NlpTasksError(
            f"{checkpoint} is not a sharded (FSDP) checkpoint: it has no {sharded.SHARDS}/ folder. "
            f"Point at RUN/checkpoints/last or best of a run trained with distributed.strategy="
            f"fsdp."
        )
    if destination.exists():
        raise NlpTasksError(f"{destination} exists already; choose a new folder.")
    check_whole(checkpoint)  # a torn or altered shard is refused before it is read
    weights = sharded.consolidated_weights(checkpoint)
    tmp = destination.with_name(f".{destination.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    skipped = {sharded.STRUCTURE, "trainer_state.json", "scheduler.json", "scaler.json"}
    for file in checkpoint.iterdir():
        if file.is_file() and file.name not in skipped and not file.name.startswith("rng-"):
            shutil.copy2(file, tmp / file.name)
    save_file(
        {k: v.contiguous() for k, v in weights.items()},
        str(tmp / "model.safetensors"),
        metadata={"format": "pt"},
    )
    tmp.rename(destination)
    return destination
