"""Training checkpoints that resume exactly: model, optimizer, scheduler, every RNG, and the
position in the data.

A checkpoint is a folder (``checkpoints/last``, ``checkpoints/best``) that is also a normal
model folder (``save_pretrained`` model and tokenizer), plus:

- ``optimizer.safetensors`` + ``optimizer.json``, ``scheduler.json``: the states, split into
  tensors (safetensors) and structure (JSON) so that nothing is ever unpickled;
- ``rng-RANK.safetensors`` + ``rng-RANK.json``: python, numpy, torch and CUDA generators of
  each process;
- ``trainer_state.json``: step, epoch and window index, counters, the best-checkpoint record,
  and a manifest of every file with its size and SHA-256, written last.

A sharded model (FSDP) is saved as shards instead: ``shards/`` holds each process's part of
the weights and optimizer states, written by every process (see :mod:`sharded`), and the
folder keeps the model's config and tokenizer; the run's final ``model/`` is whole.

A checkpoint is written under a temporary name and swapped in by renames, so a kill at any
moment leaves the previous one (or the new one) whole; :func:`find_resumable` checks the
manifest and skips a partial or corrupt checkpoint for the next good one, saying so.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from nlptasks.errors import NlpTasksError
from nlptasks.training import sharded

STATE_FILE = "trainer_state.json"
# What a resumed trainer reads from STATE_FILE.
_RESUME_KEYS = {"step", "epoch", "position", "examples_seen", "loss_sum", "best", "files"}


def save(
    folder: Path,
    kind: str,
    accelerator: Any,
    write_model: Callable[[Path], None],
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    state: dict[str, Any],
    write_shards: Callable[[Path], None] | None = None,
) -> Path | None:
    """Write checkpoint ``folder/kind`` on every process (each adds its RNG file); returns
    its path on the main process. ``write_model(path)`` saves model and tokenizer (the main
    process); ``write_shards(path)``, for a sharded model, the weights and optimizer states
    (every process)."""
    target, tmp = folder / kind, folder / f".{kind}.tmp"
    main = accelerator.is_main_process
    accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if not tmp.is_dir():  # made by the main process: another node's disk
        raise NlpTasksError(
            f"Process {accelerator.process_index} cannot see {tmp}, which the main process "
            f"made: the output directory must be on a filesystem every node sees."
        )
    _save_tree(tmp / f"rng-{accelerator.process_index}", _rng_state())
    hashed: dict[str, Any] = {}
    if write_shards is not None:
        write_shards(tmp)
        hashed = _hash_own_shards(tmp, accelerator)
    accelerator.wait_for_everyone()
    if main:
        write_model(tmp)
        if optimizer is not None and write_shards is None:
            _save_tree(tmp / "optimizer", optimizer.state_dict())
        if scheduler is not None:
            (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        if getattr(accelerator, "scaler", None) is not None:  # fp16: its loss scale resumes too
            (tmp / "scaler.json").write_text(json.dumps(accelerator.scaler.state_dict()))
        # Size and SHA-256 of every file: a file altered in place keeps its size.
        missing = [name for name in hashed if not (tmp / name).is_file()]
        if missing:
            raise NlpTasksError(
                f"Shards written by other processes are not in {tmp} ({missing[0]}): the "
                f"output directory must be on a filesystem every node sees."
            )
        files = {
            name: hashed.get(name) or _fingerprint(tmp / name)
            for name in sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*"))
            if (tmp / name).is_file()
        }
        manifest = {**state, "num_processes": accelerator.num_processes, "files": files}
        (tmp / STATE_FILE).write_text(json.dumps(manifest, indent=2, default=str))
        swap_in(tmp, target)
    accelerator.wait_for_everyone()
    return target if main else None


def _hash_own_shards(tmp: Path, accelerator: Any) -> dict[str, Any]:
    """Every process fingerprints the shard files it wrote, at the same time (hashing a large
    model's shards one after another on the main process would outlast the collective
    timeouts of the processes waiting for it); the fingerprints of all, by relative path."""
    from accelerate.utils import gather_object

    # torch DCP's HuggingFaceStorageWriter numbers each process's file from 1.
    own = sorted(tmp.glob(f"{sharded.SHARDS}/shard-{accelerator.process_index + 1:05d}-*"))
    mine = [(p.relative_to(tmp).as_posix(), _fingerprint(p)) for p in own]
    if accelerator.num_processes == 1:
        return dict(mine)
    return dict(gather_object(mine))


def swap_in(tmp: Path, target: Path) -> None:
    """Replace folder ``target`` by the finished folder ``tmp``."""
    # Rename, never delete first: at every moment one whole checkpoint exists under `target`
    # or `.KIND.old` (find_resumable looks at both).
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def keep_numbered(last: Path, step: int, limit: int) -> None:
    """Copy ``last`` to ``step-N`` beside it and keep only the ``limit`` newest copies."""
    copy = last.with_name(f"step-{step}")
    if not copy.exists():
        tmp = last.with_name(f".step-{step}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(last, tmp)
        tmp.rename(copy)
    numbered = sorted(
        (p for p in last.parent.glob("step-*") if p.name[5:].isdigit()),
        key=lambda p: int(p.name[5:]),
    )
    for old in numbered[:-limit]:
        shutil.rmtree(old, ignore_errors=True)


def find_resumable(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The newest whole checkpoint under ``folder`` (``last``, an interrupted swap's
    ``.last.old``, then ``best``); a partial or corrupt one is skipped with a warning."""
    repair(folder)
    found: list[tuple[int, Path, dict[str, Any]]] = []
    unusable: list[str] = []
    numbered = sorted(p.name for p in folder.glob("step-*") if p.is_dir())
    for name in ("last", "best", *numbered):
        path = folder / name
        if not path.is_dir():
            continue
        state, problem = _check(path)
        if state is None:
            unusable.append(f"{name} ({problem})")
            continue
        found.append((int(state["step"]), path, state))
    if not found and unusable:
        raise NlpTasksError(
            f"No usable checkpoint in {folder}: {'; '.join(unusable)}. Start a new run instead."
        )
    if not found:
        raise NlpTasksError(
            f"No usable checkpoint in {folder} (the run saved none, or train.save_checkpoints "
            f"was false). Start a new run instead."
        )
    step, path, state = max(found, key=lambda item: item[0])
    if unusable:
        warnings.warn(
            f"Skipped unusable checkpoints: {'; '.join(unusable)}. Resuming from {path.name} "
            f"(step {step}).",
            stacklevel=2,
        )
    return path, state


