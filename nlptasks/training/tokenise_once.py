"""Tokenise once per node: the main process of each node turns the splits into features and
saves them; the node's other processes wait for it, then load them from disk.

Every process tokenising the whole set is what makes large multi-GPU runs hit the 30-minute
collective timeout before the first step. The wait here has its own timeout
(``distributed.data_timeout_minutes``) and an error that names what was waited for; a main
process that fails says why on every process instead of leaving them waiting.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import datasets

from nlptasks.errors import NlpTasksError, first_line

STEP = "tokenising the train and eval data into features"


def features_once(
    accelerator: Any,
    splits: Mapping[str, datasets.Dataset],
    tokenise: Callable[[datasets.Dataset], datasets.Dataset],
    timeout_minutes: float,
) -> dict[str, datasets.Dataset]:
    """``tokenise`` applied to each split, on the main process of each node only; the others
    load its result (a folder of the node's local disk, or of any disk the node sees)."""
    if accelerator.num_processes == 1:
        return {name: tokenise(split) for name, split in splits.items()}
    import torch.distributed as dist

    # Its own gloo group: a barrier with our timeout, whatever the training backend.
    group = dist.new_group(backend="gloo", timeout=timedelta(minutes=timeout_minutes))
    problem, failure = "", None
    folder = _cache_folder() if accelerator.is_local_main_process else Path()
    if accelerator.is_local_main_process:
        try:
            _write(folder, {name: tokenise(split) for name, split in splits.items()})
        except Exception as exc:  # said on every process below, then raised here
            failure = exc
            problem = first_line(exc)
            if not isinstance(exc, NlpTasksError):
                problem = f"{type(exc).__name__}: {problem}"
    reports: list[Any] = [None] * accelerator.num_processes
    try:
        dist.monitored_barrier(group=group, timeout=timedelta(minutes=timeout_minutes))
        dist.all_gather_object(reports, (socket.gethostname(), str(folder), problem), group=group)
    except RuntimeError as exc:
        waited_for = (
            "the other processes"
            if accelerator.is_local_main_process
            else "the main process of its node"
        )
        raise NlpTasksError(
            f"Process {accelerator.process_index} waited {timeout_minutes:g} minutes for "
            f"{waited_for} at {STEP}, in vain ({first_line(exc)}). Raise "
            f"distributed.data_timeout_minutes, or tokenise a smaller set "
            f"(data.max_train_examples)."
        ) from exc
    finally:
        dist.destroy_process_group(group)
    failed = [p for _, _, p in reports if p]
    if failed:
        if accelerator.is_local_main_process and failure is not None:
            raise failure
        raise NlpTasksError(f"The main process of a node failed at {STEP}: {failed[0]}")
    if accelerator.is_local_main_process:
        return _read(folder, splits)
    # The features of this node's main process (its rank: this one's minus the local rank).
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    _, main_folder, _ = reports[accelerator.process_index - local_rank]
    return _read(Path(main_folder), splits)


def _cache_folder() -> Path:
    """A new folder for this run's features under the datasets cache, never reused (a task's
    code may change between runs on the same data). The folders of this host's runs whose
    process has ended are removed: their features were only ever that run's."""
    root = Path(datasets.config.HF_DATASETS_CACHE) / "nlptasks-features"
    host = socket.gethostname()
    for old in root.glob(f"{host}-*") if root.is_dir() else []:
        pid = old.name[len(host) + 1 :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return root / f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _write(folder: Path, features: Mapping[str, datasets.Dataset]) -> None:
    for name, dataset in features.items():
        dataset.save_to_disk(str(folder / name))


def _read(folder: Path, splits: Mapping[str, datasets.Dataset]) -> dict[str, datasets.Dataset]:
    return {name: datasets.load_from_disk(str(folder / name)) for name in splits}
