"""Reading a run's ``events.jsonl`` back (``nlptasks.events`` writes it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlptasks.jsonl import json_lines

EVENTS_FILE = "events.jsonl"


def read_events(folder: Path, mentioning: str = "") -> Iterator[dict[str, Any]]:
    """The events of ``folder``'s events.jsonl, in order; only the lines that contain
    ``mentioning`` are parsed (a long run logs many). A line that is not a JSON object (the
    last one of a killed process) is passed over; a file that cannot be read raises
    ``OSError``."""
    with (folder / EVENTS_FILE).open(encoding="utf-8") as handle:
        lines = (line for line in handle if mentioning in line)
        for _, event in json_lines(lines, skip_invalid=True):
            if isinstance(event, dict):
                yield event


def last_step(folder: Path) -> int | None:
    """The last optimizer step events.jsonl records, or None before the first one."""
    step = None
    try:
        for event in read_events(folder, mentioning='"step"'):
            if isinstance(event.get("step"), int):
                step = event["step"]
    except OSError:
        return None
    return step
