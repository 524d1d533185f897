"""What ``nlptasks export`` checks an exported model against: the run's own model on real
inputs (the run's eval data, tokenised as the task tokenises it).

A serving stack loads the exported folder with a transformers Auto class (or onnxruntime);
a folder that loads but computes something else is worse than one that fails, so export
compares outputs before it renames the folder into place.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlptasks.errors import NlpTasksError, first_line

if TYPE_CHECKING:
    import torch

# A fixed text for a run whose eval data cannot be read here (moved, another machine):
# the check still runs, on fewer real tokens, and says so.
FALLBACK_TEXT = "The film is a charming, funny and moving story about two friends."
# Inputs of an encoder model that a tokenizer writes (and ONNX takes).
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def quiet_libraries() -> None:
    """No progress bars, load reports or exporter chatter: export prints its own lines (the
    runner does the same for run, eval and predict)."""
    import logging

    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    # torch.onnx warns that torchvision's operators are not registered: none are used here.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)


def auto_class_of(task: Any, model_dir: Path) -> Any:
    """The transformers Auto class among the task's kinds (``TaskInfo.model_kinds``) that the
    saved ``architectures`` belongs to; the first kind when none says (a generic task)."""
    import transformers

    kinds = [k for k in task.info.model_kinds if hasattr(transformers, k)] or ["AutoModel"]
    reference: str | Path = model_dir
    adapter = model_dir / "adapter_config.json"
    if not (model_dir / "config.json").is_file() and adapter.is_file():
        # A LoRA adapter: its kind is its base model's.
        reference = json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"]
    config = transformers.AutoConfig.from_pretrained(reference)
    names = set(getattr(config, "architectures", None) or [])
    for kind in kinds:
        mapping = getattr(transformers, kind)._model_mapping
        try:
            if mapping[type(config)].__name__ in names:
                return getattr(transformers, kind)
        except (KeyError, ValueError):
            continue
    return getattr(transformers, kinds[0])


def forward_names(model: Any) -> set[str]:
    """The keyword arguments ``model.forward`` takes (a batch key it lacks is left out)."""
    return set(inspect.signature(model.forward).parameters)


def real_batch(
    run_dir: Path,
    task: Any,
    tokenizer: Any,
    model: Any,
    count: int = 16,
    keys: tuple[str, ...] | None = None,
) -> tuple[dict[str, torch.Tensor], str]:
    """The first ``count`` eval features of the run, as the task tokenises them, padded into
    one batch of the model's inputs; and where they came from (for the CLI line).

    ``keys``: only these inputs (ONNX takes the encoder's); by default every tensor the
    model's forward takes (a seq2seq model gets ``labels`` to build its decoder inputs)."""
    from nlptasks.batching import pad_features

    wanted = forward_names(model)
    features, source = _eval_features(run_dir, task, tokenizer, model, count)
    if not features:
        # Said in the CLI line with its reason: a check on one fixed sentence is weaker.
        encoded = tokenizer(FALLBACK_TEXT)
        features = [{k: list(v) for k, v in encoded.items()}]
        source = f"one fixed sentence, not the run's eval data ({source})"
    allowed = set(keys) if keys is not None else wanted
    rows = [{k: v for k, v in f.items() if k in allowed and k in wanted} for f in features]
    if not getattr(model.config, "is_encoder_decoder", False):
        rows = [{k: v for k, v in r.items() if k != "labels"} for r in rows]
    if "input_ids" not in rows[0]:
        raise NlpTasksError(
            f"Task '{task.info.name}' writes no input_ids for its eval data; export cannot "
            f"check the exported model on it."
        )
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad_features(rows, {"input_ids": int(pad if pad is not None else 0)}), source


def _eval_features(
    run_dir: Path, task: Any, tokenizer: Any, model: Any, count: int
) -> tuple[list[dict[str, Any]], str]:
    """Up to ``count`` features of the run's eval split, or ([], why) when the data the
    recipe names cannot be read here."""
    from nlptasks import data
    from nlptasks.recipes import load_recipe
    from nlptasks.task import ReadsSources

    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        return [], "no recipe.yaml"
    try:
        recipe = load_recipe(task.info.name, str(recipe_file))
        reader = (
            functools.partial(task.read_source, recipe) if isinstance(task, ReadsSources) else None
        )
        splits = data.load_splits(recipe.data, need_train=False, read_source=reader)
        splits = task.prepare_data(splits, recipe, trained_model=model)
        examples = splits["eval"]
        examples = examples.select(range(min(count, len(examples))))
        features = task.preprocess(examples, tokenizer, recipe)
    except (NlpTasksError, OSError, ValueError) as exc:
        return [], f"eval data unreadable ({first_line(exc)})"
    rows = [dict(features[i]) for i in range(min(count, len(features)))]
    return rows, f"the first {len(rows)} eval features of the run"


def logits_of(model: Any, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every ``*logits`` output of ``model`` on ``batch`` (float32, CPU), in eval mode."""
    import torch

    model.eval()
    with torch.inference_mode():
        output = model(**batch, return_dict=True)
    found = {k: v.float().cpu() for k, v in output.items() if k.endswith("logits")}
    if not found:
        raise NlpTasksError(
            f"{type(model).__name__} returns no logits; export cannot compare its outputs."
        )
    return found


def max_difference(expected: Mapping[str, Any], found: Mapping[str, Any]) -> float:
    """The largest |difference| over outputs of the same names (arrays or tensors), padded
    positions included: a serving stack that reads them gets the same numbers."""
    import numpy as np

    if set(expected) != set(found):
        raise NlpTasksError(
            f"The exported model's outputs ({', '.join(sorted(found))}) are not the run "
            f"model's ({', '.join(sorted(expected))})."
        )
    worst = 0.0
    for name, value in expected.items():
        a, b = np.asarray(value, dtype=np.float64), np.asarray(found[name], dtype=np.float64)
        if a.shape != b.shape:
            raise NlpTasksError(
                f"The exported model's '{name}' has shape {b.shape}, the run model's {a.shape}."
            )
        diff = np.abs(a - b)
        # NaN in either stays NaN: the caller's "not difference <= tolerance" rejects it.
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst
