"""Does a model fit its task: its kind (``TaskInfo.model_classes``), its tokenizer, its
attention (a causal LM must attend causally), and weights that fit ``config.json`` and were
loaded, not initialised at random. ``models`` loads; this module judges what was loaded (and,
for ``models.load_pretrained``, names a weight that does not fit its config)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from nlptasks.errors import ModelError, PluginError
from nlptasks.plugins.registry import get_registries

Command = Literal["run", "eval", "predict"]

# Files of which a saved tokenizer has at least one.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
    "source.spm",
)

# Auto classes that list models without a task head; `run` puts its new head on them.
_BASE_KINDS = ("AutoModel", "AutoModelForPreTraining")
# Heads learnt in pretraining: `run` fine-tunes from them; `eval` and `predict` take a masked
# LM as a base model (its task head is then new) and a language model only where it fits.
_PRETRAINED_HEADS = ("AutoModelForMaskedLM", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM")
# The kinds a saved architecture is looked up in, most specific first, with a reader's name.
KIND_NAMES = {
    "AutoModelForSequenceClassification": "sequence classification",
    "AutoModelForQuestionAnswering": "question answering",
    "AutoModelForTokenClassification": "token classification",
    "AutoModelForMultipleChoice": "multiple choice",
    "AutoModelForNextSentencePrediction": "next sentence prediction",
    "AutoModelForCausalLM": "causal language",
    "AutoModelForSeq2SeqLM": "sequence-to-sequence",
    "AutoModelForMaskedLM": "masked language",
    "AutoModelForPreTraining": "pretraining",
    "AutoModel": "base",
}
# The config values that size a model's weights; a weight of the wrong size names these
# before any other value that happens to be equal (max_position_embeddings 128 is no cause
# of a 128-wide ffn).
_SIZES = (
    "hidden_size",
    "d_model",
    "n_embd",
    "vocab_size",
    "num_labels",
    "embedding_size",
    "intermediate_size",
    "n_inner",
    "ffn_dim",
    "d_ff",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
)

_untrained_ok: contextvars.ContextVar[bool] = contextvars.ContextVar("untrained_ok", default=False)


@contextlib.contextmanager
def allow_untrained_head(allowed: bool = True) -> Iterator[None]:
    """While evaluating or predicting: take a model whose head transformers initialised at
    random (``--allow-untrained-head``), with a warning instead of an error."""
    token = _untrained_ok.set(allowed)
    try:
        yield
    finally:
        _untrained_ok.reset(token)


# ------------------------------------------------------------- before the weights load
def check_model_fits(task: Any, reference: str, command: Command) -> None:
    """Before the weights load: refuse a model whose ``config.json`` says it is of another
    kind than ``task`` takes (the Auto classes of ``TaskInfo.model_classes``, or of its
    pipeline tag when it declares none: ``TaskInfo.model_kinds``), in one line naming both.

    ``eval`` and ``predict`` need a saved head of the task's kind, or none (a base model or
    masked LM, whose new head :func:`check_built_model` then refuses); a head of another
    kind names the task it fits, in the command the user ran. ``run`` also takes a base model
    or a pretrained language-model head: the task adds its head. A config that cannot be read
    is left to the loader's own error."""
    accepted = task.info.model_kinds
    config = _read_config(reference)
    if not accepted or config is None:
        return
    mappings = {name: _classes_of(name, task.info.name) for name in accepted}
    architecture, kinds = _saved_kind(config)
    if architecture and kinds and not any(k in accepted for k in kinds):
        heads = [k for k in kinds if k not in _BASE_KINDS]
        base_like = _PRETRAINED_HEADS if command == "run" else ("AutoModelForMaskedLM",)
        if any(h not in base_like for h in heads):
            raise ModelError(_other_kind(task, reference, architecture, heads[0], command))
    model_type = config.get("model_type")
    known = isinstance(model_type, str) and model_type in _known_model_types()
    if known and "auto_map" not in config and not any(model_type in m for m in mappings.values()):
        raise ModelError(
            f"Model '{reference}' is a '{model_type}' model, which {' or '.join(accepted)} "
            f"cannot load: task '{task.info.name}' needs {_needs(accepted)}. Use a model of "
            f"that kind."
        )


def _other_kind(task: Any, reference: str, architecture: str, kind: str, command: Command) -> str:
    name = task.info.name
    message = (
        f"Model '{reference}' is a {KIND_NAMES[kind]} model ({architecture}); task '{name}' "
        f"needs {_needs(task.info.model_kinds)}."
    )
    if command == "run":
        return message + (
            " Start from a base model (one saved without a task head, e.g. the model it was "
            "fine-tuned from)."
        )
    fitting = _tasks_taking(kind, name)
    if fitting:
        return message + (
            f" It is a model for task '{fitting[0]}': nlptasks {command} {fitting[0]} --model "
            f"{reference}."
        )
    return message + f" Use a model trained for task '{name}'."


