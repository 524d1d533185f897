"""Model cards built with huggingface_hub (``ModelCard``, ``ModelCardData``, ``EvalResult``),
so that ``ModelCard.load(path).data.eval_results`` gives back every metric of the run and of
every later ``nlptasks eval``: the Hub's model-index, which leaderboards read.

:func:`run_model_card` is a finished run's README.md; :func:`model_card` the same card from
plain values; :func:`add_eval_results` adds a later evaluation to a card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from nlptasks.models import base_model_id, license_files
from nlptasks.runs.data_identity import data_source, eval_data_name, eval_split_name, local_data
from nlptasks.runs.provenance import command_line
from nlptasks.runs.rundir import recipe_yaml

if TYPE_CHECKING:
    from nlptasks.recipes import Recipe
    from nlptasks.task import Task


@dataclass(frozen=True)
class EvalData:
    """The data an evaluation scored: the model-index ``dataset`` of its results."""

    name: str
    type: str
    split: str
    config: str | None = None
    examples: int | None = None
    """How many examples: a subset of the same split is another result."""


def eval_results(
    task: str,
    pipeline_tag: str,
    data: EvalData,
    metrics: Mapping[str, float],
    intervals: Mapping[str, Sequence[float]] | None = None,
) -> list[EvalResult]:
    """One EvalResult per metric (not the loss; an undefined metric is no result: the Hub's
    model-index wants numbers). A 95% interval goes in the metric's ``args``."""
    found = []
    for name, value in metrics.items():
        if name == "loss" or value is None or not math.isfinite(value):
            continue
        interval = (intervals or {}).get(name)
        args = None
        if interval is not None and all(math.isfinite(v) for v in interval):
            args = {"confidence_interval_95": [round(interval[0], 4), round(interval[1], 4)]}
        found.append(
            EvalResult(
                task_type=pipeline_tag,
                task_name=task,
                dataset_type=data.type,
                dataset_name=data.name,
                dataset_config=data.config,
                dataset_split=data.split,
                dataset_args={"examples": data.examples} if data.examples else None,
                metric_type=name,
                metric_value=round(float(value), 4),
                metric_name=name.replace("_", " "),
                metric_args=args,
            )
        )
    return found


@dataclass
class CardContent:
    """What a run's card says besides its results."""

    run_name: str
    task: str
    pipeline_tag: str
    base_model: str | None
    model_name: str
    train_data: str
    """A readable name of the training data (for the body)."""
    datasets: list[str]
    """Hub dataset ids for the front matter (none for local files or nlptasks' own)."""
    license: str | None
    """The recipe's license; else the task's (``model_card()["metadata"]``), else ``other``."""
    recipe_yaml: str
    command: str
    train_summary: dict[str, Any]
    extra: dict[str, Any]
    front_matter: dict[str, Any]
    train_examples: int | None = None
    usage: str | None = None
    """The card's "Use" section; None: :func:`usage` from the task name and pipeline tag."""


def build_card(content: CardContent, results: list[EvalResult]) -> ModelCard:
    """The card: front matter from ModelCardData, then the body."""
    ours: dict[str, Any] = {
        "base_model": content.base_model,  # a Hub id; None for a local model
        "tags": ["nlptasks", content.task],
        "pipeline_tag": content.pipeline_tag,
        "library_name": "transformers",
        "model_name": content.run_name,
        "eval_results": results or None,
    }
    # A task's keys (language, its license) go in; ours are never replaced by them.
    extra = {k: v for k, v in content.front_matter.items() if k not in ours and k != "model-index"}
    extra["license"] = content.license or extra.get("license") or "other"
    if extra["license"] == "other":
        # The Hub asks an "other" license for its name: it is the base model's and the data's.
        extra.setdefault("license_name", "see-base-model-and-data")
    extra["datasets"] = content.datasets or extra.get("datasets")
    data = ModelCardData(**ours, **extra)
    return ModelCard("---\n" + data.to_yaml() + "\n---\n" + body(content, results))


