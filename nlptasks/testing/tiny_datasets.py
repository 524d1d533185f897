"""Tiny datasets for the built-in tasks, written as local files in a second: what the
conformance kit (:mod:`nlptasks.testing.conformance`) trains and evaluates on, and what a plugin's
own tests can reuse.

Each is made from templates, so it needs no download and no shared data folder, and has a
pattern a tiny model starts to learn in a few steps. :func:`tiny_dataset` writes one and
returns the recipe overrides that point a run at it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_GOOD = ("gripping", "funny", "moving", "clever", "charming", "superb", "tender", "witty")
_BAD = ("dull", "tedious", "boring", "clumsy", "shallow", "awful", "lifeless", "messy")
_THINGS = ("film", "script", "story", "cast")

_ANIMALS = ("cat", "dog", "horse", "goat", "fox", "owl", "bear", "duck", "frog", "mole")
_PLACES = ("barn", "forest", "river", "garden", "cave", "field", "lake", "hill", "town", "wood")
_FOODS = ("fish", "bread", "apples", "grass", "seeds", "mice", "honey", "corn", "worms", "nuts")

_EN_FR = {
    "cat": "chat",
    "dog": "chien",
    "horse": "cheval",
    "house": "maison",
    "book": "livre",
    "tree": "arbre",
}
_COLOURS = {"black": "noir", "white": "blanc", "big": "grand", "small": "petit"}


@dataclass(frozen=True)
class TinyData:
    """A tiny dataset on disk: how a recipe reads it, and what a tiny tokenizer learns."""

    overrides: list[str]
    """Recipe overrides that make a run train and evaluate on it (``data.train_path=...``)."""
    texts: list[str]
    """Every text in it, to train a tiny model's tokenizer on (no unknown tokens)."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """A few ``predict`` inputs with the task's input fields."""


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _paths(train: Path, evaluation: Path) -> list[str]:
    # Local files win over the recipe's dataset; the recipe's example caps would cut them.
    return [
        f"data.train_path={train}",
        f"data.eval_path={evaluation}",
        "data.max_train_examples=",
        "data.max_eval_examples=",
    ]


def sentiment(folder: Path) -> TinyData:
    """64 one-line reviews (positive when the adjective is), 48 to train and 16 to evaluate."""
    rows = [
        {"text": f"a {adjective} {thing}", "label": label}
        for thing in _THINGS
        for words, label in ((_GOOD, "positive"), (_BAD, "negative"))
        for adjective in words
    ]
    train = _write_jsonl(folder / "train.jsonl", [r for i, r in enumerate(rows) if i % 4])
    evaluation = _write_jsonl(folder / "eval.jsonl", rows[::4])
    return TinyData(
        [*_paths(train, evaluation), "options.label_names=[negative, positive]"],
        [row["text"] for row in rows],
        # Lengths that differ a lot: each short record is padded next to the long one, so a
        # predict that lets padding change its answer is caught (on one record alone a tiny
        # model's change can fall below the kit's tolerance).
        [
            {"text": "a witty story and a superb cast, a clever script and a moving film"},
            {"text": "a dull film"},
            {"text": "a tedious and shallow script"},
            {"text": "superb"},
        ],
    )


def qa(folder: Path) -> TinyData:
    """40 SQuAD-style questions on one-sentence contexts, 30 to train and 10 to evaluate."""
    rows: list[dict[str, Any]] = []
    for i, (animal, place, food) in enumerate(zip(_ANIMALS, _PLACES, _FOODS, strict=True)):
        context = f"The {animal} lives in the {place} and eats {food} every day ."
        for j, (question, answer) in enumerate(
            (
                (f"Where does the {animal} live ?", f"the {place}"),
                (f"What does the {animal} eat ?", food),
                (f"Which animal lives in the {place} ?", f"The {animal}"),
                (f"When does the {animal} eat {food} ?", "every day"),
            )
        ):
            start = context.index(answer)
            rows.append(
                {
                    "id": f"q{i}-{j}",
                    "title": animal,
                    "context": context,
                    "question": question,
                    "answers": {"text": [answer], "answer_start": [start]},
                }
            )
    train = _write_jsonl(
        folder / "train.jsonl", [r for r in rows if r["title"] not in _ANIMALS[-2:]]
    )
    evaluation = _write_jsonl(
        folder / "eval.jsonl", [r for r in rows if r["title"] in _ANIMALS[-2:]]
    )
    texts = sorted({r["context"] for r in rows} | {r["question"] for r in rows})
    context = "The owl lives in the wood and eats mice every day ."
    return TinyData(
        [
            *_paths(train, evaluation),
            "options.max_length=64",
            "options.max_question_length=24",
            "options.doc_stride=16",
        ],
        texts,
        [
            {"question": "Where does the owl live ?", "context": context},
            {"question": "What does the mole eat ?", "context": "The mole eats worms ."},
        ],
    )


def generation(folder: Path) -> TinyData:
    """Plain text (one document of 60 lines), packed into blocks of 32 tokens."""
    lines = [
        f"The {animal} lives in the {place} and eats {food} ."
        for animal, place, food in itertools.product(_ANIMALS[:5], _PLACES[:4], _FOODS[:3])
    ]
    folder.mkdir(parents=True, exist_ok=True)
    train, evaluation = folder / "train.txt", folder / "eval.txt"
    train.write_text("\n".join(lines[:48]) + "\n", encoding="utf-8")
    evaluation.write_text("\n".join(lines[48:]) + "\n", encoding="utf-8")
    return TinyData(
        [
            *_paths(train, evaluation),
            "options.block_size=32",
            "options.sample_prompts=[The cat lives]",
            "generation.max_new_tokens=8",
        ],
        lines,
        [{"prompt": "The dog lives in the forest and eats"}, {"prompt": "The cat"}],
    )


def translation(folder: Path) -> TinyData:
    """English -> French noun phrases, 24 pairs: 18 to train and 6 to evaluate."""
    pairs = [
        (f"the {colour} {noun}", f"le {noun_fr} {colour_fr}")
        for noun, noun_fr in _EN_FR.items()
        for colour, colour_fr in _COLOURS.items()
    ]
    rows = [{"translation": {"en": en, "fr": fr}} for en, fr in pairs]
    train = _write_jsonl(folder / "train.jsonl", [r for i, r in enumerate(rows) if i % 4])
    evaluation = _write_jsonl(folder / "eval.jsonl", rows[::4])
    return TinyData(
        [
            *_paths(train, evaluation),
            "options.source_lang=en",
            "options.target_lang=fr",
            "options.max_source_length=32",
            "options.max_target_length=32",
        ],
        [text for pair in pairs for text in pair],
        [{"text": "the white cat and the big book"}, {"text": "the dog"}],
    )


BUILTIN: dict[str, Callable[[Path], TinyData]] = {
    "sentiment": sentiment,
    "qa": qa,
    "generation": generation,
    "translation": translation,
}


def tiny_dataset(task: str, folder: str | Path) -> TinyData:
    """Write the tiny dataset of built-in ``task`` into ``folder``."""
    if task not in BUILTIN:
        raise KeyError(f"No tiny dataset for task '{task}'; built-in ones: {', '.join(BUILTIN)}")
    return BUILTIN[task](Path(folder))
