"""``nlptasks verify RUN``: did a run reach what its recipe's ``expect:`` section says?"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nlptasks.errors import NlpTasksError
from nlptasks.recipes import Expectation, build_dataclass, read_yaml
from nlptasks.runs.directory import Run, load_run


@dataclass(frozen=True)
class Check:
    metric: str
    value: float | None
    bound: str
    """``min`` or ``max``."""
    limit: float
    reference: float | None

    @property
    def passed(self) -> bool:
        if self.value is None or not math.isfinite(self.value):
            return False
        return self.value >= self.limit if self.bound == "min" else self.value <= self.limit


@dataclass
class Verdict:
    run: Run
    expect: Expectation
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def expectation(run: Run) -> Expectation:
    """The ``expect:`` section of the run's own recipe (RUN/recipe.yaml)."""
    path = run.path / "recipe.yaml"
    if not path.is_file():
        raise NlpTasksError(f"{run.path} has no recipe.yaml to read expectations from.")
    raw = read_yaml(path).get("expect")
    if raw is None:
        raise NlpTasksError(
            f"The recipe of {run.path} has no 'expect:' section, so there is nothing to verify. "
            f"Add one (expect.min / expect.max, reference, data, source) and re-run."
        )
    built, problems = build_dataclass(Expectation, raw, "expect")
    if built is not None:
        problems += built.problems()  # bounds that check nothing, NaN bounds
    if problems or built is None:
        raise NlpTasksError(f"{path}: {problems[0] if problems else 'bad expect section'}")
    return built


def recipe_expectation(run: Run, recipe: str) -> Expectation:
    """The ``expect:`` section of ``recipe`` (a name of the run's task, or a YAML path):
    expectations written after the run was made, checked against the same kind of run."""
    from nlptasks.recipes import load_recipe

    loaded = load_recipe(run.task, recipe)
    made_with = str(run.results.get("model") or "")
    if made_with and loaded.model != made_with:
        raise NlpTasksError(
            f"Recipe '{recipe}' expects results of model '{loaded.model}', but {run.path} "
            f"fine-tuned '{made_with}'. Name the recipe the run was made with."
        )
    if loaded.expect is None:
        raise NlpTasksError(
            f"Recipe '{recipe}' has no 'expect:' section, so there is nothing to verify. Name a "
            f"recipe with one, or leave out --recipe to use the run's own."
        )
    return loaded.expect


def verify(run_dir: str, recipe: str | None = None) -> Verdict:
    """Check the run against its own recipe's ``expect:`` section, or ``recipe``'s."""
    run = load_run(run_dir)
    expect = expectation(run) if recipe is None else recipe_expectation(run, recipe)
    _check_same_data(run, expect)
    metrics = run.metrics
    checks = []
    for bound, limits in (("min", expect.min), ("max", expect.max)):
        for metric, limit in limits.items():
            if metric not in metrics:
                known = ", ".join(sorted(metrics))
                raise NlpTasksError(
                    f"The recipe expects metric '{metric}', which the run did not report (it "
                    f"has {known}). Fix expect.{bound}.{metric}."
                )
            value = metrics[metric]
            checks.append(Check(metric, value, bound, limit, expect.reference.get(metric)))
    return Verdict(run, expect, checks)


def _check_same_data(run: Run, expect: Expectation) -> None:
    """A run on other data than the expectation was measured on proves nothing either way:
    refuse it, naming what differs (``expect.examples`` / ``expect.sha256`` against what
    results.json records)."""
    scored = run.results["data"]["eval"]
    differs = []
    if expect.examples is not None and scored.get("examples") != expect.examples:
        differs.append(f"{scored.get('examples')} examples, not {expect.examples}")
    if expect.sha256 is not None and scored.get("sha256") != expect.sha256:
        found = str(scored.get("sha256"))[:12]
        differs.append(f"files with SHA-256 {found}..., not {expect.sha256[:12]}...")
    if differs:
        measured = f" ({expect.data})" if expect.data else ""
        raise NlpTasksError(
            f"Run {run.path} was evaluated on other data than its recipe's expect: section was "
            f"measured on{measured}: {scored.get('name')}, {'; '.join(differs)}. Its numbers "
            f"cannot be checked against it; run the recipe on its own data to verify it."
        )
