"""One of two fixture plugins (clash_a, clash_b) that register the same model preset name: only
that name may fail, never the built-in sentiment."""

from collections.abc import Callable

import nlptasks


@nlptasks.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register("clash-model", lambda: "/models/clash-a")
