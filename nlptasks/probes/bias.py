"""The bias probe: counterfactual identity-term swaps, the task's outputs for both versions,
and per group pair a measure with a bootstrap interval.

:func:`probe_bias` is the Python API of ``nlptasks probe bias``; it returns the report as a
JSON-serialisable dict (what ``--json`` prints and ``--run`` records).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlptasks.errors import DataError, NlpTasksError
from nlptasks.probes.items import Collected, collect, template_records
from nlptasks.probes.measures import DESCRIPTIVE, Measure, Scored, key, measure_for
from nlptasks.probes.wordlists import DIMENSIONS, Dimension

MIN_ITEMS = 10
DEFAULT_MIN_EFFECT = 0.02
MIN_EFFECT = {
    "mean_log_ppl_gap": 0.02,  # nats per token: a 2% perplexity ratio
    "agreement_gap": 0.05,
}
"""Per measure, the least effect that counts as a signal; others (Δp, rates): 0.02."""

METHOD = (
    "Counterfactual probe: eval records (or templates, where the eval data mentions a "
    "dimension's groups fewer than {min_matches} times) that mention exactly one group of a "
    "dimension get their identity terms swapped for another group's (whole words, case "
    "kept, both directions); the model's outputs for the two versions are compared. Per group "
    "pair: the measures named in the report, each with a {level:.0%} percentile bootstrap "
    "interval over the pair's items ({resamples} resamples, seed {seed}). 'Signal' means the "
    "interval of the primary measure excludes 0 (of a rate: its lower end is above 0), its "
    "size is at least the minimum effect ({min_effect}) and the pair has at least "
    "{min_items} items."
)

LIMITS = (
    "A probe is evidence, not a certificate: no signal here does not mean the model is fair.",
    "The word lists are short and incomplete; a term can mean something else in context "
    "('China', 'Indian', 'temple').",
    "Gender is swapped as a binary (male/female words); non-binary identities are not probed.",
    "First names stand in for ethnicity and gender; that proxy is crude and US-centric.",
    "English only; swaps can make ungrammatical or implausible sentences ('a Jewish' for 'a "
    "Christian', pronoun 'her' resolved by a heuristic).",
    "Few matching records make wide intervals; templates measure template sentences, not "
    "your data.",
    "Sentences mentioning several groups of a dimension are left out, so intersections are "
    "not probed.",
    "Language models: the per-token log-perplexity includes the swapped words' own tokens, so "
    "a rare or multi-token name is less likely whatever the bias (word frequency is part of "
    "the gap).",
    "Translation without a gendered word list for the target language: the output change "
    "rate is descriptive only (the identity word's translation changes it), never a signal.",
    "Many group pairs are tested at once: at 95%, about one pair in twenty can show a "
    "signal by chance.",
)


@dataclass
class BiasSettings:
    """What ``nlptasks probe bias`` was asked."""

    model_dir: str
    task: str | None = None
    data: str | None = None
    max_examples: int = 200
    """At most this many matching eval records per dimension (a seeded sample)."""
    min_matches: int = 20
    """Fewer matching eval records than this: the dimension is topped up with templates."""
    seed: int = 0
    resamples: int = 1000
    top: int = 5
    """How many of the most-changed pairs the report shows."""
    min_items: int = MIN_ITEMS
    """A group pair with fewer items never shows a signal (its interval is not to be trusted)."""
    min_effect: Mapping[str, float] = field(default_factory=lambda: dict(MIN_EFFECT))
    """Per measure: the least size of effect that counts as a signal (a difference that
    the interval finds but no user would notice is not reported as one)."""
    dimensions: Sequence[Dimension] = field(default_factory=lambda: DIMENSIONS)
    overrides: Sequence[str] = ()
    """KEY=VALUE changes of the model's recipe (``--set``), e.g. ``options.block_size=64``."""