def body(content: CardContent, results: list[EvalResult]) -> str:
    dataset = content.train_data or "its data"
    origin = content.base_model or content.model_name
    summary = "\n".join(f"- {key}: {value}" for key, value in content.train_summary.items())
    extra = "\n".join(f"- {key}: {value}" for key, value in content.extra.items())
    return (
        f"# {content.run_name}\n\n"
        f"`{origin}` fine-tuned for **{content.task}** on {dataset} with nlptasks.\n\n"
        f"## Results\n\n{results_table(results)}\n"
        "Intervals are 95% percentile bootstrap intervals over the eval examples "
        "(results.json says how many resamples and the seed).\n\n"
        f"## Training\n\n{summary}" + (f"\n{extra}" if extra else "") + "\n\n"
        f"## Reproduce\n\n```bash\n{content.command}\n```\n\n"
        "The resolved recipe (`recipe.yaml` in the run directory):\n\n"
        f"```yaml\n{content.recipe_yaml}```\n\n"
        f"## Use\n\n{content.usage or usage(content.task, content.pipeline_tag)}"
        "## Intended use\n\n"
        f"{content.task} ({content.pipeline_tag}) on text like its training data "
        f"({dataset}). It was trained and evaluated as the results above say; check it on "
        "your own data before relying on it.\n\n"
        "## Limitations\n\n"
        f"- Scores hold for the eval data above only{_size(content)}; other domains, "
        "languages and text lengths are not measured.\n"
        f"- It inherits the limitations and biases of `{origin}` and of its training data.\n"
        "- An interval that overlaps another model's does not show that the two differ; "
        "`nlptasks compare RUN_A RUN_B` tests that on the same examples.\n"
    )


def _size(content: CardContent) -> str:
    n = content.train_examples
    return f" (trained on {n} examples)" if n else ""


def results_table(results: list[EvalResult]) -> str:
    rows = ["| dataset | split | metric | value | 95% interval |", "|---|---|---|---|---|"]
    for r in results:
        interval = (r.metric_args or {}).get("confidence_interval_95")
        shown = f"{interval[0]} – {interval[1]}" if interval else ""
        rows.append(
            f"| {r.dataset_name} | {r.dataset_split} | {r.metric_name} | {r.metric_value} | "
            f"{shown} |"
        )
    return "\n".join(rows) + "\n"


def add_eval_results(path: Path, results: list[EvalResult]) -> ModelCard:
    """A card with ``results`` added (``nlptasks eval``): a result for the same dataset,
    split and metric is replaced, the others kept; the results table follows."""
    card = ModelCard.load(path)
    key = _result_key
    kept = [r for r in card.data.eval_results or [] if key(r) not in {key(n) for n in results}]
    card.data.eval_results = kept + results
    if card.data.model_name is None:
        card.data.model_name = path.parent.name
    text = str(card.text)
    start = text.find("## Results\n\n")
    if start >= 0:
        end = text.find("\n\n", text.find("|---", start))
        text = (
            text[: start + len("## Results\n\n")]
            + results_table(card.data.eval_results)
            + (text[end + 1 :] if end >= 0 else "")
        )
    return ModelCard("---\n" + card.data.to_yaml() + "\n---\n" + text)


def _result_key(r: EvalResult) -> tuple[Any, ...]:
    examples = (r.dataset_args or {}).get("examples")
    return (
        r.task_type,
        r.dataset_type,
        r.dataset_name,
        r.dataset_config,
        r.dataset_split,
        examples,
        r.metric_type,
    )


def run_model_card(
    recipe: Recipe, task: Task, summary: dict[str, Any], model_dir: Path | None = None
) -> str:
    """The model card of a finished run (README.md of the run directory); ``summary`` is its
    results.json."""
    facts = dict(task.model_card())
    metadata = facts.pop("metadata", None) or {}
    kept = license_files(model_dir) if model_dir is not None else []
    if kept:
        facts["license files"] = (
            ", ".join(p.name for p in kept) + " (from the base model, in the model folder: "
            "their terms apply to this model and go with every copy of it)"
        )
    text = model_card(
        run_name=recipe.run_name or f"{recipe.task}-{recipe.name or 'recipe'}",
        task=recipe.task,
        pipeline_tag=task.info.pipeline_tag,
        base_model=base_model_id(recipe.model),
        model_name=recipe.model,
        dataset_name=data_source(recipe),
        dataset_split=eval_split_name(recipe),
        eval_data=card_eval_data(recipe, summary["data"]["eval_examples"]),
        datasets=hub_datasets(recipe),
        metrics=summary["metrics"]["eval"],
        intervals=summary.get("confidence_intervals", {}).get("eval"),
        recipe_yaml=recipe_yaml(recipe),
        extra=facts,
        front_matter=dict(metadata),
        train_summary={k: v for k, v in summary["train"].items() if k != "history"},
        license=recipe.license,
        command=reproduce_command(recipe),
        train_examples=summary["data"]["train_examples"],
        usage=task_usage(task),
    )
    # A card rebuilt from results.json keeps the bias probes recorded there.
    probes = summary.get("bias_probes")
    if isinstance(probes, dict) and probes.get("pairs") is not None:
        text = with_bias_probes(text, bias_probes_section(probes))
    return text


