"""An on_event fixture plugin for the hook call order: a plain implementation (no
tryfirst/trylast), registered before order_plain_late and so called after it."""

from typing import Any

import nlptasks

NAME = "order_plain"


@nlptasks.hookimpl
def on_event(event: dict[str, Any]) -> str:
    event.setdefault("calls", []).append(NAME)
    return NAME
