"""Reading JSON lines (one JSON value a line): data files, predict's input, a run's
events.jsonl and predictions.jsonl. One reader, so that all of them number lines and skip
blank ones alike; each caller words its own errors, since each says what to do next."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


class JsonLineError(ValueError):
    """A line that is not JSON: its number (from 1) and the decoder's error."""

    def __init__(self, number: int, error: json.JSONDecodeError) -> None:
        super().__init__(f"line {number}: {error}")
        self.number = number
        self.error = error


def json_lines(lines: Iterable[str], skip_invalid: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each line of ``lines`` that is not blank, numbered from 1.

    A line that is not JSON raises :class:`JsonLineError`, or with ``skip_invalid`` is passed
    over (a log whose last line a killed process cut short)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if skip_invalid:
                continue
            raise JsonLineError(number, exc) from None
        yield number, value
