"""The one evaluation path, used by the trainer and by ``nlptasks eval``.

A task writes the first and the last step; this module owns the middle:

1. the task's ``forward`` (and, when generation is due, ``generate_step`` on the unwrapped
   model) turns a batch into each example's loss, target count and small outputs;
2. those are padded along dim 1 across processes (``pad_across_processes``, as in the
   transformers ``run_qa_no_trainer`` / ``run_translation_no_trainer`` examples), gathered
   and kept batch by batch; tasks reduce logits to small outputs in ``forward`` (a class id,
   a window's n-best spans), so no evaluation holds the logits of a large eval set;
3. the task's ``score`` turns the outputs, in feature order, into per-example statistics,
   and ``aggregate`` turns their sums into the metrics. That is the only way a metric is
   computed: the bootstrap and ``nlptasks compare`` resample the same statistics.

Batches are sorted by length (longest first, so memory problems show at once) and padded
dynamically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from nlptasks.batching import PAD_INDEX, concat_padded, length_sorted_batches
from nlptasks.errors import PluginError
from nlptasks.evaluation.heads import keep_heads_float32
from nlptasks.events import strict_json
from nlptasks.task import EvalContext, Generates, Scores, check_step, declared_metrics

if TYPE_CHECKING:
    import datasets
    from accelerate import Accelerator

    from nlptasks.recipes import Recipe


@dataclass
class Evaluation:
    """One evaluation of a model on the eval set: what results, cards, the bootstrap and
    reports receive."""

    metrics: dict[str, float]
    """``loss`` and the task's metrics, as reported."""
    scores: Scores = field(default_factory=lambda: Scores([], []))
    """Each example's record and statistics (``aggregate`` of their sums = ``metrics``)."""
    losses: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 2), dtype=torch.float64))
    """Each feature's summed loss and target count, (features, 2) float64."""
    generated: bool = False

    @property
    def signatures(self) -> dict[str, str]:
        """How metrics were computed (sacreBLEU's signature), by metric name."""
        return dict(self.scores.signatures)


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
        collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    ) -> None:
        self.task = task
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.examples = examples
        self.features = features
        self.accelerator = accelerator
        self.collate = collate
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
        return isinstance(self.task, Generates)

    def generation_due(self, evaluation_number: int, final: bool) -> bool:
        """Whether the ``evaluation_number``-th evaluation (from 1) runs generation: every
        ``generation.every`` evaluations, and always for the final model."""
        every = self.recipe.generation.every
        return self.can_generate and (final or bool(every and evaluation_number % every == 0))

    def evaluate(self, model: torch.nn.Module, generate: bool = False) -> Evaluation:
        """``model`` on the eval set; every process takes part and gets the result."""
        acc = self.accelerator
        generate = generate and self.can_generate
        was_training = model.training
        model.eval()
        losses = torch.zeros((len(self.features), 2), dtype=torch.float64)
        kept: list[dict[str, torch.Tensor]] = []
        # Metrics come from float32 logits: the body runs in the run's precision, the head
        # does not (bf16 logits carry 8 bits of mantissa into every score).
        keep_heads_float32(model)
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
                    kept.append(gathered)
        finally:
            if was_training:
                model.train()
        context = EvalContext(
            self.examples, self.features, self.tokenizer, self.recipe, generate, losses
        )
        scores = self._scores(_in_feature_order(kept), context)
        loss_sum, loss_count = (float(v) for v in losses.sum(dim=0))
        metrics = {"loss": loss_sum / loss_count if loss_count else math.nan}
        metrics.update(self._metrics(scores, generate))
        self._check_declared(metrics, generate)
        return Evaluation(metrics, scores, losses, generate)

    def _scores(self, outputs: dict[str, torch.Tensor], context: EvalContext) -> Scores:
        scores = self.task.score(outputs, context)
        if not isinstance(scores, Scores):
            raise PluginError(
                f"Task '{self.task.info.name}': score() must return nlptasks.Scores, not "
                f"{type(scores).__name__}."
            )
        name = self.task.info.name
        if len(scores.records) != len(scores.statistics):
            raise PluginError(
                f"Task '{name}': score() gave {len(scores.records)} records but "
                f"{len(scores.statistics)} statistics; give one of each per example."
            )
        rows = len(scores.statistics)
        if rows and rows not in (len(self.examples), len(self.features)):
            raise PluginError(
                f"Task '{name}': score() gave {rows} rows for {len(self.examples)} examples "
                f"({len(self.features)} features); give one per example (or per feature)."
            )
        pairs = zip(scores.records, scores.statistics, strict=True)
        for i, (record, statistics) in enumerate(pairs):
            # Plain numbers: they are summed, resampled and written to predictions.jsonl.
            if not isinstance(statistics, Mapping) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in statistics.values()
            ):
                raise PluginError(
                    f"Task '{name}': score()'s statistics of example {i} must be a dict of "
                    f"numbers (they are summed), got {statistics!r:.80}."
                )
            try:  # predictions.jsonl holds the records (NaN written as null)
                json.dumps(strict_json(record), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise PluginError(
                    f"Task '{name}': score()'s record of example {i} is not JSON ({exc}); give "
                    f"plain str/int/float values (call .item() or .tolist() on tensors)."
                ) from None
        return scores

    def _metrics(self, scores: Scores, generated: bool) -> dict[str, float]:
        """The task's metrics: ``aggregate`` of the statistics summed over the eval set (the
        bootstrap's point estimate, so intervals are always about the reported numbers)."""
        from nlptasks.evaluation.bootstrap import point_estimate

        computed = point_estimate(scores.statistics, self.task.aggregate)
        if not isinstance(computed, Mapping):
            raise PluginError(
                f"Task '{self.task.info.name}': aggregate() must return a dict of metric "
                f"values, not {type(computed).__name__}."
            )
        if "loss" in computed:
            raise PluginError(
                f"Task '{self.task.info.name}' computed a metric named 'loss'; evaluation "
                f"reports the loss itself (from forward's loss and count). Rename the metric."
            )
        if bad := [k for k, v in computed.items() if not _is_number(v)]:
            raise PluginError(
                f"Task '{self.task.info.name}': aggregate() gave '{bad[0]}' = "
                f"{computed[bad[0]]!r:.40}, not a number."
            )
        specs = declared_metrics(self.task)
        # Without generating there is nothing to score generation metrics on.
        return {
            name: float(value)
            for name, value in computed.items()
            if generated or not (name in specs and specs[name].needs_generation)
        }

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
        batch = {k: v.to(self.accelerator.device) for k, v in self.collate(rows).items()}
        step = self.task.forward(model, batch)
        outputs = self._checked(
            _step_tensors(self.task, step, len(indices)), "forward", len(indices)
        )
        if generate:
            unwrapped = self.accelerator.unwrap_model(model)
            generated = self.task.generate_step(unwrapped, batch, self.recipe.generation)
            outputs.update(self._checked(generated, "generate_step", len(indices)))
        return outputs

    def _checked(self, outputs: Any, method: str, rows: int) -> dict[str, torch.Tensor]:
        """The task's per-example outputs, or a one-line error naming the broken rule."""
        name = self.task.info.name
        if not isinstance(outputs, Mapping):
            raise PluginError(
                f"Task '{name}': {method} must return a dict of tensors, not "
                f"{type(outputs).__name__}."
            )
        for key, value in outputs.items():
            if key in ("index", "real") or (method != "forward" and key in _STEP_KEYS):
                raise PluginError(
                    f"Task '{name}': {method} returned '{key}', a name evaluation sets itself. "
                    f"Rename it."
                )
            if not isinstance(value, torch.Tensor) or value.ndim == 0 or len(value) != rows:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
                raise PluginError(
                    f"Task '{name}': {method} output '{key}' must be a tensor with one row per "
                    f"example ({rows}), got "
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
        if missing := sorted(expected - set(result)):
            problems.append(f"missing: {', '.join(missing)}")
        for name in sorted(set(result) & set(specs)):
            value, spec = result[name], specs[name]
            # NaN says "undefined" (e.g. no targets); a value outside the range is a bug.
            if not math.isnan(value) and not spec.low <= value <= spec.high:
                problems.append(f"{name}={value} outside [{spec.low}, {spec.high}]")
        if problems:
            raise PluginError(
                f"Task '{self.task.info.name}' reported metrics that do not match its "
                f"declaration ({'; '.join(problems)}). Fix the task's aggregate() or its "
                f"MetricSpecs."
            )


_STEP_KEYS = ("loss", "loss_count")


def _step_tensors(task: Any, step: Any, rows: int) -> dict[str, Any]:
    """A ``Step`` as one dict of per-example tensors (``loss``, ``loss_count``, outputs)."""
    step = check_step(task, step, rows)
    if clash := sorted(set(step.outputs) & set(_STEP_KEYS)):
        raise PluginError(
            f"Task '{task.info.name}': forward's outputs hold '{clash[0]}', a name evaluation "
            f"sets itself. Rename it."
        )
    count = step.count if step.count is not None else torch.ones_like(step.loss)
    return {"loss": step.loss.float(), "loss_count": count, **step.outputs}


def _is_number(value: Any) -> bool:
    """A real number: Python's or a one-element tensor/array's (``.item()``-able)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return getattr(value, "ndim", None) == 0 and isinstance(value.item(), (int, float))


def _in_feature_order(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The kept batches joined (padded along dim 1), rows in feature order."""
    keys = batches[0].keys() if batches else ()
    joined = {k: concat_padded([b[k] for b in batches]) for k in keys}
    if "index" in joined:
        order = torch.argsort(joined["index"])
        joined = {k: v[order] for k, v in joined.items()}
    return joined
