"""The Task protocol: what a task plugin gives the shared trainer, evaluation and runner.

A task is a class with one declaration and eight methods; there is no trainer subclassing and
no base class. ``docs/plugins.md`` says when each is called; ``docs/examples/topic_task.py``
is a whole task in under 80 lines, and the built-in sentiment plugin
(``nlptasks/builtins/sentiment/task.py``) the worked example.

``nlptasks run`` calls, on one instance made with ``TaskClass()``: ``prepare_data`` ->
``build_model`` -> ``preprocess`` (each split) -> ``forward`` per batch, for training and
evaluation alike -> at each evaluation ``score`` (the outputs of every eval batch) and
``aggregate`` (summed statistics -> metrics). ``nlptasks eval`` calls ``build_model(...,
trained=True)`` -> ``prepare_data`` -> ``preprocess`` -> evaluation; ``nlptasks predict``
calls ``build_model(..., trained=True)`` -> ``predict``.

There is one metric path: ``score`` gives each example statistics that add up (1 if correct,
a question's F1, a sentence's n-gram counts) and ``aggregate`` turns their sums over any set
of examples into the metrics. The reported metrics (whole eval set), the bootstrap intervals
(resamples), ``nlptasks compare`` (paired resamples) and ``predictions.jsonl`` all come from
it, so they are always about the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import datasets
    import torch

    from nlptasks.recipes.schema import GenerationConfig, Recipe

from nlptasks.recipes.schema import NoOptions

Batch = Mapping[str, Any]
Record = Mapping[str, Any]
Outputs = Mapping[str, "torch.Tensor"]


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


# The transformers Auto class that loads a trained model, by its pipeline tag: a task's
# model kind unless its TaskInfo.model_classes says otherwise.
AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "text-generation": "AutoModelForCausalLM",
    "fill-mask": "AutoModelForMaskedLM",
    "translation": "AutoModelForSeq2SeqLM",
    "summarization": "AutoModelForSeq2SeqLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    "multiple-choice": "AutoModelForMultipleChoice",
}


LOSS = MetricSpec("loss", greater_is_better=False, low=0.0, description="mean eval loss")
"""Every evaluation reports ``loss`` (token-weighted over the eval set); tasks do not declare
it."""


@dataclass(frozen=True)
class TaskInfo:
    """What a task declares about itself; the core reads it without running the task."""

    name: str
    pipeline_tag: str
    """transformers pipeline / Hub tag of the trained model: the model card's tag, and the
    Auto class that loads it (``text-classification`` -> ``AutoModelForSequenceClassification``)."""
    metrics: tuple[MetricSpec, ...]
    """Every metric an evaluation reports besides ``loss``. The first one picks the best
    checkpoint unless the recipe's ``train.metric_for_best`` says otherwise."""
    input_fields: tuple[str, ...] = ("text",)
    """The fields of a record given to ``predict`` (``("text",)``, ``("question",
    "context")``); the core checks them before calling the task."""
    options: type = NoOptions
    """A dataclass of the task's own settings, validated as the recipe's ``options:`` (its
    optional ``problems()`` returns what is wrong, one line each)."""
    default_recipe: str = "default"
    """The recipe ``nlptasks run TASK`` uses without ``--recipe``."""
    model_classes: tuple[str, ...] | None = None
    """The kinds of model the task takes: names of transformers Auto classes
    (``("AutoModelForSequenceClassification",)``; translation takes
    ``("AutoModelForSeq2SeqLM", "AutoModelForCausalLM")``). None (the default): the Auto class
    of ``pipeline_tag`` (see ``AUTO_CLASSES``; a tag without one checks nothing); ``()``: any
    model. ``model_kinds`` is the result, the default filled in. The core
    (``nlptasks.model_fit``) holds every model to it, for every task, before ``build_model``
    loads the weights (from ``config.json``) and after (the built model):

    - a model saved with a head of another kind (``architectures`` names e.g.
      ``BertForSequenceClassification`` for a causal-LM task) is refused, naming both kinds;
      ``run`` also takes a base model (``AutoModel``, pretraining and language-model heads)
      to put its new head on; ``eval`` and ``predict`` take only a model of these kinds (or a
      base model, whose head is then new: see below);
    - ``eval`` and ``predict`` refuse a model any of whose weights transformers initialised
      at random (a head never trained: train it first), unless the user allows it
      (``--allow-untrained-head``, ``nlptasks.model_fit.allow_untrained_head()``);
    - weights whose shapes do not fit ``config.json`` are refused, naming the weight and the
      config value (``run`` may replace a head of another size, never the body);
    - a model taken as ``AutoModelForCausalLM`` must attend causally: an encoder (BERT) with
      a language-model head is refused.
    """

    def __post_init__(self) -> None:
        # A declaration mistake is one line when the plugin loads, not a traceback later.
        from nlptasks.errors import PluginError

        where = f"Task '{self.name}': TaskInfo"
        if not all(isinstance(spec, MetricSpec) for spec in self.metrics):
            raise PluginError(f"{where}.metrics must be MetricSpec(...) values, not names.")
        names = [spec.name for spec in self.metrics]
        if len(set(names)) != len(names) or LOSS.name in names:
            raise PluginError(
                f"{where}.metrics repeat a name or declare 'loss' ({', '.join(names)}); every "
                f"evaluation reports the loss itself."
            )
        if isinstance(self.input_fields, str) or not all(
            isinstance(f, str) for f in self.input_fields
        ):
            raise PluginError(f"{where}.input_fields must be a tuple of field names.")
        classes = self.model_classes
        if classes is not None and (
            isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes)
        ):
            raise PluginError(
                f"{where}.model_classes must be a tuple of transformers Auto class names, e.g. "
                f"('AutoModelForSequenceClassification',)."
            )

    @property
    def main_metric(self) -> str:
        return self.metrics[0].name if self.metrics else LOSS.name

    @property
    def model_kinds(self) -> tuple[str, ...]:
        """The Auto classes a model of this task must fit: ``model_classes`` as declared,
        else the one of ``pipeline_tag`` (none: any model). Declare ``model_classes``; read
        this."""
        if self.model_classes is not None:
            return tuple(self.model_classes)
        found = AUTO_CLASSES.get(self.pipeline_tag)
        return (found,) if found else ()


