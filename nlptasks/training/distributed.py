"""How training is spread over processes: DDP, FSDP2 or DeepSpeed, through accelerate's own
plugins (``FullyShardedDataParallelPlugin``, ``DeepSpeedPlugin``), from the recipe's
``distributed:`` section.

The same recipe runs under ``torchrun``, ``accelerate launch`` and a plain ``nlptasks run``:
sharding needs more than one process, so one process trains plainly whatever the strategy.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import torch
import yaml

from nlptasks.errors import NlpTasksError, first_line
from nlptasks.recipes import DistributedConfig
from nlptasks.training.precision import resolve

if TYPE_CHECKING:
    from accelerate import Accelerator

    from nlptasks.recipes import TrainConfig

# What each preset means, in accelerate's plugin arguments.
FSDP_PRESETS: dict[str, dict[str, Any]] = {
    "fsdp2": {
        "fsdp_version": 2,
        # Each block named in the model's _no_split_modules is its own FSDP unit.
        "auto_wrap_policy": "transformer_based_wrap",
        "state_dict_type": "SHARDED_STATE_DICT",
        "reshard_after_forward": True,
    },
}
DEEPSPEED_PRESETS: dict[str, dict[str, Any]] = {
    "zero2": {"zero_stage": 2},
    "zero3": {"zero_stage": 3, "zero3_init_flag": False, "zero3_save_16bit_model": True},
}


_LAUNCHER_VARIABLES = ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")


def world_size() -> int:
    """The number of processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def describe(config: DistributedConfig) -> dict[str, Any]:
    """The effective settings of the section: the plugin arguments its preset or config file
    stands for (``recipes show --resolved``, provenance)."""
    if config.strategy == "ddp":
        return {"strategy": "ddp"}
    if config.strategy == "fsdp":
        return {"strategy": "fsdp", **_fsdp_arguments(config)}
    return {"strategy": "deepspeed", **_deepspeed_arguments(config)}


def make_accelerator(
    train: TrainConfig, distributed: DistributedConfig | None = None
) -> Accelerator:
    """An Accelerator for the recipe's precision (``auto`` resolved for this hardware) and
    its ``distributed:`` strategy; refuses fp16 without a GPU in one line."""
    distributed = distributed or DistributedConfig()
    precision = resolve(train.mixed_precision)
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState, PartialState

    # accelerate keeps one global state per process and refuses a second Accelerator with
    # other settings; a notebook or test session runs many recipes, so start each one afresh.
    # The distributed set-up (PartialState) is kept, unless a sharded recipe marked it as
    # FSDP or DeepSpeed: a later recipe would inherit that.
    leftover = getattr(PartialState._shared_state.get("distributed_type"), "value", None)
    AcceleratorState._reset_state(reset_partial_state=leftover in ("FSDP", "DEEPSPEED"))
    GradientState._reset_state()
    _check_launcher_agrees(distributed)
    sharded = world_size() > 1 and distributed.strategy != "ddp"
    cpu = not has_accelerator_device()
    if sharded and cpu and distributed.offload:
        raise NlpTasksError(
            "distributed.offload needs a GPU (it moves weights from the device to CPU memory); "
            "on CPUs they are in CPU memory already: drop distributed.offload."
        )
    kwargs: dict[str, Any] = {}
    if sharded and distributed.strategy == "fsdp":
        kwargs["fsdp_plugin"] = fsdp_plugin(distributed)
    elif sharded and distributed.strategy == "deepspeed":
        if cpu:
            raise NlpTasksError(
                "distributed.strategy=deepspeed needs a GPU: accelerate starts DeepSpeed's "
                "processes only on accelerator devices. Use distributed.strategy=fsdp on CPUs."
            )
        kwargs["deepspeed_plugin"] = deepspeed_plugin(distributed, train)
    # Without an accelerator device, cpu=True is what makes torchrun's processes form a
    # gloo process group; otherwise each would silently train alone.
    # accelerate records a plugin in the environment (ACCELERATE_USE_FSDP...), where a later
    # recipe of this process would read it as the launcher's: keep the launcher's own.
    launcher_env = {name: os.environ.get(name) for name in _LAUNCHER_VARIABLES}
    try:
        accelerator = Accelerator(mixed_precision=precision, cpu=cpu, **kwargs)
    finally:
        for name, value in launcher_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if "fsdp_plugin" in kwargs and accelerator.distributed_type.value == "MULTI_CPU":
        _fsdp_on_cpu(accelerator, kwargs["fsdp_plugin"])
    if torch.distributed.is_initialized():
        global _joined_a_group
        _joined_a_group = True
        atexit.register(_close_process_group)
    return accelerator


_joined_a_group = False
"""Whether this process formed a process group (``make_accelerator``): its exit skips the
interpreter's teardown (``leave``)."""


def _close_process_group() -> None:
    # A process that exits with its gloo group still open can abort in teardown ("terminate
    # called without an active exception", seen in a 2-process eval): close it first.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def joined_a_group() -> bool:
    """Whether ``make_accelerator`` formed a process group in this process."""
    return _joined_a_group