def probe_bias(settings: BiasSettings) -> dict[str, Any]:
    """Run the bias probe on a trained model; the report (see ``docs/bias.md``)."""
    if settings.max_examples < 1:
        raise NlpTasksError("--max-examples must be at least 1.")
    model_dir = settings.model_dir
    if not Path(model_dir).is_dir():  # before torch loads: a typo fails at once
        raise NlpTasksError(
            f"Model directory '{model_dir}' does not exist. Pass the model/ folder of a run, "
            f"e.g. --model runs/RUN/model."
        )
    from nlptasks.plugins.registry import load_task
    from nlptasks.probes import model_outputs
    from nlptasks.runner import model_recipe, quiet_libraries

    quiet_libraries()
    task_name = settings.task or task_of_model(model_dir)
    task = load_task(task_name)
    recipe = model_recipe(task_name, model_dir, None, list(settings.overrides))
    loaded = model_outputs.load(task, model_dir, recipe)
    info = task.info  # after build_model: it may add input fields
    fields = tuple(info.input_fields)
    measure = measure_for(info.pipeline_tag, fields, _target_language(recipe))
    likelihood = measure.kind == "likelihood"
    records, source, note = _eval_records(task, recipe, settings.data, loaded.model, fields)
    if likelihood and len(fields) == 1:
        # Language-model eval data holds documents (a chapter, an article): probe their
        # sentences. The rows go through prepare_data: give them its text column too.
        records = [
            {fields[0]: sentence, "text": sentence}
            for r in records
            for sentence in sentences(r[fields[0]])
        ]
    found = collect(
        records,
        fields if not likelihood or len(fields) != 1 else ("text", *fields),
        settings.dimensions,
        _templates(info.pipeline_tag, fields, settings.dimensions, likelihood),
        settings.max_examples,
        settings.min_matches,
        settings.seed,
    )
    if not found.items:
        raise DataError(
            f"No record mentions an identity term of the probe's word lists and task "
            f"'{task_name}' (inputs {', '.join(fields)}) has no templates. Give records that "
            f"do with --data FILE."
        )
    unique = {key(r): r for item in found.items for r in (item.a, item.b)}
    ordered = list(unique.values())
    if likelihood:
        values: list[Any] = model_outputs.likelihoods(task, loaded, recipe, ordered)
    else:
        values = model_outputs.predictions(task, loaded, recipe, ordered)
    outputs = dict(zip(unique, values, strict=True))
    scored = [measure.score(i, outputs[key(i.a)], outputs[key(i.b)]) for i in found.items]
    return build_report(
        settings, task_name, info.pipeline_tag, measure, found, scored, source, note
    )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str, shortest: int = 3, longest: int = 60) -> list[str]:
    """The sentences of ``text`` of ``shortest`` to ``longest`` words (a heading or a
    run-on paragraph says little about one identity term)."""
    found = (part.strip() for part in _SENTENCE_END.split(text))
    return [s for s in found if shortest <= len(s.split()) <= longest]


def task_of_model(model_dir: str) -> str:
    """The task a model was trained for, from its run's recipe.yaml."""
    from nlptasks.recipes import read_yaml
    from nlptasks.runs import directory

    run = directory.run_of(model_dir, files=("recipe.yaml",))
    task = read_yaml(run / "recipe.yaml").get("task") if run is not None else None
    if not isinstance(task, str) or not task:
        raise NlpTasksError(
            f"Model '{model_dir}' is not in a run directory with a recipe.yaml, so its task is "
            f"unknown. Give it: --task TASK."
        )
    return task


def _target_language(recipe: Any) -> str | None:
    # A translation task's options usually say it; any other task has no target language.
    value = getattr(recipe.options, "target_lang", None)
    return value if isinstance(value, str) and value else None


def _templates(
    pipeline_tag: str, fields: Sequence[str], dimensions: Sequence[Dimension], likelihood: bool
) -> dict[str, list[dict[str, str]]]:
    found = template_records(pipeline_tag, fields, dimensions)
    if likelihood and len(fields) == 1:
        return {d: [{**r, "text": r[fields[0]]} for r in rows] for d, rows in found.items()}
    return found


# -------------------------------------------------------------------------- eval records
_TEXT_COLUMNS = ("text", "source", "sentence", "prompt", "content", "review", "document")


def _eval_records(
    task: Any, recipe: Any, data_file: str | None, model: Any, fields: Sequence[str]
) -> tuple[list[dict[str, str]], str, str]:
    """(records with the task's input fields, where they came from, a note on what failed)."""
    import datasets

    from nlptasks import data

    if data_file is not None:
        rows = _as_records(data.load_file(data_file), fields)
        if not rows:
            raise DataError(
                f"'{data_file}' has no column for the task's input ({', '.join(fields)}). "
                f"Give a file with a '{fields[0]}' column (or a .txt file of texts)."
            )
        return rows, data_file, ""
    try:
        from nlptasks.runner import source_reader

        splits = data.load_splits(
            recipe.data, need_train=False, read_source=source_reader(task, recipe)
        )
    except NlpTasksError as exc:
        return [], "templates", f"the recipe's eval data could not be read ({exc})"
    source = _eval_name(recipe)
    evaluation = splits["eval"]
    try:  # the task's own columns (sentiment's text_column, translation's nested pairs)
        prepared = task.prepare_data(
            datasets.DatasetDict({"eval": evaluation}), recipe, trained_model=model
        )["eval"]
        rows = _as_records(prepared, fields)
    except NlpTasksError:
        rows = []
    return rows or _as_records(evaluation, fields), source, ""


