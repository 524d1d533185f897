"""``nlptasks leaderboard [DIR...]``: rank finished runs per task, eval data and metric.

Folders are read, never written. One that is not a finished run of this schema is skipped
with a note saying why; nothing in a folder can make the command fail.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nlptasks.runs.directory import NotARunError, Run, load_run

FORMATS = ("table", "markdown", "json", "csv")


@dataclass
class Row:
    rank: int
    run: str
    model: str
    recipe: str | None
    value: float | None
    low: float | None
    high: float | None
    learning_rate: float | None
    epochs: float | None
    max_steps: int | None
    batch_size: int | None
    lora: bool | None
    date: str | None
    duration_seconds: float | None


@dataclass
class Board:
    """The ranking of one task's runs on one eval data set by one metric."""

    task: str
    dataset: str
    split: str
    examples: int | None
    metric: str
    higher_is_better: bool
    rows: list[Row]


@dataclass
class Leaderboard:
    boards: list[Board]
    skipped: list[tuple[str, str]]
    """(folder, why) of every folder that was not read."""


def find_runs(folders: Sequence[str | Path]) -> tuple[list[Run], list[tuple[str, str]]]:
    """Every finished run in ``folders`` (each a run directory or a folder of them)."""
    runs: list[Run] = []
    skipped: list[tuple[str, str]] = []
    for folder in map(Path, folders):
        try:
            if not folder.is_dir():
                skipped.append((str(folder), "not a folder"))
                continue
            candidates = (
                [folder]  # a run itself, finished or not (a failed one is skipped, saying so)
                if (folder / "results.json").exists() or (folder / "recipe.yaml").exists()
                else sorted(
                    p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                )
            )
        except OSError as exc:  # unreadable: a note, never a failure
            skipped.append((str(folder), f"unreadable ({exc.strerror or exc})"))
            continue
        for candidate in candidates:
            try:
                runs.append(load_run(candidate))
            except NotARunError as exc:
                skipped.append((str(candidate), str(exc)))
            except Exception as exc:  # never crash on what a folder holds
                skipped.append((str(candidate), f"unreadable ({type(exc).__name__}: {exc})"))
    return runs, skipped


def build(
    folders: Sequence[str | Path], task: str | None = None, metric: str | None = None
) -> Leaderboard:
    runs, skipped = find_runs(folders)
    groups: dict[tuple[str, str, str, int, str, str], list[Run]] = {}
    for run in runs:
        if task and run.task != task:
            continue
        data = run.results["data"]["eval"]
        # Only runs on the same examples are ranked together: same data, split, size, bytes,
        # and the same inputs and references (en->ro and ro->en of one file are two boards).
        key = (run.task, data["name"], data["split"], data["examples"], data["sha256"] or "",
               _examples_key(run))  # fmt: skip
        groups.setdefault(key, []).append(run)
    titles: dict[tuple[str, str, str], int] = {}
    for key in groups:
        titles[key[:3]] = titles.get(key[:3], 0) + 1
    boards = []
    for (task_name, dataset, split, _, _, examples_key), members in sorted(groups.items()):
        if titles[(task_name, dataset, split)] > 1 and examples_key:
            # Boards that would read alike say which examples they hold.
            split = f"{split}, eval set {examples_key[:8]}"
        chosen = metric or _main_metric(members)
        ranked = [r for r in members if chosen in r.metrics]
        if not ranked:
            skipped += [(str(r.path), f"has no metric '{chosen}'") for r in members]
            continue
        higher = _higher_is_better(ranked, chosen)
        boards.append(
            Board(
                task_name,
                dataset,
                split,
                ranked[0].results["data"]["eval"].get("examples"),
                chosen,
                higher,
                _rank(ranked, chosen, higher),
            )
        )
    return Leaderboard(boards, skipped)


def _examples_key(run: Run) -> str:
    """The SHA-256 of the run's scored examples (inputs and references): recorded in
    results.json, else computed from predictions.jsonl; empty when neither is there."""
    recorded = run.results["data"]["eval"].get("examples_sha256")
    if isinstance(recorded, str):
        return recorded
    from nlptasks.runs.results import examples_sha256

    try:
        return examples_sha256(run.predictions())
    except NotARunError:
        return ""


def _main_metric(runs: Iterable[Run]) -> str:
    for run in runs:
        if main := run.results.get("main_metric"):
            return str(main)
    return "loss"


