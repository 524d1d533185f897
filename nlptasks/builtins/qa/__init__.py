"""The built-in ``qa`` task: extractive question answering, SQuAD v1.1 and v2.0.

Windows over long contexts, span post-processing and the official SQuAD metrics are written
here (transformers 5 has no question-answering pipeline). The offline model is the
``all-minilm-l6-v2`` preset that the sentiment plugin registers for both tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nlptasks

TASK = "qa"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(
        TASK,
        "nlptasks.builtins.qa.task:QaTask",
        description="Extractive question answering (SQuAD v1.1 / v2.0): exact match and F1.",
    )


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register(
        "squad-v1.1-subset",
        "nlptasks.builtins.qa.datasets:load_squad_subset",
        description="SQuAD v1.1: 3,807 train questions (11 articles) and the full dev set "
        "(10,570), from local files ($NLPTASKS_DATA or ../shared/data); works offline.",
        tasks=(TASK,),
    )


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    nlptasks.register_recipe_folder(register, TASK, Path(__file__).parent / "recipes")
