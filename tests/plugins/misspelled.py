"""A fixture plugin with a misspelled hook name; loading it must fail loudly."""

from collections.abc import Callable

import nlptasks


@nlptasks.hookimpl
def register_taks(register: Callable[..., None]) -> None:
    register("never", "x:y")