def _tasks_taking(kind: str, but: str) -> list[str]:
    """The registered tasks (other than ``but``) that take models of ``kind``."""
    from nlptasks.task import task_info

    found = []
    for entry in get_registries().tasks:
        with contextlib.suppress(Exception):  # a broken plugin suggests nothing
            if entry.name != but and kind in task_info(entry.load(), entry.name).model_kinds:
                found.append(entry.name)
    return found


def _needs(accepted: tuple[str, ...]) -> str:
    """``a causal language model (AutoModelForCausalLM)``, or several joined by "or"."""
    parts = [f"{KIND_NAMES.get(a, a)} model ({a})" for a in accepted]
    return "a " + " or ".join(parts)


def _read_config(reference: str) -> dict[str, Any] | None:
    """A model's config.json (a LoRA adapter's: its base model's), or None."""
    path = _model_file(reference, "config.json")
    adapter = _model_file(reference, "adapter_config.json")
    if path is None and adapter is not None:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            base = json.loads(adapter.read_text()).get("base_model_name_or_path")
            path = _model_file(base, "config.json") if isinstance(base, str) else None
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the loader says what is wrong with it
    return config if isinstance(config, dict) else None


def _saved_kind(config: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The saved architecture (``config.json``'s ``architectures``) and the Auto classes that
    list it; (None, []) when it names none that transformers knows."""
    architectures = config.get("architectures")
    if not isinstance(architectures, list):
        return None, []
    for name in architectures:
        kinds = _kinds_of(name) if isinstance(name, str) else []
        if kinds:
            return name, kinds
    return None, []


@functools.cache
def _kinds_of(class_name: str) -> list[str]:
    """The Auto classes (of ``KIND_NAMES``) that list model class ``class_name``."""
    return [kind for kind in KIND_NAMES if class_name in _class_names(_classes_of(kind, ""))]


def _class_names(mapping: dict[str, tuple[str, ...]]) -> set[str]:
    return {name for names in mapping.values() for name in names}


@functools.cache
def _classes_of(auto_class: str, task: str) -> dict[str, tuple[str, ...]]:
    """Model type -> the class names that Auto class ``auto_class`` loads (registered custom
    models included)."""
    import transformers

    auto = getattr(transformers, auto_class, None)
    lazy = getattr(auto, "_model_mapping", None)
    if lazy is None or not auto_class.startswith("AutoModel"):
        raise PluginError(
            f"Task '{task}': TaskInfo.model_classes names '{auto_class}', which is no "
            f"transformers Auto class (e.g. AutoModelForSequenceClassification)."
        )
    found: dict[str, tuple[str, ...]] = {
        model_type: (names,) if isinstance(names, str) else tuple(names)
        for model_type, names in lazy._model_mapping.items()
    }
    for config_class, model_class in lazy._extra_content.items():
        found[getattr(config_class, "model_type", "")] = (model_class.__name__,)
    return found


@functools.cache
def _known_model_types() -> frozenset[str]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return frozenset(CONFIG_MAPPING_NAMES)


# ------------------------------------------------------------------ on the built model
def check_built_model(
    task: Any, model: Any, tokenizer: Any, reference: str, command: Command
) -> None:
    """After ``build_model`` for ``command``: the tokenizer belongs to the model
    (:func:`check_tokenizer`), the model is of a kind the task takes
    (``TaskInfo.model_classes``), attends causally where it is taken as a causal LM, and has
    no weight that does not fit its config (``eval`` and ``predict``, which take a trained
    model: and no weight that transformers initialised at random, unless
    :func:`allow_untrained_head`)."""
    from transformers import PreTrainedModel

    check_tokenizer(model, tokenizer, reference)  # a folder's first problem: its own files
    accepted = task.info.model_kinds
    core = _unwrapped(model)
    if not isinstance(core, PreTrainedModel):
        return  # a plugin's own module: only its config could be checked
    kinds = _kinds_of(type(core).__name__)
    heads = [k for k in kinds if k not in (*_BASE_KINDS, "AutoModelForMaskedLM")]
    if accepted and heads and not any(k in accepted for k in kinds):
        raise PluginError(
            f"Task '{task.info.name}' built a {KIND_NAMES[heads[0]]} model "
            f"({type(core).__name__}) but takes {_needs(accepted)}. Fix its build_model, or "
            f"declare the kind in TaskInfo.model_classes."
        )
    if "AutoModelForCausalLM" in kinds and not core.config.is_encoder_decoder:
        _check_causal(task, core, reference)
    _check_new_weights(task, core, reference, trained=command != "run")


def _unwrapped(model: Any) -> Any:
    """The transformers model inside a peft model (a task's build_model may add LoRA
    adapters; ``training.lora.is_adapted`` tells the same by duck typing, and this module
    sits below ``training`` in the import order)."""
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) and hasattr(model, "peft_config") else model


def check_tokenizer(model: Any, tokenizer: Any, reference: str) -> None:
    """Refuse a tokenizer that does not belong to the model: a model folder without tokenizer
    files, or a vocabulary that does not fit the embeddings (it would predict garbage)."""
    local = Path(reference).expanduser()
    if local.is_dir() and not any((local / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"'{reference}' has no tokenizer files (none of tokenizer.json, vocab.txt, ...). "
            f"Save the tokenizer next to the model (tokenizer.save_pretrained) or use a folder "
            f"that has both."
        )
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    # Models often pad their embedding table past the tokenizer (50257 -> 50304); a tokenizer
    # with more ids than embeddings, or a small fraction of them, is someone else's.
    if isinstance(vocab, int) and size is not None and (size > vocab or size < vocab // 2):
        raise ModelError(
            f"The tokenizer of '{reference}' has {size} tokens but the model has {vocab} "
            f"embeddings: they do not belong together. Use the tokenizer saved with the model."
        )


def _check_causal(task: Any, model: Any, reference: str) -> None:
    if _attends_causally(model) is False:
        seq2seq = "AutoModelForSeq2SeqLM" in task.info.model_kinds
        other = "a sequence-to-sequence model (Marian, T5, BART) or " if seq2seq else ""
        raise ModelError(
            f"Model '{reference}' is an encoder ({type(model).__name__}: its attention is "
            f"bidirectional, each token sees the ones after it), not a causal language model; "
            f"task '{task.info.name}' would generate and score with it as if it were one (a "
            f"perplexity that is not causal). Use {other}a decoder-only model (GPT-2, Llama, "
            f"SmolLM2, ...)."
        )


def _attends_causally(model: Any) -> bool | None:
    """Whether the logits of a token do not depend on the tokens after it: two inputs that
    differ only in their last token must agree before it. None when the probe cannot run."""
    import torch

    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab < 10:
        return None
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 9]], device=next(model.parameters()).device)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
    except Exception:
        # No verdict, so the model is taken. The probe is a heuristic for one mistake (an
        # encoder given a language-model head, which also runs); a causal LM whose forward
        # needs more than input_ids (images, custom code) cannot be probed this way, and
        # refusing every such model would refuse working ones. Its kind was already checked
        # from config.json and its class; the task's own forward pass reports what it lacks.
        return None
    finally:
        model.train(training)
    before_last = logits[:, :-1]
    difference = (before_last[0] - before_last[1]).abs().max().item()
    return difference <= 1e-4 * (1.0 + before_last.abs().max().item())


def _check_new_weights(task: Any, model: Any, reference: str, trained: bool) -> None:
    """Weights that transformers initialised at random on loading (it marks every weight it
    loaded with ``_is_hf_initialized``): a size that does not fit the config is always an
    error (``run`` may replace a head of another size), a missing head only for a model that
    should be trained."""
    unmarked = _unmarked(model)
    if not unmarked:
        return
    shapes = checkpoint_shapes(reference)
    mismatched = [name for name in unmarked if _saved_name(model, name, shapes)]
    prefix = getattr(model, "base_model_prefix", "")
    in_body = [n for n in mismatched if model.base_model is model or n.startswith(prefix + ".")]
    if in_body or (trained and mismatched):
        raise ModelError(mismatch_message(model, reference, (in_body or mismatched)[0], shapes))
    # No weight marked at all: the model was not loaded by from_pretrained (a plugin built it
    # from a config, or loaded its weights its own way), so no weight can be told apart as
    # new; refusing would refuse every such model, trained or not. The check only applies
    # where transformers says which weights it loaded.
    marked_some = len(unmarked) < len(list(model.parameters()))
    if not trained or not marked_some or _lora_loaded(model):
        return  # a run's new head; or a model not loaded by from_pretrained: nothing to tell
    # The head first: it is what the user can fix by training.
    new = sorted(unmarked, key=lambda n: n.startswith(prefix + "."))
    listed = ", ".join(new[:2]) + (f" and {len(new) - 2} more" if len(new) > 2 else "")
    if _untrained_ok.get():
        warnings.warn(
            f"'{reference}' has weights newly initialised at random ({listed}): its outputs "
            f"mean nothing until it is trained.",
            stacklevel=3,
        )
        return
    name = task.info.name
    raise ModelError(
        f"Model '{reference}' has weights that transformers newly initialised at random "
        f"({listed}): a head never trained for task '{name}', so its outputs would mean "
        f"nothing. Train it first (nlptasks run {name} model={reference}), or pass "
        f"--allow-untrained-head to use it anyway."
    )


def _lora_loaded(model: Any) -> bool:
    # Adapter weights loaded by transformers' peft integration carry no mark of their own.
    return bool(getattr(model, "_hf_peft_config_loaded", False))


# ---------------------------------------------------- weights that do not fit config.json
def size_mismatch(model: Any, reference: str) -> str | None:
    """One line naming a weight of ``model`` (loaded with ``ignore_mismatched_sizes``) that
    the checkpoint holds with another shape than ``config.json`` makes; None if none is."""
    shapes = checkpoint_shapes(reference)
    bad = [name for name in _unmarked(model) if _saved_name(model, name, shapes)]
    return mismatch_message(model, reference, bad[0], shapes) if bad else None


def _unmarked(model: Any) -> list[str]:
    """The parameters that loading did not fill (all of them for a model that
    ``from_pretrained`` did not load, or whose every weight had another size)."""
    return [n for n, p in model.named_parameters() if not getattr(p, "_is_hf_initialized", False)]


def _saved_name(model: Any, name: str, shapes: dict[str, list[int]]) -> str | None:
    """The checkpoint key of parameter ``name`` when the checkpoint holds it with another
    shape (a mismatch, not a missing weight); checkpoints keep or drop the base model's
    prefix (``bert.``)."""
    prefix = getattr(model, "base_model_prefix", "")
    shape = list(model.get_parameter(name).shape)
    for key in (name, name.removeprefix(prefix + "."), f"{prefix}.{name}"):
        if key in shapes:
            return key if shapes[key] != shape else None
    return None


def mismatch_message(model: Any, reference: str, name: str, shapes: dict[str, list[int]]) -> str:
    """One line: which weight does not fit ``config.json``, and the config values that make
    the size the weights do not have."""
    key = _saved_name(model, name, shapes) or name
    saved, wanted = shapes.get(key, []), list(model.get_parameter(name).shape)
    sizes = {d for d, s in zip(wanted, saved, strict=False) if d != s} or set(wanted)
    cause = ", ".join(f"{k} {v}" for k, v in _size_causes(model.config, sizes))
    return (
        f"Model '{reference}' does not fit its config.json: its weights have {key} of size "
        f"{saved or '?'}, the config makes it {wanted}"
        f"{f' (config.json: {cause})' if cause else ''}. Use the config.json saved with these "
        f"weights."
    )


def _size_causes(config: Any, sizes: set[int]) -> list[tuple[str, int]]:
    """The config values equal to one of ``sizes``: only those that size weights (``_SIZES``)
    when any does; else (a size of the model's own) at most two of the others."""
    values = {**config.to_dict(), "num_labels": config.num_labels}
    equal = {
        k: v
        for k, v in values.items()
        if isinstance(v, int) and not isinstance(v, bool) and v in sizes
    }
    sizing = [(k, equal[k]) for k in _SIZES if k in equal]
    return sizing or list(equal.items())[:2]


def checkpoint_shapes(reference: str) -> dict[str, list[int]]:
    """Each weight's shape in a model's safetensors files, from their headers (no weight is
    read); empty when there are none (pickled weights, a hub id not downloaded)."""
    shapes: dict[str, list[int]] = {}
    for path in _safetensors_files(reference):
        try:
            with path.open("rb") as handle:
                size = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(size))
        except (OSError, ValueError):
            continue
        shapes.update(
            {k: list(v["shape"]) for k, v in header.items() if isinstance(v, dict) and "shape" in v}
        )
    return shapes


def _safetensors_files(reference: str) -> list[Path]:
    found = _model_file(reference, "model.safetensors")
    if found is not None:
        return [found]
    index = _model_file(reference, "model.safetensors.index.json")
    if index is None:
        return []
    try:
        shards = set(json.loads(index.read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [index.parent / shard for shard in sorted(shards)]


def _model_file(reference: str, name: str) -> Path | None:
    """A file of a local model folder, or of a hub model downloaded before."""
    local = Path(reference).expanduser()
    if local.is_dir():
        return local / name if (local / name).is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(reference, name)
    except Exception:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None