@dataclass
class Step:
    """One forward pass over a batch, for training and evaluation alike.

    Training sums ``loss`` over the accumulation window and divides the gradients by the
    summed ``count`` of every process (torchtune's way), so accumulation 4 x 8 equals batch
    32 even when batches hold different numbers of targets. Evaluation keeps both per example
    (the eval loss, perplexity and the loss intervals come from them) and hands ``outputs``
    to ``score``.
    """

    loss: torch.Tensor
    """Each example's summed loss, shape (batch,); it carries the gradient in training."""
    count: torch.Tensor | None = None
    """Each example's number of loss targets (tokens, or 1), shape (batch,); None: 1 each."""
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    """Small per-example tensors for ``score`` (predicted ids, n-best spans), first dimension
    = batch; never a whole vocabulary's logits. They may differ in their second dimension
    between batches: evaluation pads them with ``PAD_INDEX`` (-100)."""


@dataclass
class Scores:
    """What one evaluation says about each eval example.

    ``statistics[i]`` are numbers that add up across examples; ``aggregate`` turns their sums
    into metrics. ``records[i]`` is what a person reads about example ``i`` (its prediction
    and reference), JSON-serialisable: a line of ``predictions.jsonl``.
    """

    records: list[dict[str, Any]]
    statistics: list[dict[str, float]]
    signatures: dict[str, str] = field(default_factory=dict)
    """How a metric was computed, by metric name (sacreBLEU's signature): kept in results."""


@dataclass
class EvalContext:
    """What ``score`` may use besides the outputs."""

    examples: datasets.Dataset
    """The raw eval examples, as ``prepare_data`` returned them (references, contexts, ids)."""
    features: datasets.Dataset
    """The eval features, as ``preprocess`` returned them: output row ``i`` is feature ``i``."""
    tokenizer: Any
    recipe: Recipe
    generated: bool = False
    """Whether this evaluation ran ``generate_step`` (generation metrics are due)."""
    losses: Any = None
    """Each feature's summed loss and number of targets, a (features, 2) float64 tensor:
    what loss-based statistics (perplexity per block) are made of."""


@runtime_checkable
class Task(Protocol):
    """A task plugin: data shape, model, one forward step, metrics, predictions."""

    info: TaskInfo
    """A class attribute; a task whose metrics depend on its options (SQuAD 2.0 adds some)
    may replace it on the instance in ``prepare_data``, and one whose input fields depend on
    the model's recipe (sentiment's text pairs) in ``build_model``: ``predict`` checks the
    records against it again after ``build_model``."""

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        """Check and normalise the raw ``train`` / ``eval`` splits (raise DataError naming
        the fix); learn what the data says (e.g. labels). The result is ``context.examples``.

        ``trained_model`` is given when evaluating a trained model, whose labels rule.
        """
        ...

    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        """Return (model, tokenizer) from a local path or hub id: a base model to fine-tune,
        or with ``trained=True`` a model a run saved (for eval and predict), whose head and
        labels are kept as they are."""
        ...

    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        """Tokenise one split into features; keep a ``length`` column (tokens per feature)
        for length-grouped batches. A feature may map to several per example (QA windows).
        Features are padded into batches by the core (``pad_features``) unless the task
        collates them itself (``Collates``)."""
        ...

    def forward(self, model: torch.nn.Module, batch: Batch) -> Step:
        """One forward pass: each example's summed loss, its target count, and the small
        outputs ``score`` needs. The same call trains and evaluates."""
        ...

    def score(self, outputs: Outputs, context: EvalContext) -> Scores:
        """Per-example statistics (and readable records) of one evaluation, from the outputs
        of every eval batch, in feature order."""
        ...

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        """The task's metrics (not ``loss``) from statistics summed over any multiset of
        examples: the whole eval set gives the reported metrics, a bootstrap resample that
        resample's. Non-additive metrics (corpus BLEU, a correlation) are computed from the
        sums that make them up."""
        ...

    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Record],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """One JSON-serialisable prediction per record, in input order, under
        ``torch.inference_mode`` and the recipe's precision. A task that generates text may
        call ``write`` with text as it comes (``nlptasks predict`` in a terminal)."""
        ...

    def model_card(self) -> dict[str, Any]:
        """Facts for the model card's body (e.g. label names); a ``"metadata"`` key, if any,
        holds front-matter fields (e.g. ``language``)."""
        ...


