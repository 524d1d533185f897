"""The ``nlptasks`` command line (Click).

Domain errors become one line on stderr and exit code 1; ``--debug`` shows the traceback.
Heavy modules (torch, transformers) are imported inside commands, never at start-up, so
``nlptasks --help`` and ``nlptasks list`` stay fast.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import click
import yaml
from safetensors import SafetensorError

from nlptasks.cli import params
from nlptasks.cli.params import HubRepoId, Seed
from nlptasks.errors import NlpTasksError, RunInterrupted, clip, first_line, shorten_message
from nlptasks.events import JsonReporter, QuietReporter, RichReporter, strict_json
from nlptasks.jsonl import JsonLineError, json_lines
from nlptasks.plugins.manager import call_hook, plugin_infos
from nlptasks.plugins.registry import get_registries
from nlptasks.recipes import (
    dump_recipe,
    load_recipe,
    locate_recipe,
    read_recipe_dict,
    read_yaml,
    validate,
)
from nlptasks.version import __version__

LIST_KINDS = ("tasks", "recipes", "models", "datasets", "metrics")


class NlpTasksGroup(click.Group):
    """Turns domain errors into one-line messages; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NlpTasksError as exc:
            if ctx.meta.get("nlptasks.debug"):
                raise
            click.secho(f"Error: {shorten_message(str(exc))}", fg="red", err=True)
            # 130 is the shell's code for "stopped by Ctrl-C"; scripts can tell it apart.
            ctx.exit(exc.exit_code if isinstance(exc, RunInterrupted) else 1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except (OSError, SafetensorError) as exc:
            # The last resort for a full disk, a read-only folder, a vanished file: one line
            # that names the path.
            if ctx.meta.get("nlptasks.debug"):
                raise
            filename = getattr(exc, "filename", None)
            where = f" ({filename})" if filename else ""
            what = getattr(exc, "strerror", None) or first_line(exc)
            click.secho(
                f"Error: {what}{where}. Check that the path exists, is writable "
                f"and has room (--debug shows where it happened).",
                fg="red",
                err=True,
            )
            ctx.exit(1)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"Warning: {message}\n"


@click.group(cls=NlpTasksGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nlptasks")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fine-tune, evaluate, compare and use transformer models; every task is a plugin.

    \b
    Example:
        nlptasks run sentiment                       # offline default recipe
        nlptasks run sentiment --recipe bert-base train.epochs=1
    """
    ctx.meta["nlptasks.debug"] = debug
    warnings.formatwarning = _one_line_warning


def _reporter(quiet: bool, as_json: bool) -> Any:
    if as_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    return RichReporter()


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("task")
@click.argument("overrides", nargs=-1)
@click.option("--recipe", "-r", help="Recipe name (see 'nlptasks recipes list') or YAML path.")
@click.option("--output-dir", "-o", help="Write the run here (must not exist yet).")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    help="Continue this interrupted run directory (same as 'nlptasks resume RUN_DIR').",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display; only the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print every event as a JSON line.")
@click.option(
    "--push-to-hub",
    "repo_id",
    type=HubRepoId(),
    help="Upload the finished run's model folder (as 'nlptasks export' writes it) to this Hub "
    "repository.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Train nothing: estimate parameters, tokens, FLOPs, peak memory and wall time "
    "(same as 'nlptasks estimate'; --json prints it as JSON).",
)
@click.option("--no-probe", is_flag=True, help="With --dry-run: time from FLOPs, no probe steps.")
@click.option(
    "--report-to",
    metavar="NAME[,NAME]",
    help="Experiment trackers that receive the run (e.g. tensorboard); overrides track.to.",
)
def run(
    task: str,
    overrides: tuple[str, ...],
    recipe: str | None,
    output_dir: str | None,
    resume_dir: str | None,
    quiet: bool,
    as_json: bool,
    repo_id: str | None,
    dry_run: bool,
    no_probe: bool,
    report_to: str | None,
) -> None:
    """Fine-tune and evaluate TASK with a recipe, then write a new run directory.

    OVERRIDES are KEY=VALUE (e.g. train.epochs=1) or ~KEY (back to the default).

    \b
    Example:
        nlptasks run sentiment --recipe minilm train.epochs=1 data.max_train_examples=2000
        nlptasks run sentiment --resume runs/sentiment-minilm-20261129-101500
        nlptasks run sentiment --recipe minilm --dry-run     # what it costs; trains nothing
        nlptasks run sentiment --recipe minilm --report-to tensorboard
    """
    if report_to is not None:
        from nlptasks.recipes.schema import TRACKERS

        names = [name.strip() for name in report_to.split(",") if name.strip()]
        for name in names:
            if name not in TRACKERS:
                raise NlpTasksError(
                    f"unknown tracker '{name}' in --report-to; choose from {', '.join(TRACKERS)}"
                )
        overrides = (*overrides, f"track.to=[{', '.join(names)}]")
    if dry_run:
        given = (("--resume", resume_dir), ("--output-dir", output_dir), ("--push-to-hub", repo_id))
        used = [flag for flag, value in given if value]
        if used:
            raise NlpTasksError(
                f"--dry-run trains nothing and writes no run: drop {', '.join(used)}."
            )
        from nlptasks.estimate import estimate as estimate_run
        from nlptasks.estimate.report import show

        show(estimate_run(task, recipe, overrides, probe=not no_probe), as_json)
        return
    if no_probe:
        raise NlpTasksError(
            "--no-probe goes with --dry-run (nlptasks run ... --dry-run --no-probe)."
        )
    from nlptasks.runner import resume as resume_run
    from nlptasks.runner import run as run_task

    reporter = _reporter(quiet, as_json)
    if resume_dir is not None:
        if recipe or overrides or output_dir:
            raise click.UsageError(
                "--resume continues a run with its own recipe.yaml (its trackers too); drop "
                "--recipe, --output-dir, --report-to and the overrides."
            )
        _check_run_task(task, resume_dir)
        result = resume_run(resume_dir, reporter)
    else:
        result = run_task(task, recipe, list(overrides), output_dir, reporter)
    _summarise(result, as_json)
    if repo_id and result.run_dir is not None:  # the main process pushes
        from nlptasks.runs.export import push_to_hub

        click.echo(f"Pushed to {push_to_hub(result.run_dir, repo_id)}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="No progress display; only the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print every event as a JSON line.")
def resume(run_dir: str, quiet: bool, as_json: bool) -> None:
    """Continue an interrupted run in its own directory, exactly where it stopped.

    \b
    Example:
        nlptasks resume runs/sentiment-minilm-20261129-101500
    """
    from nlptasks.runner import resume as resume_run

    _summarise(resume_run(run_dir, _reporter(quiet, as_json)), as_json)


def _check_run_task(task: str, run_dir: str) -> None:
    recipe_file = Path(run_dir) / "recipe.yaml"
    trained = read_yaml(recipe_file).get("task") if recipe_file.is_file() else None
    if trained and trained != task:
        raise NlpTasksError(
            f"Run '{run_dir}' is a '{trained}' run, not '{task}'. Resume it with: nlptasks "
            f"resume {run_dir}"
        )


def _with_interval(name: str, value: float, intervals: dict[str, list[float]]) -> str:
    """``accuracy 0.8276 [0.8102, 0.8450]``: a metric and its 95% interval, when it has one."""
    low, high = intervals.get(name, (math.nan, math.nan))
    shown = f"{name} {value:.4f}"
    finite = isinstance(low, float) and math.isfinite(low)
    return shown + (f" [{low:.4f}, {high:.4f}]" if finite else "")


def _summarise(result: Any, as_json: bool) -> None:
    if as_json or result.run_dir is None:  # JSON mode, or not the main process of several
        return
    found = result.results.get("confidence_intervals", {}).get("eval", {})
    metrics = "  ".join(_with_interval(k, v, found) for k, v in result.metrics.items())
    click.echo(f"Eval: {metrics}  (95% intervals)" if found else f"Eval: {metrics}")
    click.echo(f"Run directory: {result.run_dir}")
    click.echo(f"  model:      {result.run_dir / 'model'}")
    click.echo(f"  model card: {result.run_dir / 'README.md'}")
    click.echo(f"  results:    {result.run_dir / 'results.json'}")


@cli.command(name="eval")
@click.argument("task")
@click.argument("overrides", nargs=-1)
@click.option("--model", "-m", "model_dir", required=True, help="A trained model directory.")
@click.option("--recipe", "-r", help="Recipe whose data to use (default: the model's own).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--allow-untrained-head",
    is_flag=True,
    help="Take a model whose head transformers initialised at random (its scores mean nothing).",
)
def eval_command(
    task: str,
    overrides: tuple[str, ...],
    model_dir: str,
    recipe: str | None,
    as_json: bool,
    allow_untrained_head: bool,
) -> None:
    """Evaluate a trained model on the eval split of a recipe's data.

    \b
    Example:
        nlptasks eval sentiment --model runs/RUN/model data.eval_path=dev.tsv
    """
    from nlptasks.model_fit import allow_untrained_head as untrained_heads
    from nlptasks.runner import evaluate_model

    _require_dir(model_dir)
    with untrained_heads(allow_untrained_head):
        result = evaluate_model(task, model_dir, recipe, list(overrides))
    if not result.main_process:  # under torchrun every process evaluates; one prints
        return
    if as_json:
        click.echo(json.dumps(strict_json(result.metrics)))
    else:
        click.echo(
            "  ".join(_with_interval(k, v, result.intervals) for k, v in result.metrics.items())
        )
        for name, signature in result.signatures.items():
            click.echo(f"{name} signature: {signature}")


@cli.command()
@click.argument("task")
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", "model_dir", required=True, help="A trained model directory.")
@click.option(
    "--input",
    "-i",
    "input_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="JSON lines, one record per line with the task's input fields (a .txt file: one "
    "text per line, for one-field tasks); - for stdin.",
)
@click.option(
    "--field",
    "-f",
    "fields",
    multiple=True,
    metavar="NAME=VALUE",
    help="One input field of a single record (repeat for each field), e.g. for qa: "
    "-f question=... -f context=...",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Records per batch.")
@params.recipe_overrides
@params.mixed_precision
@click.option(
    "--max-new-tokens", type=click.IntRange(min=1), help="Generating tasks: at most N new tokens."
)
@click.option(
    "--temperature", type=float, help="Generating tasks: sampling temperature (turns sampling on)."
)
@click.option("--top-p", type=float, help="Generating tasks: nucleus sampling (turns sampling on).")
@click.option(
    "--top-k",
    type=click.IntRange(min=0),
    help="Generating tasks: sample from the k likeliest tokens, 0 for all (turns sampling on).",
)
@click.option(
    "--repetition-penalty",
    type=float,
    help="Generating tasks: penalty for repeated tokens (1 = none).",
)
@click.option(
    "--num-beams", type=click.IntRange(min=1), help="Generating tasks: beam search width."
)
@click.option(
    "--seed",
    type=Seed(),
    help="Generating tasks: seed of sampling (same seed, same text).",
)
@click.option(
    "--greedy", is_flag=True, help="Generating tasks: greedy decoding (no sampling, one beam)."
)
@params.allow_untrained_head
@click.option(
    "--explain",
    is_flag=True,
    help="Token attributions for each prediction: an 'explanation' field in each JSON line, "
    "and a coloured view on the terminal (needs captum: pip install 'nlptasks[explain]').",
)
@click.option(
    "--explain-html",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write the explanations as one self-contained HTML page (implies --explain).",
)
def predict(
    task: str,
    texts: tuple[str, ...],
    model_dir: str,
    input_file: str | None,
    fields: tuple[str, ...],
    batch_size: int | None,
    overrides: tuple[str, ...],
    mixed_precision: str | None,
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    repetition_penalty: float | None,
    num_beams: int | None,
    seed: int | None,
    greedy: bool,
    allow_untrained_head: bool,
    explain: bool,
    explain_html: str | None,
) -> None:
    """Predict with a trained model; prints one JSON object per input, in input order.

    TEXTS are records of a task with one input field (sentiment: text). Tasks with several
    fields take --field NAME=VALUE or --input FILE.jsonl.

    \b
    Example:
        nlptasks predict sentiment --model runs/RUN/model "A gripping, funny film."
        nlptasks predict sentiment --model runs/RUN/model --input reviews.jsonl
        nlptasks predict sentiment --model runs/RUN/model --explain-html why.html "Dull."
    """
    from nlptasks.runner import predict as predict_records

    _require_dir(model_dir)
    records: list[Any] = list(texts)
    labels = [f"Argument {i}" for i in range(1, len(texts) + 1)]
    if fields:
        records.append(_record_from_fields(fields))
        labels.append("The --field record")
    if input_file:
        found = _read_jsonl(Path(input_file))
        if not found:  # a mistake (a wrong file, an empty pipe), not a request for nothing
            raise NlpTasksError(_no_records(input_file))
        for line, record in found:
            records.append(record)
            labels.append(f"{input_file} line {line}")
    if not records:
        raise click.UsageError("Give TEXT arguments, --field NAME=VALUE or --input FILE.jsonl.")
    decoding = _decoding_overrides(
        max_new_tokens, temperature, top_p, top_k, repetition_penalty, num_beams, seed, greedy
    )
    # A generating task writes its text as it comes when a person watches a terminal;
    # anything else (a file, a pipe, a task that writes nothing) gets JSON lines.
    written: list[str] = []

    def write(text: str) -> None:
        written.append(text)
        click.echo(text, nl=False)

    from nlptasks.model_fit import allow_untrained_head as untrained_heads

    explain = explain or explain_html is not None
    if explain_html is not None:  # before the predictions, not after all their work
        from nlptasks.explain.render import check_html_target

        check_html_target(Path(explain_html))
    with untrained_heads(allow_untrained_head):
        predictions = predict_records(
            task,
            model_dir,
            records,
            batch_size,
            mixed_precision,
            [*overrides, *decoding],
            labels,
            # Explanations come with the JSON lines: nothing is streamed then.
            stream=write if sys.stdout.isatty() and not explain else None,
            explain=explain,
        )
    if not written:
        for item in predictions:
            click.echo(json.dumps(item, ensure_ascii=False))
    if explain:  # after the JSON lines: a failure to write the page loses none of them
        _show_explanations(predictions, explain_html)


def _show_explanations(predictions: list[dict[str, Any]], html_file: str | None) -> None:
    """The coloured view on stderr when it is a terminal (stdout keeps clean JSON lines for
    a pipe or file), and the HTML page when asked for."""
    from nlptasks.explain.render import print_explanations, write_html

    if sys.stderr.isatty():
        print_explanations(predictions)
    if html_file is not None:
        write_html(predictions, Path(html_file))
        click.echo(f"Explanations: {html_file}", err=True)


def _decoding_overrides(
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    repetition_penalty: float | None,
    num_beams: int | None,
    seed: int | None,
    greedy: bool,
) -> list[str]:
    """The decoding flags of predict as generation.* overrides of the model's recipe."""
    sampling = [v is not None for v in (temperature, top_p, top_k)]
    if greedy and any(sampling):
        raise click.UsageError(
            "--greedy cannot be combined with --temperature, --top-p or --top-k."
        )
    values = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "repetition_penalty": repetition_penalty,
        "num_beams": 1 if greedy else num_beams,
        "seed": seed,
        "do_sample": True if any(sampling) else (False if greedy else None),
    }
    return [f"generation.{k}={v}" for k, v in values.items() if v is not None]


def _record_from_fields(fields: tuple[str, ...]) -> dict[str, str]:
    record: dict[str, str] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--field '{item}' is not NAME=VALUE (e.g. -f question=Who?).")
        record[name] = value
    return record


def _no_records(input_file: str) -> str:
    """The message for an --input that holds no record."""
    where = "Standard input" if input_file == "-" else f"Input file '{input_file}'"
    example = "one text per line" if input_file.lower().endswith(".txt") else 'e.g. {"text": "..."}'
    return (
        f"{where} has no records (it is empty or holds only blank lines). Give one record per "
        f"line, {example}."
    )


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, record) from JSON lines: objects, or plain JSON strings for one-field
    tasks; from a ``.txt`` file, each line as a string."""
    text = _input_text(path)
    if path.suffix.lower() == ".txt":
        # One text per line, every line kept (an empty one is refused by number), so that
        # output line i answers input line i; a file of blank lines only has no records.
        lines = text.splitlines()
        if not any(line.strip() for line in lines):
            return []
        return list(enumerate(lines, 1))
    try:
        return list(json_lines(text.splitlines()))
    except JsonLineError as bad:
        raise NlpTasksError(
            f"{path} line {bad.number} is not valid JSON ({bad.error.msg}). Write one JSON "
            f'object per line, e.g. {{"text": "..."}}.'
        ) from None


def _input_text(path: Path) -> str:
    """The text of --input ``path`` (``-``: standard input), or one line saying why not."""
    if str(path) == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        try:
            text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        except UnicodeDecodeError as exc:
            raise NlpTasksError(
                f"Standard input is not UTF-8 text ({exc.reason} at byte {exc.start}). Send UTF-8."
            ) from None
    elif not path.exists() or path.is_dir():  # exists(), not is_file(): pipes are fine too
        raise NlpTasksError(f"Input file '{path}' does not exist. Check the path.")
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise NlpTasksError(
                f"Input file '{path}' is not UTF-8 text. Save it as UTF-8."
            ) from None
    return text


def _require_dir(model_dir: str) -> None:
    if not Path(model_dir).is_dir():
        raise NlpTasksError(
            f"Model directory '{model_dir}' does not exist. Pass the model/ folder of a run, "
            f"e.g. --model runs/RUN/model."
        )


@cli.command(name="list")
@click.argument("kind", type=click.Choice(LIST_KINDS), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(kind: str | None, as_json: bool) -> None:
    """List tasks, recipes, models, datasets or metrics, with the plugin providing each.

    \b
    Example:
        nlptasks list recipes
    """
    regs = get_registries()
    # Metrics are declared by the task classes, which import torch: listed when asked for.
    kinds = [kind] if kind else [k for k in LIST_KINDS if k != "metrics"]
    rows: dict[str, list[dict[str, str]]] = {}
    for name in kinds:
        if name == "metrics":
            rows[name] = _metric_rows(regs)
            continue
        registry = getattr(regs, name)
        rows[name] = []
        for e in registry:
            # A name two plugins registered is listed once, naming both: listing keeps
            # working (only commands that use the name fail) and shows whom to uninstall.
            owners = registry.conflict(e.name)
            plugin = f"{', '.join(owners)} (conflict)" if owners else e.plugin
            description = e.description or _describe(e)
            rows[name].append({"name": e.name, "plugin": plugin, "description": description})
    if as_json:
        click.echo(json.dumps(rows if kind is None else rows[kind], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, entries in rows.items():
        # Metrics, like recipes, are keyed by task: two tasks may each have an "accuracy".
        caption = "TASK/NAME: the metrics each task reports" if name == "metrics" else None
        table = Table(title=name, title_justify="left", show_lines=False, caption=caption)
        for column in ("name", "plugin", "description"):
            table.add_column(column)
        for entry in entries:
            table.add_row(entry["name"], entry["plugin"], entry["description"])
        console.print(table)


def _metric_rows(regs: Any) -> list[dict[str, str]]:
    """Each task's declared metrics (``TaskInfo.metrics``), its loss first."""
    from nlptasks.errors import NlpTasksError
    from nlptasks.task import declared_metrics

    rows = []
    for entry in regs.tasks:
        try:
            specs = declared_metrics(entry.load())
        except NlpTasksError as exc:  # one broken task plugin must not hide the others
            click.secho(f"Warning: {first_line(exc)}", fg="yellow", err=True)
            continue
        for spec in specs.values():
            better = "higher" if spec.greater_is_better else "lower"
            text = spec.description or spec.name
            rows.append(
                {
                    "name": f"{entry.name}/{spec.name}",
                    "plugin": entry.plugin,
                    "description": f"{text} ({better} is better)",
                }
            )
    return rows


