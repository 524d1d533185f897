"""nlptasks-ner: named-entity recognition as an nlptasks plugin.

Token classification with any encoder, BIO (IOB2) tags, entity-level precision, recall and F1
as seqeval (the CoNLL scorer) computes them, data from the Hub (``conll2003``), CoNLL files or
jsonl. Targets are ``"module:attr"`` strings, so ``nlptasks list`` never imports torch for
them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nlptasks

TASK = "ner"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(
        TASK,
        "nlptasks_ner.task:NerTask",
        description="Named-entity recognition (BIO tags): seqeval entity F1/precision/recall.",
    )


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register(
        "tiny-ner",
        "nlptasks_ner.sample:load_tiny_ner",
        description="240 generated sentences with PER, LOC and ORG entities; offline.",
        tasks=(TASK,),
    )


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    nlptasks.register_recipe_folder(register, TASK, Path(__file__).parent / "recipes")