def _higher_is_better(runs: Sequence[Run], metric: str) -> bool:
    for run in runs:
        direction = run.results.get("metric_directions", {}).get(metric)
        if direction:
            return bool(direction == "higher")
    return metric != "loss"


def _rank(runs: list[Run], metric: str, higher: bool) -> list[Row]:
    def value(run: Run) -> float | None:
        found = run.metrics.get(metric)
        return found if isinstance(found, (int, float)) and math.isfinite(found) else None

    def key(run: Run) -> tuple[bool, float]:
        found = value(run)
        # Runs without a value come last; the better value first.
        return (found is None, 0.0 if found is None else (-found if higher else found))

    rows = []
    for rank, run in enumerate(sorted(runs, key=key), 1):
        interval = run.results.get("confidence_intervals", {}).get("eval", {}).get(metric)
        low, high = interval if interval else (None, None)
        hyper = run.results.get("hyperparameters", {})
        provenance = run.results.get("provenance", {})
        rows.append(
            Row(
                rank=rank,
                run=run.path.name,
                model=str(run.results.get("model")),
                recipe=run.results.get("recipe"),
                value=value(run),
                low=low,
                high=high,
                learning_rate=hyper.get("learning_rate"),
                epochs=hyper.get("epochs"),
                max_steps=hyper.get("max_steps"),
                batch_size=hyper.get("batch_size"),
                lora=hyper.get("lora"),
                date=_date(provenance.get("finished_at")),
                duration_seconds=provenance.get("duration_seconds"),
            )
        )
    return rows


def _date(iso: Any) -> str | None:
    if not isinstance(iso, str):
        return None
    try:
        return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


# -------------------------------------------------------------------------- rendering
COLUMNS = (
    "#",
    "model",
    "recipe",
    "metric ± 95% CI",
    "lr",
    "epochs/steps",
    "batch",
    "date",
    "duration",
    "run",
)


def _cells(row: Row, metric: str) -> list[str]:
    shown = "—" if row.value is None else f"{row.value:.4g}"
    if row.value is not None and row.low is not None and row.high is not None:
        shown += f" [{row.low:.4g}, {row.high:.4g}]"
    length = (
        f"{row.max_steps} steps" if row.max_steps else f"{row.epochs:g} ep" if row.epochs else ""
    )
    return [
        str(row.rank),
        row.model + (" (LoRA)" if row.lora else ""),
        row.recipe or "",
        shown,
        f"{row.learning_rate:g}" if row.learning_rate is not None else "",
        length,
        str(row.batch_size or ""),
        row.date or "",
        _duration(row.duration_seconds),
        row.run,
    ]


def _duration(seconds: float | None) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return ""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _title(board: Board) -> str:
    direction = "higher is better" if board.higher_is_better else "lower is better"
    size = f", {board.examples} examples" if board.examples else ""
    return f"{board.task} · {board.dataset} ({board.split}{size}) · {board.metric}, {direction}"


def markdown(board: Leaderboard) -> str:
    parts = []
    for b in board.boards:
        lines = [
            f"### {_title(b)}",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        lines += ["| " + " | ".join(_cells(r, b.metric)) + " |" for r in b.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")


def as_json(board: Leaderboard) -> str:
    from nlptasks.events import strict_json

    found = {
        "boards": [{**asdict(b), "rows": [asdict(r) for r in b.rows]} for b in board.boards],
        "skipped": [{"folder": f, "why": why} for f, why in board.skipped],
    }
    # Strict JSON: a non-finite number from a results file is null, never NaN.
    return json.dumps(strict_json(found), indent=2, allow_nan=False)


def as_csv(board: Leaderboard) -> str:
    out = io.StringIO()
    fields = ["task", "dataset", "split", "metric", *Row.__dataclass_fields__]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for b in board.boards:
        for r in b.rows:
            writer.writerow(
                {
                    "task": b.task,
                    "dataset": b.dataset,
                    "split": b.split,
                    "metric": b.metric,
                    **asdict(r),
                }
            )
    return out.getvalue()


def rich_tables(board: Leaderboard) -> list[Any]:
    from rich.table import Table

    tables = []
    for b in board.boards:
        table = Table(title=_title(b), title_justify="left")
        for column in COLUMNS:
            table.add_column(column, justify="right" if column in ("#", "lr", "batch") else "left")
        for r in b.rows:
            table.add_row(*_cells(r, b.metric))
        tables.append(table)
    return tables