# ------------------------------------------------------------------- optional capabilities
@runtime_checkable
class Collates(Protocol):
    """Optional: batches the core's padding cannot make (left-padded prompts)."""

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad a list of features into one batch of tensors."""
        ...


@runtime_checkable
class Generates(Protocol):
    """Optional: evaluation by generated text (BLEU of translations), on the schedule of the
    recipe's ``generation.every``."""

    def generate_step(
        self, model: torch.nn.Module, batch: Batch, settings: GenerationConfig
    ) -> dict[str, torch.Tensor]:
        """Per-example tensors from ``model.generate`` (``model`` is unwrapped), e.g. the
        generated ids; gathered and given to ``score`` like ``forward``'s outputs."""
        ...


@runtime_checkable
class Explains(Protocol):
    """Optional: token attributions of predictions (``nlptasks predict --explain``).

    ``nlptasks.explain`` has the shared machinery (Integrated Gradients on the embeddings
    through captum, log-probabilities of generated text, the renderers)."""

    def explain(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Record],
        recipe: Recipe,
        predictions: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """One JSON explanation per record, in input order, of ``predictions`` (what
        ``predict`` returned for ``records``): at least ``tokens`` (list of str) and
        ``attributions`` (one finite number per token); see ``nlptasks.explain.schema``.
        Called with gradients enabled, outside ``inference_mode``."""
        ...


@runtime_checkable
class ReadsSources(Protocol):
    """Optional: data the core cannot read alone (nested SQuAD JSON, line-aligned files)."""

    def read_source(
        self, recipe: Recipe, source: str, load: Callable[[], datasets.Dataset | None]
    ) -> datasets.Dataset | None:
        """The rows of one source (``train`` or ``eval``), one per example, before eval data
        is held out and sizes are capped. ``load()`` gives what the recipe's data section
        holds for that source (None when it holds none)."""
        ...


@runtime_checkable
class WritesSamples(Protocol):
    """Optional: outputs a person can read, from before and after fine-tuning."""

    def samples(
        self, model: torch.nn.Module, tokenizer: Any, recipe: Recipe
    ) -> list[dict[str, Any]]:
        """A few ``{input..., "output": ...}`` dicts (``RUN/samples.jsonl``)."""
        ...


def task_info(task: Any, name: str = "") -> TaskInfo:
    """The ``TaskInfo`` of a task class or instance, or a one-line PluginError."""
    info = getattr(task, "info", None)
    if not isinstance(info, TaskInfo):
        from nlptasks.errors import PluginError

        label = name or getattr(task, "__name__", type(task).__name__)
        raise PluginError(
            f"Task '{label}' has no 'info' (a nlptasks.TaskInfo). Declare it on the class: "
            f"info = TaskInfo(name=..., pipeline_tag=..., metrics=(...))."
        )
    return info


def missing_members(task: Any) -> list[str]:
    """The members of the Task protocol that ``task`` lacks (none for a conforming task)."""
    return [
        name
        for name in ("info", *sorted(n for n in vars(Task) if _is_protocol_method(n)))
        if not hasattr(task, name)
    ]


def _is_protocol_method(name: str) -> bool:
    return not name.startswith("_") and callable(vars(Task).get(name))


def check_step(task: Any, step: Any, rows: int) -> Step:
    """``forward``'s result for a batch of ``rows`` examples, or a one-line PluginError
    naming the broken rule (training and evaluation check alike)."""
    import torch

    from nlptasks.errors import PluginError

    name = task.info.name
    if not isinstance(step, Step):
        raise PluginError(
            f"Task '{name}': forward() must return nlptasks.Step(loss, count, outputs), not "
            f"{type(step).__name__}."
        )
    if not isinstance(step.outputs, Mapping):
        raise PluginError(
            f"Task '{name}': forward's outputs must be a dict of per-example tensors, not "
            f"{type(step.outputs).__name__}."
        )
    for what, value in (("loss", step.loss), ("count", step.count)):
        if value is None and what == "count":
            continue
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (rows,):
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            hint = (
                " Sum each example's loss; do not average the batch."
                if what == "loss"
                else " Count each example's targets (or leave count None: 1 each)."
            )
            raise PluginError(
                f"Task '{name}': forward's {what} must hold one number per example, shape "
                f"({rows},), got {found}.{hint}"
            )
    return step


def declared_metrics(task: Any) -> dict[str, MetricSpec]:
    """``loss`` and the task's own metrics by name."""
    specs: dict[str, MetricSpec] = {LOSS.name: LOSS}
    for spec in task_info(task).metrics:
        specs[spec.name] = spec
    return specs
