"""Option types that check a flag's value when the command line is read: before a run
trains for an hour, not after (a seed out of range, a repository id the Hub refuses).

A bad value is the same one-line error (exit 1) as the recipe key it matches: ``--seed -1``
says what ``train.seed=-1`` says.
"""

from __future__ import annotations

from typing import Any

import click

from nlptasks.errors import NlpTasksError, clip, hub_offline
from nlptasks.recipes.schema import MAX_RESAMPLES, seed_problem


def _flag(param: click.Parameter | None) -> str:
    """The name a message gives an option (``--seed``)."""
    if param is None:
        return "value"
    opts = getattr(param, "opts", None) or [param.name or "value"]
    return max(opts, key=len)


def _integer(value: Any, flag: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise NlpTasksError(f"'{flag}' must be an integer, not '{clip(value)}'.") from None


class Seed(click.ParamType):
    """A seed: an integer in the range of every seed (``train.seed`` and the others)."""

    name = "seed"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        flag = _flag(param)
        seed = _integer(value, flag)
        problem = seed_problem(flag, seed)
        if problem:
            raise NlpTasksError(f"{problem}.")
        return seed


class Resamples(click.ParamType):
    """Bootstrap resamples: at least ``low``, at most :data:`MAX_RESAMPLES`."""

    name = "integer"

    def __init__(self, low: int) -> None:
        self.low = low

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        flag = _flag(param)
        count = _integer(value, flag)
        if not self.low <= count <= MAX_RESAMPLES:
            raise NlpTasksError(f"'{flag}' must be in {self.low}..{MAX_RESAMPLES}.")
        return count


class HubRepoId(click.ParamType):
    """A Hub repository id (``NAME`` or ``OWNER/NAME``), checked offline as the Hub would:
    an upload that runs after the training must not be the first thing to find it wrong."""

    name = "repo_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        flag = _flag(param)
        text = str(value)
        try:
            validate_repo_id(text)
        except HFValidationError:
            raise NlpTasksError(
                f"{flag} '{clip(text)}' is not a Hub repository id. Write NAME or OWNER/NAME "
                f"of letters, digits, '-', '_' and '.' (at most 96 characters, not starting "
                f"or ending with '-' or '.'), e.g. me/my-model."
            ) from None
        if hub_offline():
            raise NlpTasksError(
                f"{flag} needs the Hub, but HF_HUB_OFFLINE is set. Unset it to upload, or drop "
                f"{flag} (and upload later with 'nlptasks export RUN FOLDER {flag} {text}')."
            )
        from huggingface_hub import get_token

        if get_token() is None:  # else the upload fails only after the training
            raise NlpTasksError(
                f"{flag} needs a Hub token, but there is none: run 'hf auth login' or set HF_TOKEN."
            )
        return text


# Options that several commands share, declared once so they read the same everywhere.
recipe_overrides = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the model's recipe, e.g. --set generation.num_beams=4.",
)
mixed_precision = click.option(
    "--mixed-precision",
    type=click.Choice(["auto", "no", "bf16", "fp16"]),
    help="Precision (default: the model's recipe's train.mixed_precision).",
)
allow_untrained_head = click.option(
    "--allow-untrained-head",
    is_flag=True,
    help="Take a model whose head transformers initialised at random (its outputs mean nothing).",
)
