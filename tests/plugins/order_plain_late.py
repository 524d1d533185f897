"""An on_event fixture plugin for the hook call order: a plain implementation registered
after order_plain, which pluggy calls first (last registered, first called)."""

from typing import Any

import nlptasks

NAME = "order_plain_late"


@nlptasks.hookimpl
def on_event(event: dict[str, Any]) -> str:
    event.setdefault("calls", []).append(NAME)
    return NAME
