"""One of two fixture plugins (clash_a, clash_b) that register the same model preset name and
the same metric for one task: only those names may fail, never the built-in sentiment."""

from collections.abc import Callable

import nlptasks


@nlptasks.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register("clash-model", lambda: "/models/clash-b")


@nlptasks.hookimpl
def register_metrics(register: Callable[..., None]) -> None:
    register(
        "kappa", "nlptasks.builtins.sentiment.metrics:Accuracy", tasks=("clash-task", "other-task")
    )
