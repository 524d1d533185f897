"""``nlptasks compare RUN_A RUN_B``: do two runs on the same eval data differ significantly?

A paired bootstrap over the examples both runs scored (their ``predictions.jsonl``): each
resample draws examples once and scores both runs on them, so the interval of the difference
holds the variation the data causes, not the examples one run happened to find easy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nlptasks.errors import NlpTasksError, first_line
from nlptasks.evaluation import bootstrap
from nlptasks.runs.directory import IDENTITY_FIELDS, Run, load_run


@dataclass
class RunComparison:
    a: Run
    b: Run
    examples: int
    resamples: int
    seed: int
    metrics: dict[str, bootstrap.Comparison]
    not_compared: dict[str, str] = field(default_factory=dict)
    """Metric -> why it is not in ``metrics`` (none is left out without a word)."""


def compare(path_a: str, path_b: str, resamples: int = 1000, seed: int = 0) -> RunComparison:
    a, b = load_run(path_a), load_run(path_b)
    if a.task != b.task:
        raise NlpTasksError(
            f"{a.path} is a {a.task} run and {b.path} a {b.task} run. Compare runs of one task."
        )
    rows_a, rows_b = a.predictions(), b.predictions()
    _check_same_examples(a, b, rows_a, rows_b)
    from nlptasks.plugins.registry import load_task

    task = load_task(a.task)
    stats_a = [r["statistics"] for r in rows_a]
    stats_b = [r["statistics"] for r in rows_b]
    for run, stats in ((a, stats_a), (b, stats_b)):
        _check_statistics(run, stats, task.aggregate)
    found = bootstrap.paired(stats_a, stats_b, task.aggregate, resamples=resamples, seed=seed)
    not_compared = {}
    for metric in sorted({*a.metrics, *b.metrics} - found.keys()):
        not_compared[metric] = (
            "the evaluation's own loss, not a per-example statistic"
            if metric == "loss"
            else "undefined in the resamples (no finite value)"
        )
    return RunComparison(a, b, len(rows_a), resamples, seed, found, not_compared)


def _check_statistics(run: Run, stats: list[dict[str, Any]], aggregate: Any) -> None:
    """The installed task must turn the run's statistics into the metrics the run reported
    (the reported metrics are exactly that aggregate): a plugin that renamed or changed its
    statistics since the run would compare something else, or fail."""
    try:
        point = dict(bootstrap.point_estimate(stats, aggregate))
        problem = ""
        for metric, recorded in run.metrics.items():
            if metric == "loss" or recorded is None or not math.isfinite(recorded):
                continue
            value = point.get(metric)
            if value is None:
                problem = f"they give no '{metric}'"
            elif not math.isclose(value, recorded, rel_tol=1e-6, abs_tol=1e-9):
                problem = f"they give {metric} {value:.6g}, the run reported {recorded:.6g}"
            if problem:
                break
    except Exception as exc:  # a plugin's aggregate over statistics it no longer knows
        problem = f"aggregate() fails on them: {type(exc).__name__}: {first_line(exc)}"
    if problem:
        made = run.results.get("task_plugin") or {}
        then = made.get("version") or "an unrecorded version"
        from nlptasks.runs.results import task_plugin

        now = task_plugin(run.task)
        raise NlpTasksError(
            f"The statistics in {run.path}/predictions.jsonl do not match task '{run.task}' "
            f"as installed ({now['distribution']} {now['version']}; the run was made with "
            f"{then}): {problem}. Compare runs made with the installed plugin (re-run this "
            f"one), or install the version it was made with."
        )


def _check_same_examples(
    a: Run, b: Run, rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]
) -> None:
    data_a, data_b = a.results.get("data", {}), b.results.get("data", {})
    eval_a, eval_b = data_a.get("eval", {}), data_b.get("eval", {})
    for key in ("name", "split", "examples"):
        if eval_a.get(key) != eval_b.get(key):
            raise NlpTasksError(
                f"The runs evaluated different data ({key}: {eval_a.get(key)!r} vs "
                f"{eval_b.get(key)!r}). A paired comparison needs the same examples."
            )
    if eval_a.get("sha256") and eval_b.get("sha256") and eval_a["sha256"] != eval_b["sha256"]:
        raise NlpTasksError(
            f"The runs evaluated different data ({eval_a.get('name')} vs {eval_b.get('name')}: "
            f"their files differ). A paired comparison needs the same examples."
        )
    if len(rows_a) != len(rows_b):
        raise NlpTasksError(
            f"{a.path} scored {len(rows_a)} examples and {b.path} {len(rows_b)}. A paired "
            f"comparison needs the same eval data (same data settings and max_eval_examples)."
        )
    for i, (row_a, row_b) in enumerate(zip(rows_a, rows_b, strict=True)):
        for key in IDENTITY_FIELDS:
            if key in row_a and key in row_b and row_a[key] != row_b[key]:
                raise NlpTasksError(
                    f"Example {i} differs between the runs ({key} {str(row_a[key])[:40]!r} vs "
                    f"{str(row_b[key])[:40]!r}). A paired comparison needs the same examples "
                    f"in the same order."
                )
