"""``nlptasks estimate TASK``: what a run will cost, before it runs (``run --dry-run``)."""

from __future__ import annotations

import click


@click.command()
@click.argument("task")
@click.argument("overrides", nargs=-1)
@click.option("--recipe", "-r", help="Recipe name (see 'nlptasks recipes list') or YAML path.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
@click.option(
    "--no-probe",
    is_flag=True,
    help="Do not time real training steps; estimate the time from FLOPs and a matmul rate.",
)
def estimate(
    task: str, overrides: tuple[str, ...], recipe: str | None, as_json: bool, no_probe: bool
) -> None:
    """Estimate parameters, tokens, FLOPs, peak memory and wall time of a run (trains nothing).

    OVERRIDES are KEY=VALUE as for 'nlptasks run'. Same as 'nlptasks run TASK --dry-run'.

    \b
    Example:
        nlptasks estimate sentiment --recipe minilm train.batch_size=64
        nlptasks estimate generation --recipe smollm2-lora --json
    """
    from nlptasks.estimate import estimate as make_estimate
    from nlptasks.estimate.report import show

    show(make_estimate(task, recipe, overrides, probe=not no_probe), as_json)
