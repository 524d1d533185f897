"""The commands that read finished runs: compare, leaderboard, verify, export."""

from __future__ import annotations

import json
import sys

import click

from nlptasks.cli.params import HubRepoId, Resamples, Seed
from nlptasks.events import strict_json


@click.command()
@click.argument("run_a", type=click.Path(file_okay=False))
@click.argument("run_b", type=click.Path(file_okay=False))
@click.option("--resamples", default=1000, show_default=True, type=Resamples(low=10))
@click.option("--seed", default=0, show_default=True, type=Seed())
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_a: str, run_b: str, resamples: int, seed: int, as_json: bool) -> None:
    """Whether two runs on the same eval data differ significantly (paired bootstrap over
    the examples of their predictions.jsonl).

    \b
    Example:
        nlptasks compare runs/sentiment-minilm-A runs/sentiment-minilm-B
    """
    from nlptasks.runs.compare import compare as run_compare

    found = run_compare(run_a, run_b, resamples, seed)
    rows = [
        {
            "metric": c.metric,
            "a": c.a,
            "b": c.b,
            "difference": c.difference,
            "low": c.low,
            "high": c.high,
            "p_value": c.p_value,
            "significant": c.significant,
        }
        for c in found.metrics.values()
    ]
    if as_json:
        info = {
            "a": str(found.a.path),
            "b": str(found.b.path),
            "examples": found.examples,
            "resamples": resamples,
            "seed": seed,
            "metrics": rows,
            "not_compared": found.not_compared,
        }
        click.echo(json.dumps(strict_json(info)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"A = {found.a.path.name}\nB = {found.b.path.name}\n{found.examples} examples, "
        f"paired bootstrap ({resamples} resamples, seed {seed})",
        title_justify="left",
    )
    for column in ("metric", "A", "B", "A − B", "95% interval of A − B", "p", "differ?"):
        table.add_column(column)
    for c in found.metrics.values():
        table.add_row(
            c.metric,
            f"{c.a:.4g}",
            f"{c.b:.4g}",
            f"{c.difference:+.4g}",
            f"[{c.low:+.4g}, {c.high:+.4g}]",
            f"{c.p_value:.3f}",
            "yes" if c.significant else "no",
        )
    Console().print(table)
    for metric, why in found.not_compared.items():  # on stderr: stdout stays the table
        click.echo(f"Not compared: {metric} ({why}).", err=True)


@click.command()
@click.argument("folders", nargs=-1, type=click.Path())
@click.option("--task", help="Only this task's runs.")
@click.option("--metric", help="Rank by this metric (default: each task's main metric).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "json", "csv"]),
    default="table",
    show_default=True,
)
def leaderboard(folders: tuple[str, ...], task: str | None, metric: str | None, fmt: str) -> None:
    """Rank finished runs per task, eval data and metric (default folder: runs).

    \b
    Example:
        nlptasks leaderboard runs --task sentiment --format markdown
    """
    from nlptasks.runs import leaderboard as board

    found = board.build(folders or ("runs",), task, metric)
    if task is not None and not found.boards:
        from nlptasks.plugins.registry import get_registries

        # No run of it and no such task: a typo, not an empty board (a task whose plugin is
        # gone still ranks its runs, so the registry is asked only when nothing was found).
        if task not in get_registries().tasks:
            get_registries().tasks.get(task)  # one line: the unknown task, with did-you-mean
    if fmt == "json":
        click.echo(board.as_json(found))
        return
    if fmt == "csv":
        click.echo(board.as_csv(found), nl=False)
    elif fmt == "markdown":
        click.echo(board.markdown(found), nl=False)
    else:
        from rich.console import Console

        console = Console()
        for table in board.rich_tables(found):
            console.print(table)
        if not found.boards:
            click.echo("No finished runs found.", err=True)
    # Notes on stderr: the table, markdown or csv on stdout stays clean for a pipe.
    for folder, why in found.skipped:
        click.echo(f"Skipped {folder}: {why}", err=True)
    sys.stdout.flush()


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--recipe",
    "-r",
    default=None,
    help="Check against this recipe's expect: section (a name of the run's task or a YAML "
    "path) instead of the run's own: expectations written after the run was made.",
)
def verify(run_dir: str, recipe: str | None) -> None:
    """Check a finished run against its recipe's expect: section; exit 1 when it falls short.

    \b
    Example:
        nlptasks verify runs/sentiment-minilm-20261129-101500
        nlptasks verify runs/translation-gemma3-270m-20261202-080000 --recipe gemma3-270m
    """
    from nlptasks.runs.verify import verify as run_verify

    verdict = run_verify(run_dir, recipe)
    expect = verdict.expect
    for check in verdict.checks:
        sign = ">=" if check.bound == "min" else "<="
        value = "missing" if check.value is None else f"{check.value:.4g}"
        reference = f" (reference {check.reference:g})" if check.reference is not None else ""
        mark = "ok  " if check.passed else "FAIL"
        click.echo(f"{mark} {check.metric} {value} {sign} {check.limit:g}{reference}")
    if expect.data:
        click.echo(f"data: {expect.data}")
    if expect.source:
        click.echo(f"source: {expect.source}")
    if not verdict.passed:
        failed = ", ".join(c.metric for c in verdict.checks if not c.passed)
        click.secho(
            f"Error: the run falls short of its recipe's expectations ({failed}).",
            fg="red",
            err=True,
        )
        sys.exit(1)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("destination", type=click.Path())
