"""Hook specifications: the whole contract between nlptasks and its plugins.

Plugin authors write ``import nlptasks`` and decorate functions with ``@nlptasks.hookimpl``.
Registration hooks receive a ``register`` callback; plugins never mutate core state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("nlptasks")
hookimpl = pluggy.HookimplMarker("nlptasks")


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Register tasks.

    Called once when the task registry is first used.

    Args:
        register: ``register(name, target, description="", tasks=())`` where ``target`` is a
            Task class or a lazy ``"module:attr"`` string (preferred: it keeps ``nlptasks list``
            from importing torch). A target that cannot be imported is an error naming the
            plugin, only when the task is used.

    A name that another plugin registers too fails only the commands that use it.
    """


@hookspec
def register_models(register: Callable[..., None]) -> None:
    """Register model presets: short names that resolve to a local directory or hub id.

    Args:
        register: ``register(name, target, description="", tasks=(), hub_id=None)`` where
            ``target()`` (the resolver) returns a path or hub id, called only when the preset
            is used, and ``hub_id`` is the Hub id this preset is a copy of, used as the model card's
            ``base_model`` (leave it ``None`` for a model that is not on the Hub).
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register dataset loaders usable as ``data.dataset: NAME`` in a recipe.

    Args:
        register: ``register(name, target, description="", tasks=())`` where ``target`` (the
            loader) is a callable or ``"module:attr"`` string; called as ``target(config)`` with
            the recipe's data section, it returns a ``datasets.Dataset`` or
            ``datasets.DatasetDict``.
    """


@hookspec
def register_recipes(register: Callable[..., None]) -> None:
    """Register recipe files.

    Args:
        register: ``register(task, name, path, description="")`` with the path of a YAML
            recipe.
    """


@hookspec
def register_probes(register: Callable[..., None]) -> None:
    """Register probes of trained models, run as ``nlptasks probe run NAME [ARGS]...``.

    Called once when the probe registry is first used (``nlptasks probe list``/``run``).

    Args:
        register: ``register(name, target, description="", tasks=())`` where ``target`` is
            a ``click.Command`` or a lazy ``"module:attr"`` string naming one (preferred: it
            keeps the CLI from importing the probe). ``nlptasks probe run NAME ARGS...``
            invokes it with ARGS; ``tasks`` names the tasks it is for (empty: any task).
            The built-in ``bias`` probe is registered this way too.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``nlptasks`` Click group.

    Called once when the CLI starts.

    Args:
        cli: the top-level ``click.Group``; call ``cli.command()`` / ``cli.add_command``.
    """


@hookspec
def on_event(event: dict[str, Any]) -> None:
    """Receive every trainer event (step, eval, checkpoint, run start and end).

    Called in order for each event written to ``events.jsonl``: trackers are plugins too.

    Args:
        event: a JSON-serialisable dict with at least ``type`` and ``time``.
    """
