"""``nlptasks serve MODEL_DIR``: the model behind an HTTP API (``nlptasks.serving``)."""

from __future__ import annotations

import click


@click.command()
@click.argument("model_dir")
def serve(model_dir: str) -> None:
    """Serve a trained model over HTTP (placeholder: being built)."""
    raise click.UsageError("nlptasks serve is being built.")
