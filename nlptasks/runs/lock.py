"""The lock of a run directory.

A process that writes into a run (training from its first file to its last, ``resume``)
holds the run's lock exclusively; one that only reads it (``export``, ``eval``) holds it
shared; ``eval`` writes its card lines under a second, short lock (:func:`card_lock`). Either
kind is refused with one line while the other holds it, so no two processes ever write into
one run and nothing reads a run while it changes. The lock is ``flock`` on ``RUN/.lock``: the
kernel drops it when the holder dies, so a killed run is never left locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from nlptasks.errors import NlpTasksError

LOCK_FILE = ".lock"
CARD_LOCK_FILE = ".card.lock"


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
