"""The one evaluation path, used by the trainer and by ``nlptasks eval``.

A task writes the first and the last step; this module owns the middle:

1. the task's ``eval_step`` (and, when generation is due, ``generate_step`` on the unwrapped
   model) turns a batch into per-example tensors;
2. those are padded along dim 1 across processes (``pad_across_processes``, as in the
   transformers ``run_qa_no_trainer`` / ``run_translation_no_trainer`` examples), gathered,
   and streamed batch by batch into the task's metric accumulator (evaluate's ``add_batch``
   / ``compute`` pattern), so no evaluation holds every logit of a large eval set;
3. the accumulator's ``compute(context)`` gets the raw examples, the features, the tokenizer
   and the token-weighted eval loss (SQuAD post-processing, BLEU and perplexity need them).

Batches are sorted by length (longest first, so memory problems show at once) and padded
dynamically; every gathered batch carries ``index``, the row of each output in
``context.features``, so outputs can be put back in input order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from nlptasks.errors import PluginError
from nlptasks.task import declared_metrics

if TYPE_CHECKING:
    import datasets
    from accelerate import Accelerator

    from nlptasks.recipes import Recipe

PAD_INDEX = -100
"""What per-example outputs are padded with along dim 1 (the ignore index of the losses)."""


@dataclass
class EvalContext:
    """What a task's metrics may use besides the gathered outputs."""

    examples: datasets.Dataset
    """The raw eval examples, as ``prepare_data`` returned them (references, contexts, ids)."""
    features: datasets.Dataset
    """The eval features, as ``preprocess`` returned them; ``outputs["index"]`` are rows here."""
    tokenizer: Any
    recipe: Recipe
    generated: bool = False
    """Whether this evaluation ran ``generate_step`` (generation metrics are due)."""
    loss_sum: float = 0.0
    """Sum of every target's loss over the eval set (filled in before ``compute``)."""
    loss_count: float = 0.0
    """Number of loss targets (examples or tokens) over the eval set."""
    feature_losses: Any = None
    """Each feature's summed loss and number of targets, a (features, 2) float64 tensor in
    feature order (filled in before ``compute``): per-example statistics of loss-based
    metrics (perplexity) come from here."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What a metric wants kept besides its values: ``extra["signatures"]`` (metric name ->
    signature string, e.g. sacreBLEU's) goes to results.json as ``metric_signatures``."""

    @property
    def loss(self) -> float:
        """The token-weighted mean eval loss (``exp`` of it is the perplexity)."""
        return self.loss_sum / self.loss_count if self.loss_count else math.nan


class MetricAccumulator(Protocol):
    """Streams one evaluation's outputs into metrics, like an ``evaluate`` metric."""

    def add_batch(self, outputs: Mapping[str, torch.Tensor]) -> None:
        """One gathered batch: each tensor has a row per example (padding rows removed), on
        the CPU, with ``index`` (rows of ``context.features``)."""
        ...

    def compute(self, context: EvalContext) -> dict[str, float]:
        """The metrics of everything added (``loss`` is added by evaluation)."""
        ...


@dataclass
class ExampleStatistics:
    """What one evaluation says about each example: for ``predictions.jsonl``, bootstrap
    confidence intervals and ``nlptasks compare``.

    ``statistics[i]`` are numbers that add up across examples (1 if correct, a question's F1,
    a sentence's n-gram counts); the task's ``metrics_from_statistics`` turns their sums over
    any set of examples into its metrics. ``records[i]`` is what a person reads about example
    ``i`` (its prediction and reference), JSON-serialisable.
    """

    records: list[dict[str, Any]]
    statistics: list[dict[str, float]]


class CollectOutputs:
    """An accumulator that keeps every output and hands them to ``compute_fn`` at the end,
    concatenated (padded along dim 1 with :data:`PAD_INDEX`) and in feature order.

    Fine for small per-example outputs (class ids, token labels); stream instead for logits
    of large eval sets.
    """

    def __init__(self, compute_fn: Any, examples_fn: Any = None) -> None:
        self._compute_fn = compute_fn
        self._examples_fn = examples_fn
        """``examples_fn(outputs, context) -> ExampleStatistics``, optional."""
        self._batches: list[dict[str, torch.Tensor]] = []

    def add_batch(self, outputs: Mapping[str, torch.Tensor]) -> None:
        self._batches.append(dict(outputs))

    def _joined(self) -> dict[str, torch.Tensor]:
        keys = self._batches[0].keys() if self._batches else ()
        joined = {k: concat_padded([b[k] for b in self._batches]) for k in keys}
        if "index" in joined:  # back to feature order
            order = torch.argsort(joined["index"])
            joined = {k: v[order] for k, v in joined.items()}
        return joined

    def compute(self, context: EvalContext) -> dict[str, float]:
        result: dict[str, float] = self._compute_fn(self._joined(), context)
        return result

    def example_statistics(self, context: EvalContext) -> ExampleStatistics | None:
        """Per-example records and statistics, when the task gave an ``examples_fn``."""
        if self._examples_fn is None:
            return None
        found: ExampleStatistics | None = self._examples_fn(self._joined(), context)
        return found


