"""An on_event fixture plugin for the hook call order: an implementation marked trylast
(pluggy calls it after all others) and a wrapper, which pluggy runs around the hook call and
nlptasks' own loop must not call as if it were an implementation."""

from collections.abc import Generator
from typing import Any

import nlptasks

NAME = "order_trylast"


@nlptasks.hookimpl(trylast=True)
def on_event(event: dict[str, Any]) -> str:
    event.setdefault("calls", []).append(NAME)
    return NAME


@nlptasks.hookimpl(wrapper=True, specname="on_event")
def wrap_on_event(event: dict[str, Any]) -> Generator[None, list[str], list[str]]:
    event.setdefault("calls", []).append("wrapper")
    return (yield)