def model_card(
    *,
    run_name: str,
    task: str,
    pipeline_tag: str,
    base_model: str | None,
    model_name: str,
    dataset_name: str,
    dataset_split: str,
    metrics: dict[str, float],
    recipe_yaml: str,
    extra: dict[str, Any],
    train_summary: dict[str, Any],
    front_matter: dict[str, Any] | None = None,
    dataset_type: str | None = None,
    dataset_config: str | None = None,
    intervals: dict[str, list[float]] | None = None,
    eval_data: EvalData | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
    command: str | None = None,
    train_examples: int | None = None,
    usage: str | None = None,
) -> str:
    """A README.md with Hub model-index front matter (the leaderboard format), built with
    huggingface_hub's ModelCard.

    ``base_model`` is a Hub id (None for a local model: the Hub would reject a path);
    ``front_matter`` adds task keys such as ``language`` (never replacing ours)."""
    data = eval_data or EvalData(
        dataset_name, dataset_type or dataset_name, dataset_split, dataset_config
    )
    content = CardContent(
        run_name=run_name,
        task=task,
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        model_name=model_name,
        train_data=dataset_name,
        # The Hub's `datasets` lists dataset ids: local files have none.
        datasets=datasets if datasets is not None else ([dataset_type] if dataset_type else []),
        license=license,
        recipe_yaml=recipe_yaml,
        command=command or f"nlptasks run {task} --recipe recipe.yaml",
        train_summary=train_summary,
        extra=extra,
        front_matter=dict(front_matter or {}),
        train_examples=train_examples,
        usage=usage,
    )
    results = eval_results(task, pipeline_tag, data, metrics, intervals)
    return str(build_card(content, results))


def card_eval_data(recipe: Recipe, examples: int | None) -> EvalData:
    """The model-index ``dataset`` of an evaluation with this recipe (the run's card and
    every ``nlptasks eval`` build it here, so the same data is the same entry)."""
    local = local_data(recipe)
    name = eval_data_name(recipe)
    kind = name if local else (recipe.data.dataset or name)
    config = None if local else recipe.data.dataset_config
    return EvalData(name, kind, eval_split_name(recipe), config, examples)


def hub_datasets(recipe: Recipe) -> list[str]:
    """The Hub dataset ids a run used (the card's ``datasets``): none for local files or a
    dataset that an nlptasks plugin registered (its name is no Hub id)."""
    from nlptasks.plugins.registry import get_registries

    dataset = recipe.data.dataset
    if not dataset or local_data(recipe) or dataset in get_registries().datasets:
        return []
    return [dataset]


def reproduce_command(recipe: Recipe) -> str:
    """The command that re-runs this exact recipe: recipe.yaml holds every resolved value
    (absolute data paths included), so it does from any directory."""
    exact = f"# exactly, from the run directory\nnlptasks run {recipe.task} --recipe recipe.yaml"
    given = command_line()
    return f"# as it was run\n{given}\n{exact}" if given else exact


@runtime_checkable
class DescribesUsage(Protocol):
    """Optional: a task that says how its trained model is used (the card's "Use" section)."""

    def usage_snippet(self, model_path: str) -> str:
        """Markdown (fenced code blocks) that uses the model in ``model_path``."""
        ...


