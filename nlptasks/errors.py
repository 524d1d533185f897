"""User-facing errors.

Every error a user can cause is an :class:`NlpTasksError`; the CLI prints its message on one
line and exits with code 1 (no traceback unless ``--debug``). Messages say what failed, where,
and what to do next. None of these subclass ``KeyError``: ``str(KeyError(msg))`` is a repr.
"""

from __future__ import annotations

import difflib
import functools
import os
import socket
import urllib.request
from collections.abc import Iterable


class NlpTasksError(Exception):
    """Base class for errors caused by input, configuration or the environment."""


class UnknownNameError(NlpTasksError):
    """A task, recipe, model, dataset or metric name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        self.kind, self.name = kind, name
        message = f"Unknown {kind} '{clip(name)}'.{did_you_mean(name, known)}"
        if hint:
            message += f" {hint}"
        super().__init__(message)


class DuplicateNameError(NlpTasksError):
    """Two plugins registered the same name."""


class ConfigError(NlpTasksError):
    """A recipe with one or more problems; all of them are reported at once."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        if len(problems) == 1:
            message = f"Recipe {source}: {problems[0]}"
        else:
            # Still one line per problem, but never a traceback.
            listed = "; ".join(f"({i}) {p.rstrip('.')}" for i, p in enumerate(problems, 1))
            # A last problem ending in a question ("Did you mean 'x'?") takes no full stop.
            end = "" if listed.endswith(("?", "!")) else "."
            message = f"Recipe {source} has {len(problems)} problems: {listed}{end}"
        super().__init__(message)


class PluginError(NlpTasksError):
    """A plugin that is broken in a way strict mode or hook validation refuses."""


class DataError(NlpTasksError):
    """A dataset that cannot be loaded or does not have the expected shape."""


class ModelError(NlpTasksError):
    """A model that cannot be loaded or does not fit the task."""


class RunInterrupted(NlpTasksError):
    """A run stopped by SIGINT or SIGTERM after saving what it had.

    ``exit_code`` follows the shell: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, exit_code: int = 130) -> None:
        self.exit_code = exit_code
        super().__init__(message)


class RunDirectoryError(NlpTasksError):
    """A run directory that exists already (runs never overwrite earlier results)."""


SHOWN_CHARACTERS = 80
"""How much of a user's value an error message quotes (a value may be megabytes long)."""


def clip(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """``str(value)`` cut to ``limit`` characters with an ellipsis in the middle: every
    message that quotes what a user gave (a key, a value, a name, a path) quotes it through
    this. The middle, because a long path's end (the file name) is as telling as its start."""
    text = value if isinstance(value, str) else _safe_str(value)
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def clip_repr(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)`` cut like :func:`clip`."""
    return clip(_safe_repr(value), limit)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except ValueError:  # an int past Python's digit limit has no decimal text
        return _safe_repr(value)


def _safe_repr(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return repr(value)
        except ValueError:
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (list, tuple, dict)) and len(value) > SHOWN_CHARACTERS:
        # Never render a huge container in full only to cut it (megabytes, see clip).
        head = list(value.items() if isinstance(value, dict) else value)[:SHOWN_CHARACTERS]
        return f"{repr(head)[:-1]}, … ({len(value)} items)"
    return repr(value)


def shorten_message(message: str, limit: int = 1000) -> str:
    """A message as the CLI prints it: cut in the middle past ``limit`` characters (the
    problem is said first and the fix last; a value quoted whole in between must not push
    them apart by megabytes)."""
    if len(message) <= limit:
        return message
    half = limit // 2
    return f"{message[:half]} … {message[-half:]}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no Hub access (so a failed load says why)."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


@functools.cache
def hub_unreachable(timeout: float = 3.0) -> bool:
    """True when the Hub is not offline by choice but cannot be reached: a quick TCP probe,
    so that a machine without network fails in seconds, not after a minute of retries."""
    if hub_offline() or urllib.request.getproxies():
        return False  # behind a proxy only the HTTP client itself can tell
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return False
    except OSError:
        return True


OFFLINE_HINT = "Set HF_HUB_OFFLINE=1 to work offline"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest known name, or an empty string."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" Did you mean '{matches[0]}'?" if matches else ""