@click.option(
    "--push-to-hub",
    "repo_id",
    type=HubRepoId(),
    help="Also upload the folder to this Hub repository.",
)
@click.option("--private", is_flag=True, help="Create the Hub repository as private.")
@click.option(
    "--merge-lora",
    is_flag=True,
    help="Write a plain model for serving stacks (transformers, vLLM, TGI): LoRA adapters "
    "merged, checked against the run's model (a run without LoRA is exported as is).",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["safetensors", "onnx"]),
    default="safetensors",
    show_default=True,
    help="onnx: model.onnx (dynamic batch and length) for encoder tasks, checked with "
    "onnxruntime against PyTorch on the run's eval data.",
)
def export(
    run_dir: str,
    destination: str,
    repo_id: str | None,
    private: bool,
    merge_lora: bool,
    format_: str,
) -> None:
    """Write the folder a model hub receives: safetensors weights, config, tokenizer, model
    card and results.json; or, for serving, a merged plain model or an ONNX model.

    \b
    Examples:
        nlptasks export runs/RUN exported/my-model --push-to-hub me/my-model
        nlptasks export runs/RUN exported/for-vllm --merge-lora
        nlptasks export runs/RUN exported/onnx --format onnx
    """
    from nlptasks.errors import NlpTasksError
    from nlptasks.runs.export import export_for_serving, push_to_hub

    if private and not repo_id:  # before writing anything: --private alone would be ignored
        raise NlpTasksError(
            "--private makes the Hub repository private, but nothing is pushed: add "
            "--push-to-hub REPO_ID, or drop --private."
        )
    exported = export_for_serving(run_dir, destination, merge_lora=merge_lora, format=format_)
    click.echo(f"Exported {run_dir} to {exported.path}")
    for note in exported.notes:
        click.echo(note)
    if exported.onnx is not None:
        found = exported.onnx
        click.echo(
            f"ONNX: {found.path.name} (torch.onnx {found.exporter} exporter, opset "
            f"{found.opset}, dynamic batch and sequence); onnxruntime vs PyTorch on "
            f"{found.source}: max |delta logits| {found.max_abs_diff:.2e} (tolerance "
            f"{found.tolerance:g})"
        )
        if found.fallback_reason:
            click.echo(f"(the dynamo exporter failed: {found.fallback_reason})")
    if repo_id:
        # The folder as exported: merged or ONNX, what the user chose to publish.
        plain = not merge_lora and format_ == "safetensors"
        url = push_to_hub(run_dir, repo_id, private, None if plain else exported.path)
        click.echo(f"Pushed to {url}")
