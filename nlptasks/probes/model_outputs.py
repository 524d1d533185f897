"""A trained model's outputs for probe records, through the task contract only: ``predict``
for what a user would see, ``prepare_data`` + ``preprocess`` + ``forward`` for likelihoods.
The model loads once for every record of every dimension."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlptasks.errors import PluginError
from nlptasks.recipes import Recipe


@dataclass
class Loaded:
    """A trained model, its tokenizer and the precision it runs in."""

    model: Any
    tokenizer: Any
    precision: str


def load(task: Any, model_dir: str, recipe: Recipe) -> Loaded:
    """Build the trained model as ``nlptasks predict`` does, with the same checks."""
    import torch

    from nlptasks import model_fit, models
    from nlptasks.training import precision

    model_fit.check_model_fits(task, model_dir, "predict")
    with models.remote_code(recipe.trust_remote_code):
        model, tokenizer = task.build_model(model_dir, recipe, trained=True)
    model_fit.check_built_model(task, model, tokenizer, model_dir, "predict")
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return Loaded(model, tokenizer, precision.resolve(recipe.train.mixed_precision))


def predictions(
    task: Any, loaded: Loaded, recipe: Recipe, records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``task.predict`` over ``records`` (one dict each, in order), checked like predict's."""
    from nlptasks.runner import check_records, checked_predictions
    from nlptasks.training import precision

    if not records:
        return []
    fields = task.info.input_fields
    checked = check_records(task, [{f: r[f] for f in fields} for r in records])
    with precision.inference(loaded.precision, loaded.model):
        found = task.predict(loaded.model, loaded.tokenizer, checked, recipe)
    return checked_predictions(task.info.name, found, len(checked))


def likelihoods(
    task: Any, loaded: Loaded, recipe: Recipe, rows: Sequence[Mapping[str, str]]
) -> list[tuple[float, float]]:
    """Each row's summed loss and number of targets under the model: the rows go through the
    task's ``prepare_data`` together, then ``preprocess`` one at a time (so that packing never
    joins two of them) and ``forward`` in batches."""
    import datasets

    from nlptasks.batching import collate_for, predict_batches
    from nlptasks.task import check_step
    from nlptasks.training import precision

    if not rows:
        return []
    columns = sorted({k for row in rows for k in row})
    table = {c: [str(row.get(c, "")) for row in rows] for c in columns}
    raw = datasets.DatasetDict({"eval": datasets.Dataset.from_dict(table)})
    prepared = task.prepare_data(raw, recipe, trained_model=loaded.model)["eval"]
    if len(prepared) != len(rows):
        raise PluginError(
            f"Task '{task.info.name}': prepare_data kept {len(prepared)} of {len(rows)} probe "
            f"records; the likelihood probe needs one example per record. Give records it "
            f"keeps (--data FILE)."
        )
    features: list[dict[str, Any]] = []
    owner: list[int] = []
    for i in range(len(prepared)):
        for feature in task.preprocess(prepared.select([i]), loaded.tokenizer, recipe):
            features.append(dict(feature))
            owner.append(i)
    sums = [[0.0, 0.0] for _ in rows]
    collate = collate_for(task, loaded.tokenizer)
    device = next(loaded.model.parameters()).device
    with precision.inference(loaded.precision, loaded.model):
        for indices, batch in predict_batches(
            features, collate, recipe.train.eval_batch_size, device
        ):
            step = check_step(task, task.forward(loaded.model, batch), len(indices))
            losses = step.loss.float().tolist()
            counts = step.count.float().tolist() if step.count is not None else [1.0] * len(indices)
            for i, loss, count in zip(indices, losses, counts, strict=True):
                sums[owner[i]][0] += loss
                sums[owner[i]][1] += count
    return [(loss, count) for loss, count in sums]
