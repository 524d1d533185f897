"""The state a run directory records in ``status.json``: running, failed, interrupted or
finished."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from nlptasks.runs.lock import in_use

STATUS_FILE = "status.json"


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