def _describe(entry: Any) -> str:
    if isinstance(entry.target, Path):
        try:
            return str(read_yaml(entry.target).get("description", ""))
        except NlpTasksError:
            return "(invalid recipe)"
    return ""


@cli.group()
def recipes() -> None:
    """List, show, copy and validate recipes."""


@recipes.command(name="list")
@click.argument("task", required=False)
def recipes_list(task: str | None) -> None:
    """List recipes (of one TASK, or all).

    \b
    Example:
        nlptasks recipes list sentiment
    """
    regs = get_registries()
    if task is not None:
        regs.tasks.get(task)
    for entry in regs.recipes:
        if task is None or entry.name.startswith(f"{task}/"):
            click.echo(f"{entry.name:<28} {_describe(entry)}")


@recipes.command(name="show")
@click.argument("name")
@click.argument("overrides", nargs=-1)
@click.option("--resolved", is_flag=True, help="Show every key after extends and overrides.")
def recipes_show(name: str, overrides: tuple[str, ...], resolved: bool) -> None:
    """Print a recipe (TASK/NAME or NAME).

    \b
    Example:
        nlptasks recipes show sentiment/minilm --resolved train.epochs=1
    """
    path, task = locate_recipe(name)
    if not resolved and not overrides:
        click.echo(path.read_text(encoding="utf-8"), nl=False)
        return
    recipe = load_recipe(task, str(path), list(overrides))
    click.echo(dump_recipe(recipe), nl=False)
    if resolved:
        from nlptasks.training.distributed import describe

        # What the distributed section stands for: accelerate's plugin settings.
        settings = ", ".join(f"{k}={v}" for k, v in describe(recipe.distributed).items())
        click.echo(f"# distributed, with 2+ processes (one process trains plainly): {settings}")


