"""The Task protocol: what a task plugin provides to the shared trainer, evaluation and runner.

Tasks plug in by implementing this protocol; there is no trainer subclassing and no base
class. ``docs/plugins.md`` says when each method is called and what state a task may keep;
the built-in sentiment plugin (``plugins/sentiment/task.py``) is the worked example.

A run calls, in order, on one instance made with ``TaskClass()``: ``prepare_data`` ->
``build_model`` -> ``preprocess`` (each split) -> the trainer's ``collate`` /
``count_targets`` / ``compute_loss`` per batch and, at each evaluation, ``new_metrics`` ->
(``eval_step`` [+ ``generate_step``] per batch -> ``add_batch``) -> ``compute``. ``nlptasks
eval`` calls ``load_trained`` -> ``prepare_data`` -> ``preprocess`` -> evaluation;
``nlptasks predict`` calls ``load_trained`` -> ``predict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import datasets
    import torch

    from nlptasks.evaluation.evaluator import EvalContext, MetricAccumulator
    from nlptasks.recipes import GenerationConfig, Recipe

Batch = Mapping[str, Any]
Record = Mapping[str, Any]


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task reports: its name, direction and range.

    ``needs_generation`` marks metrics computed from generated text; they are reported only by
    evaluations that generate (see ``generation.every``).
    """

    name: str
    greater_is_better: bool
    low: float = -math.inf
    high: float = math.inf
    needs_generation: bool = False
    description: str = ""


LOSS = MetricSpec("loss", greater_is_better=False, low=0.0, description="mean eval loss")
"""Every evaluation reports ``loss`` (token-weighted over the eval set); tasks do not declare
it."""


@runtime_checkable
class Task(Protocol):
    """A task plugin: data shape, model head, loss, metrics and predictions."""

    name: ClassVar[str]
    default_recipe: ClassVar[str]
    """Recipe used by ``nlptasks run TASK`` without ``--recipe``."""
    metrics: ClassVar[tuple[MetricSpec, ...]]
    """Every metric an evaluation reports besides ``loss``, with its direction."""
    main_metric: ClassVar[str]
    """Metric that picks the best checkpoint unless the recipe says otherwise."""
    input_fields: ClassVar[tuple[str, ...]]
    """The fields of a record given to ``predict`` (``("text",)``, ``("question",
    "context")``); ``nlptasks predict`` checks them before calling the task."""
    options_class: ClassVar[type]
    """A dataclass of the task's own settings, validated as the recipe's ``options:``."""
    pipeline_tag: ClassVar[str]
    """transformers pipeline / Hub tag of the trained model (for the model card)."""

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        """Check and normalise the raw ``train`` / ``eval`` splits (raise DataError naming
        the fix); learn what the data says (e.g. labels). The result is what evaluation
        hands back as ``context.examples``.

        ``trained_model`` is given when evaluating an existing model, whose labels rule.
        """
        ...

    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        """Return (model, tokenizer) ready to fine-tune, from a local path or hub id."""
        ...

    def load_trained(self, model_dir: str) -> tuple[torch.nn.Module, Any]:
        """Return (model, tokenizer) saved by a previous run (for eval and predict)."""
        ...

    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        """Tokenise one split into features; keep a ``length`` column (tokens per feature)
        for length-grouped batches. A feature may map to several per example (QA windows)."""
        ...

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad a list of features into one batch (dynamic padding)."""
        ...

    def count_targets(self, batch: Batch) -> int:
        """How many loss terms (examples, tokens) a batch holds; the loss is averaged by it."""
        ...

    def compute_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The loss of a batch, summed (not averaged) over its targets."""
        ...

    def eval_step(self, model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example tensors (first dimension = batch) for the metrics.

        ``loss`` holds each example's summed loss and the optional ``loss_count`` its number
        of targets (default 1); the eval loss is their ratio over the whole set. Tensors may
        differ in their second dimension between batches and processes: evaluation pads them
        with ``nlptasks.evaluation.evaluator.PAD_INDEX`` (-100) before gathering.
        """
        ...

    def new_metrics(self, context: EvalContext) -> MetricAccumulator:
        """A fresh accumulator for one evaluation: evaluation calls its ``add_batch`` with
        each gathered batch of outputs and then ``compute(context)``."""
        ...

    def predict(
        self, model: torch.nn.Module, tokenizer: Any, records: Sequence[Record], recipe: Recipe
    ) -> list[dict[str, Any]]:
        """One JSON-serialisable prediction per record, in input order. Called under
        ``torch.inference_mode`` and the recipe's precision."""
        ...

    def model_card_info(self) -> dict[str, Any]:
        """Facts for the model card's body (e.g. label names)."""
        ...


class ReadsExamples(Protocol):
    """Optional: a task whose files hold examples nested (official SQuAD JSON)."""

    def read_examples(self, dataset: datasets.Dataset, source: str) -> datasets.Dataset:
        """One row per example, from one loaded source (``train`` or ``eval``), before eval
        data is held out and ``data.max_*_examples`` caps the sizes."""
        ...


class ReadsSources(Protocol):
    """Optional: data in files only the task can read (line-aligned parallel text)."""

    def read_source(self, recipe: Recipe, source: str) -> datasets.Dataset | None:
        """The rows of one source (``train`` or ``eval``) from files the task's options name,
        or None to let the core load it from the recipe's data section."""
        ...


class ScoresExamples(Protocol):
    """Optional: metrics from per-example statistics, for confidence intervals, the run's
    ``predictions.jsonl`` and ``nlptasks compare``. The task's metric accumulator provides
    the statistics (``example_statistics(context)``, see ``CollectOutputs``'s
    ``examples_fn``)."""

    def metrics_from_statistics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """The task's metrics (not ``loss``) from per-example statistics summed over any
        multiset of examples: the whole eval set gives the reported metrics, a bootstrap
        resample gives that resample's."""
        ...


class WritesSamples(Protocol):
    """Optional: outputs a person can read, from before and after fine-tuning."""

    def samples(
        self, model: torch.nn.Module, tokenizer: Any, recipe: Recipe
    ) -> list[dict[str, Any]]:
        """A few ``{input..., "output": ...}`` dicts (``RUN/samples.jsonl``)."""
        ...


class StreamsPredictions(Protocol):
    """Optional: predictions written piece by piece (``nlptasks predict`` in a terminal)."""

    def predict_stream(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        record: Record,
        recipe: Recipe,
        write: Callable[[str], None],
    ) -> dict[str, Any]:
        """``predict`` for one record, calling ``write`` with text as it comes, then "\\n"."""
        ...


class GeneratingTask(Task, Protocol):
    """A task with generation-based evaluation (BLEU, exact match of generated answers)."""

    def generate_step(
        self, model: torch.nn.Module, batch: Batch, settings: GenerationConfig
    ) -> dict[str, torch.Tensor]:
        """Per-example tensors from ``model.generate`` (``model`` is unwrapped), e.g. the
        generated ids; padded, gathered and added to the metrics like ``eval_step``'s."""
        ...


def declared_metrics(task: Any) -> dict[str, MetricSpec]:
    """``loss`` and the task's own metrics by name."""
    specs: dict[str, MetricSpec] = {LOSS.name: LOSS}
    for spec in getattr(task, "metrics", ()):
        specs[spec.name] = spec
    return specs
