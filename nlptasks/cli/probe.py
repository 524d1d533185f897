"""``nlptasks probe``: probes of a trained model (``probe bias``), open to plugins.

Plugins register probes (click commands) through the ``register_probes`` hook; ``probe
list`` shows them and ``probe run NAME [ARGS]...`` runs one. The built-in ``bias`` probe is
registered the same way and is also ``probe bias`` directly.
"""

from __future__ import annotations

import click


@click.group()
def probe() -> None:
    """Probe a trained model (bias); plugins add probes (see 'probe list')."""


@probe.command()
@click.option(
    "--model",
    "-m",
    "model_dir",
    help="A trained model directory (default with --run: RUN/model).",
)
@click.option("--task", help="The model's task (default: from its run's recipe.yaml).")
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False),
    help="Records to probe (csv/tsv/json/jsonl/parquet/txt with the task's input fields) "
    "instead of the recipe's eval data.",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False),
    help="Record the report in this run's results.json and model card ('Bias probes').",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the model's recipe, e.g. --set train.eval_batch_size=16.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--max-examples",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most N matching records per dimension (a seeded sample).",
)
@click.option(
    "--min-matches",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Fewer matching records than this: add templates for that dimension.",
)
@click.option("--resamples", default=1000, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling and bootstrap.")
def bias(
    model_dir: str | None,
    task: str | None,
    data_file: str | None,
    run_dir: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
    max_examples: int,
    min_matches: int,
    resamples: int,
    seed: int,
) -> None:
    """Counterfactual bias probe: swap identity terms (gender, first names, religion,
    nationality) in eval records or templates and measure how the model's outputs change,
    per group pair, with bootstrap intervals. Evidence, not a certificate (see docs/bias.md).

    \b
    Example:
        nlptasks probe bias --model runs/RUN/model
        nlptasks probe bias --run runs/RUN --json
    """
    import json
    from pathlib import Path

    from nlptasks.errors import NlpTasksError
    from nlptasks.events import strict_json
    from nlptasks.probes.bias import BiasSettings, probe_bias
    from nlptasks.recipes.schema import seed_problem

    if problem := seed_problem("--seed", seed):
        raise NlpTasksError(f"{problem}.")
    if model_dir is None:
        if run_dir is None:
            raise click.UsageError("Give --model DIR (or --run RUN_DIR: its model/ folder).")
        model_dir = str(Path(run_dir) / "model")
    elif run_dir is not None and not Path(model_dir).resolve().is_relative_to(
        Path(run_dir).resolve()
    ):
        # A report recorded in a run must be about that run's model.
        raise NlpTasksError(
            f"--model '{model_dir}' is not a model of run '{run_dir}', so its probe cannot go "
            f"into that run. Drop --model (it defaults to RUN/model) or --run."
        )
    if run_dir is not None and not (Path(run_dir) / "results.json").is_file():
        # Before the probe runs: its report would have nowhere to go.
        raise NlpTasksError(
            f"'{run_dir}' is not a finished run (it has no results.json). Give --run the "
            f"run's folder, e.g. --run runs/RUN."
        )
    settings = BiasSettings(
        model_dir=model_dir,
        task=task,
        data=data_file,
        max_examples=max_examples,
        min_matches=min_matches,
        seed=seed,
        resamples=resamples,
        overrides=overrides,
    )
    report = probe_bias(settings)
    if run_dir is not None:
        from nlptasks.probes.record import record_in_run

        written = record_in_run(run_dir, report)
        click.echo(f"Recorded in {written} and the model card ('Bias probes').", err=True)
    if as_json:
        click.echo(json.dumps(strict_json(report), ensure_ascii=False))
        return
    from nlptasks.probes.report import render

    render(report)


@probe.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_probes(as_json: bool) -> None:
    """List the probes plugins registered (the built-in one included).

    \b
    Example:
        nlptasks probe list
    """
    import json

    from nlptasks.plugins.registry import get_registries

    rows = [
        {"name": e.name, "plugin": e.plugin, "description": e.description}
        for e in get_registries().probes
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<16} {row['plugin']:<16} {row['description']}")


@probe.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_probe(ctx: click.Context, name: str, args: tuple[str, ...]) -> None:
    """Run the probe NAME (see 'probe list') with its own ARGS ('--help' shows them).

    \b
    Example:
        nlptasks probe run bias --model runs/RUN/model
    """
    from nlptasks.errors import PluginError
    from nlptasks.plugins.registry import get_registries

    entry = get_registries().probes.get(name)
    command = entry.load()
    if not isinstance(command, click.Command):
        raise PluginError(
            f"Plugin '{entry.plugin}' registered probe '{name}' as {type(command).__name__}, "
            f"not a click command. Register a click.Command (or its 'module:attr')."
        )
    with command.make_context(f"run {name}", list(args), parent=ctx.parent) as sub:
        command.invoke(sub)
