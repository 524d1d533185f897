"""A fixture plugin whose lazy targets have typos: one in the attribute, one in the module."""

from collections.abc import Callable

import nlptasks


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register("typo-attr", "nlptasks.builtins.sentiment.task:SentimentTsk")
    register("typo-module", "nlptasks.builtins.sentimnt.task:SentimentTask")