def repair(folder: Path) -> None:
    """Finish a swap a kill interrupted: ``.KIND.old`` becomes ``KIND`` again when ``KIND``
    is missing (the new one was never renamed in); stale temporary folders go."""
    for old in folder.glob(".*.old"):
        target = folder / old.name[1:-4]
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(target)
    for tmp in folder.glob(".*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def check_whole(path: Path) -> dict[str, Any]:
    """The state of checkpoint ``path``, or a one-line error saying why it is not whole."""
    state, problem = _check(path)
    if state is None:
        raise NlpTasksError(f"Checkpoint {path} is not whole: {problem}.")
    return state


def _check(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None, f"no readable {STATE_FILE}"
    if not isinstance(state, dict) or not set(state) >= _RESUME_KEYS:
        return None, f"{STATE_FILE} is not from a resumable checkpoint"
    files = state.get("files")
    if not isinstance(files, dict):
        return None, f"{STATE_FILE} lists no files"
    for name, recorded in files.items():
        file = path / name
        # Checkpoints from before content hashes recorded the size alone.
        size = recorded.get("size") if isinstance(recorded, dict) else recorded
        if not file.is_file() or file.stat().st_size != size:
            return None, f"{name} is missing or truncated"
        if isinstance(recorded, dict) and _sha256(file) != recorded.get("sha256"):
            return None, f"{name} was altered after it was saved (its SHA-256 differs)"
    for file in path.rglob("*.safetensors"):
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as exc:
            return None, f"{file.name} is corrupt: {exc}"
    return state, ""


def _fingerprint(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def load_into(
    path: Path,
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
) -> None:
    """Restore model, optimizer, scheduler and this process's RNG state from ``path``."""
    if sharded.is_sharded_checkpoint(path):
        sharded.load(path, model, optimizer)
    else:
        load_weights(path, accelerator, model)
        if optimizer is not None:
            optimizer.load_state_dict(_load_tree(path / "optimizer"))
    if scheduler is not None:
        scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and (path / "scaler.json").is_file():
        scaler.load_state_dict(json.loads((path / "scaler.json").read_text()))
    rng = path / f"rng-{accelerator.process_index}"
    if rng.with_suffix(".json").is_file():
        _set_rng_state(_load_tree(rng))
    else:
        warnings.warn(
            f"{path} has no random state for process {accelerator.process_index} (it was saved "
            f"with another number of processes): dropout will differ from an unbroken run.",
            stacklevel=2,
        )


def load_weights(path: Path, accelerator: Any, model: torch.nn.Module) -> None:
    """Load a checkpoint's model weights into ``model`` (unwrapped from DDP). A model with LoRA
    adapters was saved as its adapter (``adapter_model.safetensors``): the frozen base weights
    never change. A sharded checkpoint is read by every process, each its own shards."""
    if sharded.is_sharded_checkpoint(path):
        sharded.load(path, model, None)
        return
    unwrapped = accelerator.unwrap_model(model)
    adapter = path / "adapter_model.safetensors"
    if adapter.is_file() and hasattr(unwrapped, "peft_config"):
        from peft import set_peft_model_state_dict

        outcome = set_peft_model_state_dict(unwrapped, load_file(str(adapter)))
        extra = list(getattr(outcome, "unexpected_keys", []))
        if extra:
            raise NlpTasksError(f"Checkpoint {adapter} does not match the model: {extra[:3]}.")
        return
    weights = path / "model.safetensors"
    # On the CPU first ("cpu:0", what a distributed CPU run calls its device, is no device
    # to safetensors); load_state_dict copies onto the model's device.
    state = load_file(str(weights))
    # strict=False: tied weights (e.g. decoder = embeddings) are saved once.
    unexpected = unwrapped.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise NlpTasksError(f"Checkpoint {weights} does not match the model: {unexpected[:3]}.")


# ------------------------------------------------------------------- states without pickle
def _save_tree(stem: Path, tree: Any) -> None:
    """``stem.safetensors`` holds the tensors of a nested state, ``stem.json`` the rest."""
    tensors: dict[str, torch.Tensor] = {}

    def strip(node: Any) -> Any:
        if isinstance(node, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = node.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(node, dict):
            return {"__dict__": [[strip(k), strip(v)] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"__tuple__": [strip(v) for v in node]}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    structure = strip(tree)
    save_file(tensors, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(json.dumps(structure))


def _load_tree(stem: Path) -> Any:
    tensors = load_file(str(stem.with_suffix(".safetensors")))

    def build(node: Any) -> Any:
        if isinstance(node, dict):
            if "__tensor__" in node:
                return tensors[node["__tensor__"]]
            if "__tuple__" in node:
                return tuple(build(v) for v in node["__tuple__"])
            return {build(k): build(v) for k, v in node["__dict__"]}
        if isinstance(node, list):
            return [build(v) for v in node]
        return node

    return build(json.loads(stem.with_suffix(".json").read_text()))


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys).copy()), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
