"""The lock of a run directory, and the status it records (running, failed, interrupted,
finished).

A process that writes into a run (training from its first file to its last, ``resume``)
holds the run's lock exclusively; one that only reads it (``export``, ``eval``) holds it
shared; ``eval`` writes its card lines under a second, short lock (:func:`card_lock`). Either
kind is refused with one line while the other holds it, so no two processes ever write into
one run and nothing reads a run while it changes. The lock is ``flock`` on ``RUN/.lock``: the
kernel drops it when the holder dies, so a killed run is never left locked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlptasks.errors import NlpTasksError

LOCK_FILE = ".lock"
CARD_LOCK_FILE = ".card.lock"
STATUS_FILE = "status.json"


class RunInUseError(NlpTasksError):
    """Another nlptasks process holds the run (training, resuming or writing its card)."""


@contextlib.contextmanager
def run_lock(folder: Path, exclusive: bool = True, doing: str = "write into it") -> Iterator[None]:
    """Hold ``folder``'s lock (shared for readers) or raise :class:`RunInUseError`.

    Only the launcher's rank 0 locks: the other processes of one torchrun follow it (flock
    locks belong to an open file, so they would refuse each other)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    try:
        handle = (folder / LOCK_FILE).open("a+")
    except OSError:
        # A read-only run (an archive, a mounted copy) cannot be written into by anyone.
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunInUseError(
            f"Run '{folder}' is in use by another nlptasks process (training, resuming or "
            f"evaluating it), so this command cannot {doing}. Wait for that process to end."
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextlib.contextmanager
def card_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s card lock (``RUN/.card.lock``), waiting for it: evaluations of one
    model run side by side under the shared run lock, and only their (short) writes of
    README.md and evaluations.jsonl take turns. A separate file, so it never conflicts with
    the shared run lock its holder has."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with (folder / CARD_LOCK_FILE).open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def in_use(folder: Path) -> bool:
    """Whether a process holds ``folder``'s run lock exclusively (training or resuming it)."""
    try:
        # Read-only: asking never creates a lock file in a folder (leaderboard reads any).
        handle = (folder / LOCK_FILE).open("rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def run_of(model_dir: str | Path) -> Path | None:
    """The run directory a model folder lies in (``RUN/model``, ``RUN/checkpoints/NAME``), or
    None for a folder outside a run."""
    folder = Path(model_dir).expanduser().resolve()
    for candidate in (folder.parent, folder.parent.parent):
        if (candidate / "recipe.yaml").is_file() and (candidate / "events.jsonl").is_file():
            return candidate
    return None


def enclosing_run(path: str | Path) -> Path | None:
    """The run directory ``path`` is (or lies inside), if any: a run holds recipe.yaml and
    events.jsonl."""
    folder = Path(path).expanduser().resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / "recipe.yaml").is_file() and (candidate / "events.jsonl").is_file():
            return candidate
    return None


def write_status(folder: Path, state: str, **details: Any) -> None:
    """Record the run's state in ``status.json`` (atomically): ``running``, ``failed`` (with
    the error), ``interrupted`` or ``finished``."""
    from nlptasks.runs.rundir import write_json

    at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_json(folder / STATUS_FILE, {"state": state, "at": at, **details})


def read_status(folder: Path) -> dict[str, Any]:
    """The run's ``status.json``; empty for a run from before it existed or a broken file.

    A run recorded ``running`` whose lock nobody holds reads ``interrupted``: its process
    died without a word (SIGKILL, the machine went down), and the kernel dropped its lock."""
    try:
        found = json.loads((folder / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    if found.get("state") == "running" and not in_use(folder):
        return {**found, "state": "interrupted", "error": "its process ended without a word "
                "(killed, or the machine went down)"}  # fmt: skip
    return found


def failure(folder: Path) -> str | None:
    """How a failed run failed (``after step 3 (the error)``), or None when it did not."""
    status = read_status(folder)
    if status.get("state") != "failed":
        return None
    step = status.get("step")
    where = f"after step {step}" if isinstance(step, int) else "before its first logged step"
    error = str(status.get("error") or "no error recorded")
    # Our own errors read as sentences; a library's keeps its class name.
    error = error.removeprefix("NlpTasksError: ").rstrip(".")
    return f"{where} ({error})"


def last_step(folder: Path) -> int | None:
    """The last optimizer step events.jsonl records, or None before the first one."""
    step = None
    try:
        with (folder / "events.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if '"step"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict) and isinstance(event.get("step"), int):
                        step = event["step"]
    except OSError:
        return None
    return step