def leave(code: int) -> NoReturn:
    """End a process that was part of a process group: run the exit handlers, flush, and
    exit with ``code`` without the interpreter's teardown, destroying nothing.

    Why: gloo's worker threads can still hold finished work with Python tensors in it. When
    the interpreter's teardown frees the group, a worker then needs the GIL the teardown
    holds: the process aborts ("terminate called without an active exception", SIGABRT; seen
    in CI with FSDP2, whose device mesh keeps the group alive past
    ``destroy_process_group``; pytorch PR 179291, abandoned) or deadlocks (seen when freeing
    a DDP model's reducer at exit: the main thread holds the GIL and waits for the group's
    lock, a worker holds that lock and waits for the GIL). ``os._exit`` runs no destructor,
    so neither can happen. The command's last collective has returned on every rank that
    gets here, so no peer waits on this one; its sockets close as the process ends."""
    atexit.unregister(_close_process_group)  # the destruction this function avoids
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to lose
            stream.flush()
    os._exit(code)


def has_accelerator_device() -> bool:
    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return bool((xpu and xpu.is_available()) or (mps and mps.is_available()))


def _fsdp_on_cpu(accelerator: Accelerator, plugin: Any) -> None:
    """accelerate turns FSDP on for accelerator devices only, but torch's FSDP2
    (``fully_shard``) runs on CPUs over gloo: set the state accelerate would have set, so its
    own FSDP2 preparation, clipping, no_sync and state-dict helpers do the work."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    # Both shared states: a later AcceleratorState() copies PartialState's over its own.
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)


def fsdp_plugin(config: DistributedConfig) -> Any:
    from accelerate.utils import FullyShardedDataParallelPlugin

    return _built(FullyShardedDataParallelPlugin, _fsdp_arguments(config), config)


def _built(plugin: Any, arguments: dict[str, Any], config: DistributedConfig) -> Any:
    """accelerate's plugin, its refusals (a value FSDP2 does not implement) in one line."""
    try:
        return plugin(**arguments)
    except (TypeError, ValueError) as exc:
        where = (
            f"distributed.config_file {config.config_file}" if config.config_file else "the recipe"
        )
        raise NlpTasksError(
            f"accelerate's {plugin.__name__} refuses the settings of {where}: {first_line(exc)}"
        ) from exc


def deepspeed_plugin(config: DistributedConfig, train: TrainConfig) -> Any:
    import importlib.util

    from accelerate.utils import DeepSpeedPlugin

    if importlib.util.find_spec("deepspeed") is None:
        raise NlpTasksError(
            "distributed.strategy=deepspeed needs DeepSpeed: pip install 'nlptasks[deepspeed]'."
        )

    arguments = {
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "gradient_clipping": train.max_grad_norm or 0.0,
        **_deepspeed_arguments(config),
    }
    plugin = _built(DeepSpeedPlugin, arguments, config)
    # The trainer feeds its own batches (no prepared DataLoader to read the size from).
    micro = train.batch_size // train.gradient_accumulation_steps
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = micro
    plugin.deepspeed_config["train_batch_size"] = train.batch_size * world_size()
    zero = plugin.deepspeed_config.setdefault("zero_optimization", {})
    if isinstance(zero, dict) and zero.get("stage") == 3:
        # The final model is gathered from the ZeRO-3 partitions at the end: accelerate's
        # get_state_dict refuses without this (a user's JSON may leave it out).
        zero.setdefault("stage3_gather_16bit_weights_on_model_save", True)
    return plugin


def _fsdp_arguments(config: DistributedConfig) -> dict[str, Any]:
    arguments = dict(FSDP_PRESETS[config.preset or "fsdp2"])
    arguments["cpu_ram_efficient_loading"] = config.cpu_ram_efficient_loading
    arguments["cpu_offload"] = config.offload
    arguments["activation_checkpointing"] = config.activation_checkpointing
    if config.config_file:
        arguments.update(_accelerate_section(config.config_file, "fsdp_config", "fsdp_"))
    if str(arguments.get("fsdp_version")) != "2":
        raise NlpTasksError(
            f"distributed.config_file {config.config_file} asks for FSDP version "
            f"{arguments.get('fsdp_version')}; nlptasks shards with FSDP2 (fsdp_version: 2)."
        )
    return arguments


def _deepspeed_arguments(config: DistributedConfig) -> dict[str, Any]:
    if config.config_file and config.config_file.endswith(".json"):
        path = _existing(config.config_file)
        return {"hf_ds_config": str(path)}
    arguments = dict(DEEPSPEED_PRESETS[config.preset or "zero2"])
    if config.offload:
        arguments["offload_optimizer_device"] = "cpu"
        if arguments["zero_stage"] == 3:
            arguments["offload_param_device"] = "cpu"
    if config.config_file:
        arguments.update(_accelerate_section(config.config_file, "deepspeed_config", ""))
        if "deepspeed_config_file" in arguments:
            return {"hf_ds_config": str(_existing(arguments.pop("deepspeed_config_file")))}
    return arguments