@recipes.command(name="copy")
@click.argument("name")
@click.argument("destination", type=click.Path())
def recipes_copy(name: str, destination: str) -> None:
    """Copy a recipe to DESTINATION to edit it; never overwrites a file.

    \b
    Example:
        nlptasks recipes copy sentiment/minilm my-recipe.yaml
    """
    source, task = locate_recipe(name)
    target = Path(destination)
    if target.is_dir():
        target = target / source.name
    if target.exists():
        raise NlpTasksError(f"'{target}' already exists. Choose another destination.")
    # The copy must stand alone: resolve `extends` so it does not point at a sibling file.
    # It must also name its task: a built-in recipe takes it from its registration.
    own = read_yaml(source)
    raw = read_recipe_dict(source, task)
    raw.setdefault("task", task)
    if "extends" in own:
        text = yaml.safe_dump(raw, sort_keys=False)
    else:
        text = source.read_text(encoding="utf-8")
        if "task" not in own:  # after the opening comment, which shows the command
            lines = text.splitlines(keepends=True)
            head = next((i for i, line in enumerate(lines) if not line.startswith("#")), 0)
            text = "".join([*lines[:head], f"task: {task}\n", *lines[head:]])
    try:
        with target.open("x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text)
    except FileExistsError:
        raise NlpTasksError(f"'{target}' already exists. Choose another destination.") from None
    except OSError as exc:
        raise NlpTasksError(
            f"Cannot write '{target}': {exc.strerror}. Check that its folder exists."
        ) from None
    click.echo(
        f"Copied {name} to {target}. Run it with: nlptasks run {raw['task']} --recipe {target}"
    )


@recipes.command(name="validate")
@click.argument("paths", nargs=-1, required=True)
def recipes_validate(paths: tuple[str, ...]) -> None:
    """Validate recipe files or names; reports every problem.

    \b
    Example:
        nlptasks recipes validate my-recipe.yaml
    """
    failed = False
    for item in paths:
        try:
            path, task = locate_recipe(item)
            raw = read_recipe_dict(path, task)
            raw.setdefault("task", task)
            raw.setdefault("name", path.stem)
            validate(raw, str(path))  # the task's options class checks its section too
        except NlpTasksError as exc:
            failed = True
            click.secho(f"{clip(item)}: {shorten_message(str(exc))}", fg="red", err=True)
            continue
        click.echo(f"{item}: ok")
    if failed:
        sys.exit(1)


@cli.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Include built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plugins(context: click.Context, show_all: bool, as_json: bool) -> None:
    """List installed plugins: name, version and the hooks they implement. `plugins install`
    and `plugins uninstall` add and remove them.

    \b
    Example:
        nlptasks plugins --all
        nlptasks plugins install nlptasks-ner
        nlptasks plugins uninstall nlptasks-ner
    """
    if context.invoked_subcommand is not None:
        return
    infos = [i for i in plugin_infos() if show_all or not i.builtin]
    data: list[dict[str, Any]] = [
        {
            "name": i.name,
            "distribution": i.distribution,
            "version": i.version,
            "hooks": list(i.hooks),
        }
        for i in infos
    ]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo("No third-party plugins installed. Use --all to include built-in ones.")
    for row in data:
        click.echo(
            f"{row['name']} ({row['distribution']} {row['version']}): {', '.join(row['hooks'])}"
        )


@plugins.command("install")
@click.argument("packages", nargs=-1, required=True)
@click.option("--upgrade", "-U", is_flag=True, help="Upgrade plugins already installed.")
@click.option("--editable", "-e", is_flag=True, help="Install plugin folders in editable mode.")
def plugins_install(packages: tuple[str, ...], upgrade: bool, editable: bool) -> None:
    """Install plugins with pip, in the environment nlptasks runs in: package names (from
    the package index) or plugin folders.

    \b
    Example:
        nlptasks plugins install nlptasks-ner
        nlptasks plugins install -e ./nlptasks-ner
    """
    from nlptasks.plugins.installer import install_command, run_pip

    sys.exit(run_pip(install_command(packages, upgrade, editable)))


@plugins.command("new")
@click.argument("name")
@click.option(
    "--task-shape",
    type=click.Choice(["classification", "tokens", "generation"]),
    default="classification",
    show_default=True,
    help="What the task does: label a text, tag each word, or model and continue text.",
)
@click.option(
    "--directory", "-d", default=".", show_default=True, help="Where to create the package."
)
def plugins_new(name: str, task_shape: str, directory: str) -> None:
    """Scaffold an installable plugin package nlptasks-NAME for a new task NAME: pyproject
    with the entry point, task module, sample data, recipe, kit-based tests and README.

    \b
    Example:
        nlptasks plugins new emotion --task-shape classification
        cd nlptasks-emotion && pip install -e ".[test]" && pytest
    """
    from nlptasks.plugins.scaffold import installed_plugin, new_plugin

    created = new_plugin(name, task_shape, directory)
    if owner := installed_plugin(name):
        click.secho(
            f"Warning: an installed plugin ({owner}) is named '{name}' too; uninstall it "
            f"before installing this one, or only one of them will load.",
            fg="yellow",
            err=True,
        )
    click.echo(f"Created {created} (task '{name}', {task_shape}). Next:")
    click.echo(f'  cd {created} && pip install -e ".[test]" && pytest')
    click.echo(f"  nlptasks run {name}")


@plugins.command("uninstall")
@click.argument("packages", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def plugins_uninstall(packages: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugins with pip (never nlptasks itself).

    \b
    Example:
        nlptasks plugins uninstall nlptasks-ner -y
    """
    from nlptasks.plugins.installer import run_pip, uninstall_command

    sys.exit(run_pip(uninstall_command(packages, yes)))


_commands_loaded = False


from nlptasks.cli.consolidate import consolidate  # noqa: E402
from nlptasks.cli.estimate import estimate  # noqa: E402
from nlptasks.cli.probe import probe  # noqa: E402
from nlptasks.cli.results import compare, export, leaderboard, verify  # noqa: E402
from nlptasks.cli.serve import serve  # noqa: E402

for _command in (compare, leaderboard, verify, export, consolidate, estimate, probe, serve):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``nlptasks`` console script."""
    for number, argument in enumerate(sys.argv[1:], 1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:  # bytes the locale could not decode, kept as surrogates
            shown = argument.encode("utf-8", "backslashreplace").decode("ascii", "replace")
            click.secho(
                f"Error: argument {number} ({shown}) is not valid UTF-8. Type it as UTF-8.",
                fg="red",
                err=True,
            )
            sys.exit(1)
    # Installing, removing and scaffolding plugins must work when an installed plugin is
    # broken: these commands load no plugin.
    if sys.argv[1:3] not in (["plugins", "install"], ["plugins", "uninstall"], ["plugins", "new"]):
        _load_plugin_commands()
    try:
        cli()
    except SystemExit as exc:
        _leave_a_process_group(exc)
        raise


def _leave_a_process_group(exc: SystemExit) -> None:
    """A process of a torchrun/accelerate group exits without the interpreter's teardown,
    where gloo can abort a finished run (``training.distributed.leave``)."""
    distributed = sys.modules.get("nlptasks.training.distributed")
    if distributed is None or not distributed.joined_a_group():
        return
    code = exc.code
    if isinstance(code, str):  # sys.exit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        code = 1
    distributed.leave(int(code or 0))


def _load_plugin_commands() -> None:
    # Plugin commands need the plugins loaded; --help/--version must survive a broken plugin.
    global _commands_loaded
    if _commands_loaded:
        return
    _commands_loaded = True
    warnings.formatwarning = _one_line_warning
    try:
        call_hook("register_commands", cli=cli)
    except NlpTasksError as exc:
        click.secho(f"Error: {shorten_message(str(exc))}", fg="red", err=True)
        sys.exit(1)
