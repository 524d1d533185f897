"""``nlptasks consolidate CHECKPOINT DEST``: a sharded checkpoint as a plain model folder."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False, exists=True))
@click.argument("destination", type=click.Path())
def consolidate(checkpoint: str, destination: str) -> None:
    """Merge the shards of an FSDP checkpoint into one model folder (in this process, no
    GPU needed), to start a new run from it on another number of processes or to evaluate it.

    \b
    Example:
        nlptasks consolidate runs/RUN/checkpoints/last merged-model
        nlptasks run sentiment model=merged-model
    """
    from nlptasks.training.consolidate import consolidate as merge

    folder = merge(Path(checkpoint), Path(destination).expanduser())
    click.echo(f"Wrote the whole model of {checkpoint} to {folder}")