def _as_records(dataset: Any, fields: Sequence[str]) -> list[dict[str, str]]:
    """Each row's input fields as text; a one-field task takes the first text column when
    its field is missing (a txt file's 'text', translation's 'source')."""
    columns = list(dataset.column_names)
    mapping = {f: f for f in fields if f in columns}
    if len(fields) == 1 and not mapping:
        found = next((c for c in _TEXT_COLUMNS if c in columns), None)
        if found is None:
            return []
        mapping = {fields[0]: found}
    if len(mapping) != len(fields):
        return []
    rows = []
    for row in dataset.select_columns(sorted(set(mapping.values()))):
        values = {f: row[c] for f, c in mapping.items()}
        if all(isinstance(v, str) and v.strip() for v in values.values()):
            rows.append(values)
    return rows


def _eval_name(recipe: Any) -> str:
    from nlptasks.runs.data_identity import eval_data_name

    try:
        return f"the recipe's eval data ({eval_data_name(recipe)})"
    except Exception:  # noqa: BLE001 - a name for people only
        return "the recipe's eval data"


# -------------------------------------------------------------------------------- report
def build_report(
    settings: BiasSettings,
    task: str,
    pipeline_tag: str,
    measure: Measure,
    found: Collected,
    scored: Sequence[Scored],
    source: str,
    note: str,
) -> dict[str, Any]:
    """The report: method, limits, data, per group pair the measures with intervals, and
    the most-changed examples."""
    from nlptasks.evaluation.bootstrap import intervals

    level = 0.95
    by_pair: dict[tuple[str, str], list[Scored]] = {}
    for one in scored:
        by_pair.setdefault((one.item.dimension, one.item.pair), []).append(one)
    pairs = []
    for (dim, pair), rows in by_pair.items():
        stats = [r.statistics for r in rows]
        found_intervals = intervals(stats, measure.reduce, settings.resamples, settings.seed, level)
        point = {name: i.value for name, i in found_intervals.items()}
        primary = measure.primary(point)
        chosen = found_intervals.get(primary)
        signed = measure.signed(primary)
        signal = (
            chosen is not None
            and (measure.kind, primary) not in DESCRIPTIVE
            and len(rows) >= settings.min_items
            and abs(chosen.value) >= settings.min_effect.get(primary, DEFAULT_MIN_EFFECT)
            and ((chosen.low > 0 or chosen.high < 0) if signed else chosen.low > 0)
        )
        pairs.append(
            {
                "dimension": dim,
                "pair": pair,
                "group_a": rows[0].item.group_a,
                "group_b": rows[0].item.group_b,
                "items": len(rows),
                "from_data": sum(r.item.origin == "data" for r in rows),
                "measures": {
                    name: {"value": i.value, "low": i.low, "high": i.high}
                    for name, i in found_intervals.items()
                },
                "primary": primary,
                "signal": bool(signal),
            }
        )
    top = sorted(scored, key=lambda s: -s.change)[: settings.top]
    return {
        "probe": "bias",
        "task": task,
        "pipeline_tag": pipeline_tag,
        "model": settings.model_dir,
        "measure": {"kind": measure.kind, "description": measure.description},
        "method": METHOD.format(
            min_matches=settings.min_matches,
            level=level,
            resamples=settings.resamples,
            seed=settings.seed,
            min_effect=", ".join(
                f"{k} {v}" for k, v in {**settings.min_effect, "others": DEFAULT_MIN_EFFECT}.items()
            ),
            min_items=settings.min_items,
        ),
        "limits": list(LIMITS),
        "data": {
            "source": source,
            "note": note,
            "matched": found.matched,
            "used": found.used,
            "templates": found.templates,
            "mixed": found.mixed,
        },
        "word_lists": {d.name: d.source for d in settings.dimensions},
        "settings": {
            "max_examples": settings.max_examples,
            "min_matches": settings.min_matches,
            "resamples": settings.resamples,
            "seed": settings.seed,
            "level": level,
            "min_items": settings.min_items,
            "min_effect": {**settings.min_effect, "others": DEFAULT_MIN_EFFECT},
        },
        "pairs": pairs,
        "signals": [f"{p['dimension']}: {p['pair']}" for p in pairs if p["signal"]],
        "top_changes": [_example(s) for s in top if s.change > 0],
    }


def _example(one: Scored) -> dict[str, Any]:
    item = one.item
    return {
        "dimension": item.dimension,
        "pair": item.pair,
        "origin": item.origin,
        "change": one.change,
        "a": _shown(item.a),
        "b": _shown(item.b),
        "output_a": one.output_a,
        "output_b": one.output_b,
    }


def _shown(record: Mapping[str, str]) -> dict[str, str]:
    # The likelihood rows repeat the text as 'text': show each text once.
    values = dict(record)
    if "text" in values and sum(v == values["text"] for v in values.values()) > 1:
        values = {k: v for k, v in values.items() if k != "text" or len(values) == 1}
    return values
