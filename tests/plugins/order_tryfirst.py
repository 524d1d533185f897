"""An on_event fixture plugin for the hook call order: an implementation marked
tryfirst, which pluggy calls before all others."""

from typing import Any

import nlptasks

NAME = "order_tryfirst"


@nlptasks.hookimpl(tryfirst=True)
def on_event(event: dict[str, Any]) -> str:
    event.setdefault("calls", []).append(NAME)
    return NAME