def concat_padded(tensors: Sequence[torch.Tensor], pad_index: int = PAD_INDEX) -> torch.Tensor:
    """Concatenate along dim 0 tensors whose dim 1 differs, padding with ``pad_index``."""
    if not tensors:
        return torch.empty(0)
    if tensors[0].ndim < 2:
        return torch.cat(list(tensors))
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        if t.shape[1] < width:
            pad = t.new_full((t.shape[0], width - t.shape[1], *t.shape[2:]), pad_index)
            t = torch.cat([t, pad], dim=1)
        padded.append(t)
    return torch.cat(padded)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length, longest first (little padding, and a batch too
    big for memory fails at once rather than at the end)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def check_statistics(
    task_name: str, statistics: list[dict[str, float]], reduce: Any, metrics: Mapping[str, float]
) -> None:
    """The per-example statistics of the whole eval set must give the metrics evaluation
    reported, or every interval and comparison built on them would be about another number."""
    from nlptasks.evaluation.bootstrap import point_estimate

    for name, value in point_estimate(statistics, reduce).items():
        reported = metrics.get(name)
        if reported is None or (math.isnan(value) and math.isnan(reported)):
            continue
        if not math.isclose(value, reported, rel_tol=1e-6, abs_tol=1e-9):
            raise PluginError(
                f"Task '{task_name}': metrics_from_statistics gives {name}={value} on the "
                f"whole eval set, but evaluation reported {reported}. Make the per-example "
                f"statistics add up to the reported metric."
            )


class Evaluator:
    """Evaluates a model on one eval set: the same code for training and ``nlptasks eval``."""

    def __init__(
        self,
        task: Any,
        tokenizer: Any,
        recipe: Recipe,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        accelerator: Accelerator,
    ) -> None:
        self.task = task
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.examples = examples
        self.features = features
        self.accelerator = accelerator
        self.signatures: dict[str, str] = {}
        """The metric signatures of the latest evaluation that reported any."""
        self._examples: list[tuple[dict[str, float], ExampleStatistics | None, Any]] = []
        """(metrics, per-example statistics, feature losses) of recent evaluations."""
        # A plain list: indexing a datasets column element by element is slow.
        lengths = list(features["length"]) if "length" in features.column_names else None
        size = recipe.train.eval_batch_size
        self._batches = (
            length_sorted_batches(lengths, size)
            if lengths is not None
            else [
                list(range(i, min(i + size, len(features)))) for i in range(0, len(features), size)
            ]
        )

    @property
    def can_generate(self) -> bool:
        return callable(getattr(self.task, "generate_step", None))

    def generation_due(self, evaluation_number: int, final: bool) -> bool:
        """Whether the ``evaluation_number``-th evaluation (from 1) runs generation: every
        ``generation.every`` evaluations, and always for the final model."""
        every = self.recipe.generation.every
        return self.can_generate and (final or bool(every and evaluation_number % every == 0))

    def evaluate(self, model: torch.nn.Module, generate: bool = False) -> dict[str, float]:
        """Metrics of ``model`` on the eval set; every process takes part and gets them."""
        acc = self.accelerator
        generate = generate and self.can_generate
        context = EvalContext(self.examples, self.features, self.tokenizer, self.recipe, generate)
        metrics = self.task.new_metrics(context)
        was_training = model.training
        model.eval()
        losses = torch.zeros((len(self.features), 2), dtype=torch.float64)
        try:
            with torch.inference_mode(), acc.autocast():
                for indices, real in self._shard():
                    outputs = self._outputs(model, indices, generate)
                    outputs["index"] = torch.tensor(indices, device=acc.device)
                    outputs["real"] = torch.full((len(indices),), int(real), device=acc.device)
                    gathered = self._gather(outputs)
                    rows = gathered["index"].long()
                    losses[rows, 0] = gathered.pop("loss").double()
                    losses[rows, 1] = gathered.pop("loss_count").double()
                    metrics.add_batch(gathered)
        finally:
            if was_training:
                model.train()
        context.loss_sum, context.loss_count = (float(v) for v in losses.sum(dim=0))
        context.feature_losses = losses
        computed = metrics.compute(context)
        if not isinstance(computed, Mapping):
            raise PluginError(
                f"Task '{self.task.name}': its metrics' compute() must return a dict of metric "
                f"values, not {type(computed).__name__}."
            )
        if "loss" in computed:
            raise PluginError(
                f"Task '{self.task.name}' computed a metric named 'loss'; evaluation reports the "
                f"loss itself (from eval_step's loss and loss_count). Rename the metric."
            )
        result = {"loss": context.loss, **{k: float(v) for k, v in computed.items()}}
        self._check_declared(result, generate)
        if signatures := context.extra.get("signatures"):
            self.signatures = {str(k): str(v) for k, v in dict(signatures).items()}
        per_example = getattr(metrics, "example_statistics", None)
        examples = per_example(context) if callable(per_example) else None
        reduce = getattr(self.task, "metrics_from_statistics", None)
        if examples is not None and callable(reduce):
            # Every process, at the first evaluation: not after training, at the end.
            check_statistics(self.task.name, examples.statistics, reduce, result)
        # The final metrics may be an earlier evaluation's (the best checkpoint's).
        self._examples = [*self._examples[-9:], (dict(result), examples, losses)]
        return result

    def examples_for(self, metrics: Mapping[str, float]) -> tuple[ExampleStatistics | None, Any]:
        """The per-example statistics and feature losses of the latest evaluation that gave
        exactly ``metrics``; (None, None) when none did."""
        for found, examples, losses in reversed(self._examples):
            if found.keys() == metrics.keys() and all(
                a == b or (math.isnan(a) and math.isnan(b))
                for a, b in ((found[k], float(metrics[k])) for k in found)
            ):
                return examples, losses
        return None, None

    def _shard(self) -> list[tuple[list[int], bool]]:
        """This process's batches: every ``num_processes``-th from its rank. A process left
        without a batch in the last round repeats the first one, marked not real, so that
        every process joins every gather."""
        acc = self.accelerator
        n, world, rank = len(self._batches), acc.num_processes, acc.process_index
        rounds = -(-n // world)
        mine = []
        for r in range(rounds):
            i = r * world + rank
            mine.append((self._batches[i], True) if i < n else (self._batches[0], False))
        return mine

    def _outputs(
        self, model: torch.nn.Module, indices: list[int], generate: bool
    ) -> dict[str, torch.Tensor]:
        columns = self.features[indices]
        values = zip(*columns.values(), strict=True)
        rows = [dict(zip(columns, row, strict=True)) for row in values]
        batch = {k: v.to(self.accelerator.device) for k, v in self.task.collate(rows).items()}
        outputs = self._checked(self.task.eval_step(model, batch), "eval_step", len(indices))
        if "loss" not in outputs:
            raise PluginError(
                f"Task '{self.task.name}': eval_step must return 'loss' (each example's summed "
                f"loss, shape (batch,)); it returned {', '.join(outputs) or 'nothing'}."
            )
        if "loss_count" not in outputs:
            outputs["loss_count"] = torch.ones_like(outputs["loss"])
        if generate:
            unwrapped = self.accelerator.unwrap_model(model)
            generated = self.task.generate_step(unwrapped, batch, self.recipe.generation)
            outputs.update(self._checked(generated, "generate_step", len(indices)))
        return outputs

    def _checked(self, outputs: Any, method: str, rows: int) -> dict[str, torch.Tensor]:
        """The task's per-example outputs, or a one-line error naming the broken rule."""
        if not isinstance(outputs, Mapping):
            raise PluginError(
                f"Task '{self.task.name}': {method} must return a dict of tensors, not "
                f"{type(outputs).__name__}."
            )
        for key, value in outputs.items():
            if key in ("index", "real"):
                raise PluginError(
                    f"Task '{self.task.name}': {method} returned '{key}', a name evaluation "
                    f"sets itself. Rename it."
                )
            if not isinstance(value, torch.Tensor) or value.ndim == 0 or len(value) != rows:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
                raise PluginError(
                    f"Task '{self.task.name}': {method} output '{key}' must be a tensor with one "
                    f"row per example ({rows}), got "
                    f"{f'shape {shape}' if shape is not None else type(value).__name__}."
                )
        return dict(outputs)

    def _gather(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pad dim 1 (lengths differ across processes) and dim 0 (the last batches differ in
        size), gather, and drop the padding rows and the repeated batches."""
        acc = self.accelerator
        if acc.num_processes > 1:
            outputs = acc.pad_across_processes(outputs, dim=1, pad_index=PAD_INDEX)
            outputs = acc.pad_across_processes(outputs, dim=0, pad_index=0)
            outputs = acc.gather(outputs)
        keep = outputs.pop("real").bool().cpu()
        return {k: v.cpu()[keep] for k, v in outputs.items()}

    def _check_declared(self, result: dict[str, float], generated: bool) -> None:
        """The task reports exactly what it declares, within the declared ranges."""
        specs = declared_metrics(self.task)
        expected = {n for n, s in specs.items() if generated or not s.needs_generation}
        problems = []
        if undeclared := sorted(set(result) - set(specs)):
            problems.append(f"undeclared: {', '.join(undeclared)}")
        if early := sorted((set(result) & set(specs)) - expected):
            problems.append(f"generation metrics without generating: {', '.join(early)}")
        if missing := sorted(expected - set(result)):
            problems.append(f"missing: {', '.join(missing)}")
        for name in sorted(set(result) & set(specs)):
            value, spec = result[name], specs[name]
            # NaN says "undefined" (e.g. no targets); a value outside the range is a bug.
            if not math.isnan(value) and not spec.low <= value <= spec.high:
                problems.append(f"{name}={value} outside [{spec.low}, {spec.high}]")
        if problems:
            raise PluginError(
                f"Task '{self.task.name}' reported metrics that do not match its declaration "
                f"({'; '.join(problems)}). Fix the task's metrics or their MetricSpecs."
            )
