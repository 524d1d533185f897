"""The Task protocol: what a task plugin provides to the shared trainer and the runner.

Tasks plug in by implementing this protocol; there is no trainer subclassing. The runner calls,
in order: ``prepare_data`` -> ``build_model`` -> ``preprocess`` -> (trainer: ``collate``,
``compute_loss``, ``eval_step``, ``compute_metrics``) -> ``save``. ``load_trained`` and
``predict`` serve ``nlptasks eval`` and ``nlptasks predict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import datasets
    import torch

    from nlptasks.recipes import Recipe

Batch = Mapping[str, Any]


@runtime_checkable
class Task(Protocol):
    """A task plugin: data shape, model head, loss, metrics and predictions."""

    name: ClassVar[str]
    default_recipe: ClassVar[str]
    """Recipe used by ``nlptasks run TASK`` without ``--recipe``."""
    main_metric: ClassVar[str]
    """Metric that picks the best checkpoint unless the recipe says otherwise."""
    metric_names: ClassVar[tuple[str, ...]]
    """Every metric an evaluation reports (``loss`` included); checked before a run starts."""
    greater_is_better: ClassVar[bool]
    pipeline_tag: ClassVar[str]
    """transformers pipeline / Hub tag of the trained model (for the model card)."""

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        """Check and normalise columns (raise DataError naming the fix); learn labels.

        ``trained_model`` is given when evaluating an existing model, whose labels rule.
        """
        ...

    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        """Return (model, tokenizer) ready to fine-tune, from a local path or hub id."""
        ...

    def load_trained(self, model_dir: str) -> tuple[torch.nn.Module, Any]:
        """Return (model, tokenizer) saved by a previous run."""
        ...

    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        """Tokenise; the result keeps a ``length`` column for length-grouped batching."""
        ...

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad a list of preprocessed examples into one batch (dynamic padding)."""
        ...

    def count_targets(self, batch: Batch) -> int:
        """How many loss terms (examples, tokens) a batch holds; the loss is averaged by it."""
        ...

    def compute_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The loss of a batch, summed (not averaged) over its targets."""
        ...

    def eval_step(self, model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example tensors (first dimension = batch) for the metrics, gathered across
        processes by the trainer. ``loss`` holds each example's summed loss and the optional
        ``loss_count`` its number of targets (default 1): the eval loss is their ratio."""
        ...

    def compute_metrics(self, outputs: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Metrics from the gathered ``eval_step`` outputs of a whole evaluation."""
        ...

    def predict(self, model: torch.nn.Module, tokenizer: Any, inputs: Sequence[Any]) -> list[Any]:
        """Predictions for raw inputs, one JSON-serialisable object each."""
        ...

    def model_card_info(self) -> dict[str, Any]:
        """Extra facts for the model card (e.g. label names)."""
        ...
