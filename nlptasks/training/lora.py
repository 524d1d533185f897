"""LoRA adapters through ``peft``, for every task: added before training, merged at save.

The recipe's ``lora:`` section turns them on. The saved model is the base model with the
adapters merged in, so it loads with plain transformers; ``lora.save_adapter`` also saves the
adapter alone (``RUN/adapter``, loadable with ``peft.PeftModel.from_pretrained``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlptasks.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from nlptasks.recipes import LoraConfig


def is_adapted(model: Any) -> bool:
    """Whether ``model`` carries LoRA adapters (a ``peft`` model)."""
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def add_adapters(model: torch.nn.Module, config: LoraConfig, source: str) -> torch.nn.Module:
    """``model`` with LoRA adapters on ``config.target_modules`` (peft's default for the model
    type when absent); every other weight frozen. A name the model lacks is a ConfigError."""
    import peft

    if config.target_modules is not None and config.target_modules != ["all-linear"]:
        _check_targets(model, config.target_modules, source)
    settings = peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=(
            "all-linear" if config.target_modules == ["all-linear"] else config.target_modules
        ),
        # Heads that a task adds to the base model (a classifier, a span head) train fully.
        modules_to_save=_new_heads(model),
        # GPT-2's Conv1D layers store their weights transposed.
        fan_in_fan_out=any(type(m).__name__ == "Conv1D" for m in model.modules()),
    )
    try:
        with warnings.catch_warnings():
            # peft calls a transformers method that transformers deprecates: not the user's
            # business.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            return peft.get_peft_model(model, settings)
    except ValueError:  # e.g. no default target modules for this model type
        raise ConfigError(
            source,
            [
                f"LoRA cannot adapt the modules chosen (peft found no supported layer among "
                f"them). Set lora.target_modules to linear layers of this model, e.g. "
                f"[{', '.join(linear_layer_names(model)[:4])}]"
            ],
        ) from None


def _check_targets(model: torch.nn.Module, targets: list[str], source: str) -> None:
    """Every target names a module (its last name, or a dotted suffix as peft matches them);
    a head that shares its weight with the input embeddings cannot be adapted (merging would
    change the embeddings too)."""
    names = [name for name, _ in model.named_modules() if name]

    def matches(target: str) -> list[str]:
        return [n for n in names if n == target or n.endswith("." + target)]

    missing = [t for t in targets if not matches(t)]
    tied = _tied_head(model)
    if tied is not None:
        for target in targets:
            if tied in matches(target):
                raise ConfigError(
                    source,
                    [
                        f"'lora.target_modules' names {target!r}, the output layer, which shares "
                        f"its weights with the input embeddings: merging an adapter there would "
                        f"change both. Leave it out"
                    ],
                )
    if missing:
        raise ConfigError(
            source,
            [
                f"'lora.target_modules' names {', '.join(repr(m) for m in missing)}, which this "
                f"model does not have. Its linear layers are: "
                f"{', '.join(linear_layer_names(model))}"
            ],
        )


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """The distinct last names of the model's linear layers (candidates for target_modules),
    without an output layer tied to the input embeddings."""
    import torch

    tied = _tied_head(model)
    found: list[str] = []
    for name, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        short = name.rsplit(".", 1)[-1]
        if is_linear and short and short not in found and name != tied:
            found.append(short)
    return found


def _tied_head(model: torch.nn.Module) -> str | None:
    """The name of the output layer if it shares its weight with the input embeddings."""
    get_input = getattr(model, "get_input_embeddings", None)
    get_output = getattr(model, "get_output_embeddings", None)
    if not callable(get_input) or not callable(get_output):
        return None
    inputs, outputs = get_input(), get_output()
    if inputs is None or outputs is None or outputs.weight is not inputs.weight:
        return None
    return next((n for n, m in model.named_modules() if m is outputs), None)


def _new_heads(model: torch.nn.Module) -> list[str] | None:
    """Task heads that are not part of a pretrained base model (``classifier``,
    ``qa_outputs``, ``score``): they must train, not stay frozen at random values."""
    names = {name for name, _ in model.named_children()}
    known = ("classifier", "pre_classifier", "qa_outputs", "score")
    heads: list[str] = [h for h in known if h in names]
    return heads or None


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def save_merged(model: Any, folder: Path, adapter_folder: Path | None) -> Any:
    """Save ``model`` to ``folder`` as a plain transformers model (adapters merged in); with
    ``adapter_folder``, save the adapter alone there first. Returns the merged model."""
    if not is_adapted(model):
        model.save_pretrained(folder)
        return model
    if adapter_folder is not None:
        model.save_pretrained(adapter_folder)
        # peft writes a template card full of placeholders: the run's README.md is the card.
        (adapter_folder / "README.md").unlink(missing_ok=True)
    merged = model.merge_and_unload()
    merged.save_pretrained(folder)
    return merged
