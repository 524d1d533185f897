"""``nlptasks compare RUN_A RUN_B``: do two runs on the same eval data differ significantly?

A paired bootstrap over the examples both runs scored (their ``predictions.jsonl``): each
resample draws examples once and scores both runs on them, so the interval of the difference
holds the variation the data causes, not the examples one run happened to find easy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nlptasks.errors import NlpTasksError
from nlptasks.evaluation import bootstrap
from nlptasks.runs.directory import Run, load_run

# Fields of a prediction row that say which example it is (the same in both runs).
IDENTITY_FIELDS = ("id", "text", "question", "source", "reference", "references")


@dataclass
class RunComparison:
    a: Run
    b: Run
    examples: int
    resamples: int
    seed: int
    metrics: dict[str, bootstrap.Comparison]


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
    found = bootstrap.paired(
        [r["statistics"] for r in rows_a],
        [r["statistics"] for r in rows_b],
        task.aggregate,
        resamples=resamples,
        seed=seed,
    )
    return RunComparison(a, b, len(rows_a), resamples, seed, found)


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