def _accelerate_section(path: str, section: str, prefix: str) -> dict[str, Any]:
    """The plugin arguments of an accelerate config YAML's ``section`` (its keys without
    ``prefix``), refused in one line when the file or a key is not understood."""
    file = _existing(path)
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise NlpTasksError(
            f"distributed.config_file {path} is not readable YAML ({first_line(exc)}); fix it."
        ) from exc
    values = loaded.get(section) if isinstance(loaded, dict) else None
    if not isinstance(values, dict):
        raise NlpTasksError(
            f"distributed.config_file {path} has no '{section}' section; write one (as "
            f"`accelerate config` does) or use distributed.preset."
        )
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin if section == "fsdp_config" else DeepSpeedPlugin
    known = set(plugin.__dataclass_fields__) | {"deepspeed_config_file"}
    arguments: dict[str, Any] = {}
    for key, value in values.items():
        name = key[len(prefix) :] if prefix and key.startswith(prefix) else key
        name = _RENAMED.get(name, name)
        if name in _RECIPE_OR_LAUNCHER_KEYS:
            continue  # the recipe's train section or the launcher says these
        if name == "transformer_cls_names_to_wrap" and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if name not in known:
            raise NlpTasksError(
                f"distributed.config_file {path}: '{key}' is not a setting of accelerate's "
                f"{plugin.__name__}; remove it."
            )
        arguments[name] = value.lower() if name == "auto_wrap_policy" else value
    return arguments


# accelerate config's names for plugin arguments, and keys that are not the plugin's to take.
_RENAMED = {
    "version": "fsdp_version",
    "offload_params": "cpu_offload",
    "transformer_layer_cls_to_wrap": "transformer_cls_names_to_wrap",
}
_RECIPE_OR_LAUNCHER_KEYS = {
    "gradient_accumulation_steps",  # train.gradient_accumulation_steps
    "gradient_clipping",  # train.max_grad_norm
    "deepspeed_multinode_launcher",
    "deepspeed_hostfile",
    "deepspeed_exclusion_filter",
    "deepspeed_inclusion_filter",
}


def _existing(path: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise NlpTasksError(f"distributed.config_file {path} does not exist; fix the path.")
    return file


def _check_launcher_agrees(config: DistributedConfig) -> None:
    """``accelerate launch`` with an FSDP or DeepSpeed config sets environment variables
    that would override the recipe's strategy: refuse the contradiction in one line."""
    launched = {
        "fsdp": os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true",
        "deepspeed": os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true",
    }
    for strategy, asked in launched.items():
        if asked and config.strategy != strategy:
            raise NlpTasksError(
                f"The launcher's accelerate config asks for {strategy} but the recipe's "
                f"distributed.strategy is {config.strategy}. Say how to shard in the recipe "
                f"(distributed.strategy={strategy}) and launch with a config without "
                f"{strategy} settings."
            )


# ------------------------------------------------------------------ the trained model
def is_sharded(accelerator: Accelerator) -> bool:
    """Whether the model's weights are split over the processes (FSDP, DeepSpeed)."""
    kind = getattr(accelerator, "distributed_type", None)
    return getattr(kind, "value", None) in ("FSDP", "DEEPSPEED")


def wrap_classes(model: torch.nn.Module) -> list[str]:
    """The blocks FSDP makes its units: the model's ``_no_split_modules`` that it has, but
    not one that holds the input embeddings (BERT names ``BertEmbeddings``): accelerate
    shards the embeddings as a unit of their own, and a parameter sharded twice fails."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    found: set[str] = set()
    holding: set[str] = set()
    for module in model.modules():
        name = type(module).__name__
        if name in names:
            found.add(name)
            if embeddings is not None and any(m is embeddings for m in module.modules()):
                holding.add(name)
    return sorted(found - holding)


def prepare_plugin_for(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """Fit the FSDP plugin to ``model`` before ``accelerator.prepare``."""
    if getattr(accelerator.distributed_type, "value", None) != "FSDP":
        return
    plugin = accelerator.state.fsdp_plugin
    config = getattr(model, "config", None)
    if (
        plugin.activation_checkpointing
        and config is not None
        and getattr(config, "use_cache", False)
    ):
        # A recomputed block would append its keys and values to the cache a second time.
        config.use_cache = False
    if plugin.transformer_cls_names_to_wrap is None:
        plugin.transformer_cls_names_to_wrap = wrap_classes(model)
        if not plugin.transformer_cls_names_to_wrap:
            warnings.warn(
                f"{type(model).__name__} names no blocks in _no_split_modules: FSDP shards it "
                f"as one unit (each process gathers all weights at once). Name its layer "
                f"class in an accelerate config (distributed.config_file, "
                f"fsdp_transformer_layer_cls_to_wrap).",
                stacklevel=2,
            )


def full_state_dict(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, Any] | None:
    """The whole model's weights on the main process's CPU, None on the others; every
    process must call it (the shards are gathered one tensor at a time, never onto one
    process's device)."""
    if not is_sharded(accelerator):
        return None
    state = accelerator.get_state_dict(model, unwrap=True)
    return state if accelerator.is_main_process else None
