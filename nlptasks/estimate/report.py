"""The estimate for people (a rich table) and for scripts (one JSON object)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nlptasks.estimate import Estimate


def as_json(found: Estimate) -> str:
    """One JSON object: ``Estimate.to_dict()``."""
    from nlptasks.events import strict_json

    return json.dumps(strict_json(found.to_dict()))


def _count(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def rows(found: Estimate) -> list[tuple[str, str, str]]:
    """(what, value, how) rows of the table, in the order a person reads them."""
    size, tokens, memory, wall = found.size, found.tokens, found.memory, found.time
    m = found.machine
    where = f"{m.cpu}, {m.cores} cores, {m.threads} torch threads" + (
        f", GPU {m.gpu}" if m.gpu else ""
    )
    trainable = f"{_count(size.trainable)} trainable ({size.trainable / size.parameters:.2%})"
    data = tokens.to_dict()
    verdict = found.verdict
    return [
        (
            "parameters",
            f"{_count(size.parameters)} total, {trainable}",
            size.architecture + (" + LoRA" if size.lora else ""),
        ),
        (
            "training tokens",
            f"{_count(tokens.training_tokens)} ({_count(tokens.padded_training_tokens)} padded)",
            data["method"],
        ),
        (
            "optimizer steps",
            f"{tokens.optimizer_steps:,}",
            f"{tokens.features:,} features, micro-batch {tokens.micro_batch_size} x "
            f"{tokens.accumulation} accumulation, {data['epochs']} epochs",
        ),
        ("training FLOPs", f"{found.flops.total:.3g}", found.flops.method.split(";")[0]),
        (
            "peak memory",
            f"{memory.total / 2**20:,.0f} MB",
            f"weights {memory.weights / 2**20:,.0f} + gradients {memory.gradients / 2**20:,.0f} "
            f"+ AdamW {memory.optimizer / 2**20:,.0f} + autocast copies "
            f"{memory.autocast_copies / 2**20:,.0f} + activations "
            f"{memory.activations / 2**20:,.0f} (widest micro-batch "
            f"{tokens.largest_batch[0]}x{tokens.largest_batch[1]}) + process "
            f"{memory.runtime / 2**20:,.0f} MB ({found.precision})",
        ),
        (
            "wall time",
            f"{_seconds(wall.seconds)} ({wall.step_seconds:.3g} s/step)",
            f"{wall.method}; without model loading, tokenisation, evaluations, checkpoints",
        ),
        ("machine", f"{m.memory / 2**20:,.0f} MB {m.memory_kind}", where),
        (
            "verdict",
            "fits" if verdict.fits else "does NOT fit",
            f"peak {verdict.peak_mb:,.0f} MB of {verdict.available_mb:,.0f} MB available "
            f"(at most {verdict.to_dict()['headroom']:.0%} of it)",
        ),
    ]


def print_table(found: Estimate) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Estimate: {found.task} --recipe {found.recipe} (model {found.model}); "
        f"nothing trained",
        title_justify="left",
    )
    for column in ("", "estimate", "how"):
        table.add_column(column, overflow="fold")
    for what, value, how in rows(found):
        table.add_row(what, value, how)
    console = Console()
    console.print(table)
    console.print("[dim]--json gives every number and method in full.[/dim]")
    for number, suggestion in enumerate(found.verdict.suggestions, 1):
        console.print(f"Suggestion {number}: {suggestion}")
    for note in found.notes:
        console.print(f"[yellow]Note:[/yellow] {note}")


def show(found: Estimate, json_output: bool) -> None:
    """Print the estimate: JSON for scripts, a table for people."""
    if json_output:
        import click

        click.echo(as_json(found))
    else:
        print_table(found)
