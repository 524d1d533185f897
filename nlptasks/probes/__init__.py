"""Probes of trained models (``nlptasks probe``): the built-in ``bias`` probe and the word
lists, swapper, measures and report it is made of.

This package is also the built-in plugin that registers the ``bias`` probe through the
``register_probes`` hook, exactly as a third-party package registers its own probes.
"""

from __future__ import annotations

from collections.abc import Callable

from nlptasks.plugins.hookspecs import hookimpl


@hookimpl
def register_probes(register: Callable[..., None]) -> None:
    register(
        "bias",
        "nlptasks.cli.probe:bias",
        description="Counterfactual identity-term swaps (gender, names, religion, nationality): "
        "how much the model's outputs change, per group pair, with bootstrap intervals.",
    )
