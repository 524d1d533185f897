"""A fixture plugin that registers a task name the built-in sentiment plugin already has."""

from collections.abc import Callable

import nlptasks


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register("sentiment", "somewhere:Else")