def task_usage(task: Task) -> str:
    """The card's "Use" section: the task's own snippet (:class:`DescribesUsage`), else one
    made from its pipeline tag and its input fields (a text pair shows as a pair)."""
    if isinstance(task, DescribesUsage):
        text = task.usage_snippet("PATH/TO/model")
        if not isinstance(text, str):
            from nlptasks.errors import PluginError

            raise PluginError(
                f"Task '{task.info.name}': usage_snippet() must return Markdown text, not "
                f"{type(text).__name__}."
            )
        return text.rstrip("\n") + "\n\n"
    return usage(task.info.name, task.info.pipeline_tag, tuple(task.info.input_fields))


def usage(task: str, pipeline_tag: str, input_fields: Sequence[str] = ("text",)) -> str:
    """The card's usage snippets: nlptasks always, with a record of the task's input fields;
    a transformers pipeline where transformers still has one for the task (version 5 removed
    question-answering and translation), given a pair where the task reads two texts."""
    import json

    record = json.dumps({name: f"<{name}>" for name in input_fields})
    text = (
        f"```bash\necho '{record}' > inputs.jsonl\n"
        f"nlptasks predict {task} --model PATH/TO/model --input inputs.jsonl\n```\n\n"
    )
    try:
        from transformers.pipelines import SUPPORTED_TASKS
    except ImportError:  # pragma: no cover - transformers is a dependency
        SUPPORTED_TASKS = {}
    if pipeline_tag in SUPPORTED_TASKS:
        fields = list(input_fields)
        if pipeline_tag == "text-classification" and len(fields) == 2:
            # The pipeline takes a pair as {"text", "text_pair"}: token_type_ids and all.
            call = f'pipe({{"text": "<{fields[0]}>", "text_pair": "<{fields[1]}>"}})'
        else:
            call = f'pipe("<{fields[0] if fields else "text"}>")'
        text += (
            "```python\nfrom transformers import pipeline\n"
            f'pipe = pipeline("{pipeline_tag}", model="PATH/TO/model")\n{call}\n```\n\n'
        )
    return text


BIAS_HEADING = "## Bias probes"


def with_bias_probes(text: str, section: str) -> str:
    """The card ``text`` with its "Bias probes" section set to ``section`` (markdown, no
    heading): an earlier one is replaced, else it goes before "## Training" (after the
    results), else at the end. Everything else in the card is kept as it is."""
    block = f"{BIAS_HEADING}\n\n{section.rstrip()}\n\n"
    start = text.find(BIAS_HEADING + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(BIAS_HEADING))
        return text[:start] + block + (text[end + 1 :] if end >= 0 else "")
    before = text.find("\n## Training\n")
    if before >= 0:
        return text[: before + 1] + block + text[before + 1 :]
    return text.rstrip("\n") + "\n\n" + block


def bias_probes_section(report: Mapping[str, Any]) -> str:
    """The "Bias probes" section's body (no heading) from a bias probe's report (the
    ``bias_probes`` of results.json): the data used, a table per group pair, method, limits."""
    lines = [
        f"`nlptasks probe bias` ({report['measure']['kind']}): {report['measure']['description']}.",
        "",
        f"Records from {report['data']['source']}; {probe_data_line(report)}.",
        "",
        "| dimension | pair | items (from data) | measure | value [95% interval] | signal |",
        "|---|---|---|---|---|---|",
    ]
    for pair in report["pairs"]:
        primary = pair["measures"].get(pair["primary"], {})
        lines.append(
            f"| {pair['dimension']} | {pair['pair']} | {pair['items']} ({pair['from_data']}) | "
            f"{pair['primary']} | {probe_interval(primary)} | "
            f"{'yes' if pair['signal'] else 'no'} |"
        )
    lines += ["", report["method"], "", "Limits:", ""]
    lines += [f"- {limit}" for limit in report["limits"]]
    return "\n".join(lines) + "\n"


def probe_interval(found: Mapping[str, Any]) -> str:
    """``+0.123 [+0.100, +0.150]``: a probe measure and its interval (none when undefined)."""
    value, low, high = found.get("value"), found.get("low"), found.get("high")
    if not isinstance(value, (int, float)):
        return "n/a"
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low != low:
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def probe_data_line(report: Mapping[str, Any]) -> str:
    """Per dimension: records matched, used and templates added."""
    data = report["data"]
    return "; ".join(
        f"{name}: {data['matched'].get(name, 0)} matched, {data['used'].get(name, 0)} used"
        + (f", +{data['templates'][name]} templates" if data["templates"].get(name) else "")
        for name in data["matched"]
    )
