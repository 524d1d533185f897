"""Model references: preset names, local directories and hub ids, loaded with offline-aware
errors. Whether a loaded model fits its task is ``model_fit``'s job."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import pickle
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from safetensors import SafetensorError

from nlptasks import model_fit
from nlptasks.errors import (
    OFFLINE_HINT,
    ModelError,
    first_line,
    hub_offline,
    hub_unreachable,
)
from nlptasks.plugins.registry import get_registries

T = TypeVar("T")


def resolve_model(reference: str) -> str:
    """Turn a model preset name into its path; a local path or hub id is returned as is."""
    models = get_registries().models
    if reference in models:
        return str(models.get(reference).load()())
    return reference


# Files a model's license asks to travel with its weights: LICENSE, NOTICE, Gemma's terms.
_LICENSE_FILE = re.compile(r"^(licen[cs]e|notice|copying)|_terms\.(html|md|txt)$", re.IGNORECASE)


def license_files(folder: str | Path) -> list[Path]:
    """The license, notice and terms files beside a local model's weights, sorted by name
    (none for a hub id or a folder without them)."""
    path = Path(folder).expanduser() if folder else None
    if path is None or not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and _LICENSE_FILE.search(p.name))


def carry_license_files(source: str | Path, target: Path) -> None:
    """Copy the license files of the model folder ``source`` into ``target`` (a model saved
    from it), so a fine-tuned model keeps the terms its base model came with."""
    if source and Path(source).expanduser().resolve() == target.resolve():
        return
    for found in license_files(source):
        if not (target / found.name).exists():
            shutil.copy2(found, target / found.name)


# The shape of a Hub repo id, "name" or "namespace/name" (letters, digits, "-", "_", ".").
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def base_model_id(reference: str) -> str | None:
    """The Hub id a model reference stands for (a model card's ``base_model``), if any.

    A preset gives the ``hub_id`` its plugin declared (``None`` if it declared none); an
    existing local directory gives ``None`` (it is no Hub model, whatever it was trained
    from); anything else is a Hub id and is returned as is, except a reference that cannot
    be one (e.g. a path to a folder that is gone): a card must not name a local path.
    """
    models = get_registries().models
    if reference in models:
        return models.get(reference).hub_id
    if Path(reference).expanduser().is_dir():
        return None
    return reference if _HUB_ID.fullmatch(reference) else None


_remote_code: contextvars.ContextVar[bool] = contextvars.ContextVar("remote_code", default=False)


@contextlib.contextmanager
def remote_code(allowed: bool) -> Iterator[None]:
    """While loading a recipe's model: whether ``load_pretrained`` passes
    ``trust_remote_code=True`` (the recipe's ``trust_remote_code``), with a warning."""
    if allowed:
        warnings.warn(
            "trust_remote_code is on: the model's own Python code runs on this machine. Use it "
            "only with models you trust.",
            stacklevel=3,
        )
    token = _remote_code.set(allowed)
    try:
        yield
    finally:
        _remote_code.reset(token)


def load_pretrained(reference: str, loader: Callable[..., T], task: str = "") -> T:
    """Call ``loader(reference)``; turn a missing model into a one-line error with a fix.

    When the recipe allows remote code, ``loader`` is called with ``trust_remote_code=True``:
    write loaders that pass keyword arguments on (``lambda ref, **kw: X.from_pretrained(ref,
    ..., **kw)``)."""
    local = Path(reference).expanduser()
    # A LoRA checkpoint holds its adapter (adapter_config.json names the base model):
    # transformers loads the base model and attaches it.
    if (
        local.is_dir()
        and not (local / "config.json").is_file()
        and not (local / "adapter_config.json").is_file()
    ):
        raise ModelError(
            f"'{reference}' is a folder but not a model (it has no config.json). Point model= "
            f"(or --model) at a folder written by save_pretrained, e.g. RUN/model."
        )
    if not local.exists() and not _in_hub_cache(reference) and hub_unreachable():
        offline_recipe = f", or the offline recipe: nlptasks run {task}" if task else ""
        raise ModelError(
            f"Model '{reference}' is not a local directory and the Hub cannot be reached. "
            f"{OFFLINE_HINT} with a local path (model=/path/to/model), a preset from 'nlptasks "
            f"list models'{offline_recipe}."
        )
    # transformers builds an adapter-only checkpoint's config from its base model, which
    # knows nothing of the run's labels: carry them in (a classifier would say LABEL_1).
    labels = adapter_labels(local) if _adapter_only(local) else {}
    extra: dict[str, Any] = dict(labels) if labels and _loads_a_model(loader) else {}
    if _remote_code.get():
        extra["trust_remote_code"] = True
    try:
        return _labelled(loader(reference, **extra), labels)
    except RuntimeError as exc:
        # transformers refuses weights of other sizes than config.json makes them, saying
        # only "look at the above report" (a log line we silence).
        if "ignore_mismatched_sizes" not in str(exc) and "size mismatch" not in str(exc):
            raise
        raise ModelError(_size_mismatch(reference, loader)) from exc
    except pickle.UnpicklingError as exc:
        # transformers reads pickled weights with weights_only=True: this one holds code.
        raise ModelError(
            f"'{reference}' has pickled weights that hold more than tensors (refused: loading "
            f"them could run code). Use a model saved as safetensors."
        ) from exc
    except (OSError, ValueError, SafetensorError) as exc:
        if (local / "shards").is_dir():
            raise ModelError(
                f"'{reference}' is a sharded (FSDP) checkpoint; merge its shards into a model "
                f"folder first: nlptasks consolidate {reference} DEST, then model=DEST."
            ) from exc
        if local.exists():
            raise ModelError(
                f"'{reference}' is not a loadable model directory ({first_line(exc)}). Point "
                f"model= at a folder written by save_pretrained."
            ) from exc
        if isinstance(exc, ValueError):  # found, but transformers cannot use it this way
            hint = ""
            if "trust_remote_code" in str(exc):
                hint = (
                    " It needs its own code: set trust_remote_code: true in the recipe if you "
                    "trust it."
                )
            raise ModelError(
                f"Model '{reference}' cannot be loaded for this task: {first_line(exc)}.{hint}"
            ) from exc
        why = "it could not be fetched"
        if hub_offline():
            why = "the Hub is offline (HF_HUB_OFFLINE=1)"
        offline_recipe = f" or the offline recipe: nlptasks run {task}" if task else ""
        raise ModelError(
            f"Model '{reference}' is not a local directory and {why}. Use a local path "
            f"(model=/path/to/model), a preset from 'nlptasks list models'{offline_recipe}."
        ) from exc


# The label settings of a classifier's config.json.
_LABEL_KEYS = ("id2label", "label2id", "problem_type")


def _adapter_only(folder: Path) -> bool:
    return (
        folder.is_dir()
        and (folder / "adapter_config.json").is_file()
        and not (folder / "config.json").is_file()
    )


def adapter_labels(folder: str | Path) -> dict[str, Any]:
    """The labels of the run a LoRA adapter folder belongs to (``RUN/model``, ``RUN/adapter``,
    ``RUN/checkpoints/NAME``), as ``from_pretrained`` keyword arguments: the base model's
    config does not have them. Found in the run's ``model/config.json``, else a config.json
    beside the adapter, else the run's ``recipe.yaml`` (``options.label_names``); empty when
    none says (a generation run, a folder outside a run)."""
    import json

    from nlptasks.recipes.safe_yaml import load_yaml

    folder = Path(folder).expanduser()
    roots = [r for r in (folder.parent, folder.parent.parent) if (r / "recipe.yaml").is_file()]
    configs = [root / "model" / "config.json" for root in roots] + [folder / "config.json"]
    for path in configs:
        if path.is_file():
            try:
                found = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            labels = {k: found[k] for k in _LABEL_KEYS if found.get(k) is not None}
            if "id2label" in labels:
                labels["id2label"] = {int(i): n for i, n in labels["id2label"].items()}
                return labels
    for root in roots:
        try:
            recipe = load_yaml((root / "recipe.yaml").read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - an unreadable recipe only gives no labels
            continue
        options = recipe.get("options") if isinstance(recipe, dict) else None
        names = options.get("label_names") if isinstance(options, dict) else None
        if isinstance(names, list) and names:
            return {
                "id2label": dict(enumerate(str(n) for n in names)),
                "label2id": {str(n): i for i, n in enumerate(names)},
            }
    return {}


def _loads_a_model(loader: Callable[..., Any]) -> bool:
    """Whether ``loader`` is a transformers model class's ``from_pretrained`` (it takes config
    keywords such as ``id2label``; a tokenizer's would keep them as its own settings)."""
    owner = getattr(loader, "__self__", None)
    if not isinstance(owner, type):
        return False
    import transformers

    return issubclass(owner, transformers.PreTrainedModel) or owner.__name__.startswith("AutoModel")


def _labelled(loaded: T, labels: dict[str, Any]) -> T:
    """``loaded`` with the run's labels in its config, when the loader could not take them
    (a task's own lambda) and its head has as many outputs."""
    config = getattr(loaded, "config", None)
    id2label = labels.get("id2label")
    if config is None or not id2label or getattr(config, "num_labels", None) != len(id2label):
        return loaded
    for key, value in labels.items():
        setattr(config, key, value)
    return loaded


def _size_mismatch(reference: str, loader: Callable[..., Any]) -> str:
    """What does not fit: load again, taking the weights of other sizes, to name them."""
    generic = (
        f"Model '{reference}' does not fit its config.json: some weights have other sizes than "
        f"the config makes them. Use the config.json saved with these weights."
    )
    extra = {"trust_remote_code": True} if _remote_code.get() else {}
    try:
        loaded = loader(reference, ignore_mismatched_sizes=True, **extra)
    except Exception:  # a loader that takes no such argument: say what is known
        return generic
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    return model_fit.size_mismatch(model, reference) or generic


def _in_hub_cache(reference: str) -> bool:
    """Whether a hub id was downloaded before (then it loads without the network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(reference, "config.json"), str)
    except Exception:  # not a valid repo id
        return False


def position_limit(model: Any, tokenizer: Any = None) -> int | None:
    """The most tokens one input may have: the smallest of the model's position limits
    (``max_position_embeddings``, GPT-2's ``n_positions``, ...) and the tokenizer's
    ``model_max_length``; None when neither says. Tokenizers without a limit report a huge
    sentinel (int(1e30)), which is ignored; RoBERTa-style models have 2 more positions than
    usable tokens, which their tokenizer's limit reflects."""
    config = getattr(model, "config", None)
    limits = [
        getattr(config, name, None)
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length")
    ]
    limits.append(getattr(tokenizer, "model_max_length", None))
    usable = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(usable) if usable else None


def tokenizer_digest(tokenizer: Any) -> str:
    """A digest of a tokenizer's vocabulary and rules, for cache keys. Take it right after
    loading: a fast tokenizer's serialisation changes once it has truncated text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(tokenizer)
    return hashlib.sha256(text.encode()).hexdigest()
