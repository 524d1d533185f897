"""A fixture plugin that registers one of everything, as a third-party package would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

import nlptasks

EVENTS: list[dict[str, Any]] = []


def load_toy_reviews(config: Any) -> Any:
    import datasets

    texts = ["good", "great", "fine film", "bad", "awful", "dull film"] * 10
    labels = ["pos", "pos", "pos", "neg", "neg", "neg"] * 10
    return datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"review": texts, "label": labels})}
    )


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register("toy-reviews", load_toy_reviews, description="60 toy reviews", tasks=("sentiment",))


@nlptasks.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register("toy-model", lambda: "/nonexistent/toy-model", description="a preset")


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register("toy-task", "nlptasks.builtins.sentiment.task:SentimentTask", description="alias")


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    import pathlib

    path = pathlib.Path(__file__).with_name("toy-recipe.yaml")
    register("toy-task", "toy", path)


@nlptasks.hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command()
    @click.argument("name")
    def hello(name: str) -> None:
        """Say hello (from the toy plugin)."""
        click.echo(f"hello {name}")


@nlptasks.hookimpl
def on_event(event: dict[str, Any]) -> None:
    EVENTS.append(event)
