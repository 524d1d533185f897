"""A fixture plugin whose hooks raise: each failure must be one warning, never a crash."""

from collections.abc import Callable
from typing import Any

import nlptasks


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register("half-registered", "x:y", "desc", (), "one argument too many")


@nlptasks.hookimpl
def register_commands(cli: Any) -> None:
    raise RuntimeError("commands are broken")


@nlptasks.hookimpl
def on_event(event: dict[str, Any]) -> None:
    raise ConnectionError("tracker server is down")
