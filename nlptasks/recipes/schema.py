"""The recipe schema: one dataclass per section, each checking its own values.

The types say what a key may hold (the builder checks them); ``problems()`` says which values
of the right type cannot work (``train.batch_size`` not a multiple of the accumulation steps),
one line each, so a recipe is refused before any run starts. A task's ``options`` dataclass
may check itself the same way (an optional ``problems()``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nlptasks.errors import clip

SEED_RANGE = (0, 2**32 - 1)
"""What every seed may be (``train.seed``, ``data.split_seed``, ``train.bootstrap_seed``,
``generation.seed``, ``compare --seed``): what numpy and torch seed their generators with."""
MAX_RESAMPLES = 100_000
"""Bootstrap resamples at most (``train.bootstrap_resamples``, ``compare --resamples``): more
adds nothing to a 95% interval and runs for hours after the training is done."""


def seed_problem(key: str, seed: int | None) -> str | None:
    """``'KEY' must be in 0..4294967295`` for a seed out of range (None: no seed, fine)."""
    low, high = SEED_RANGE
    if seed is None or low <= seed <= high:
        return None
    return f"'{key}' must be in {low}..{high}"


def _failed(checks: list[tuple[bool, str]]) -> list[str]:
    return [f"{message}." for ok, message in checks if not ok]


def _seed(key: str, seed: int | None) -> list[tuple[bool, str]]:
    """The range check of a seed, as ``_failed`` takes it."""
    problem = seed_problem(key, seed)
    return [(False, problem)] if problem else []


@dataclass
class NoOptions:
    """The options of a task that declares none (the recipe's ``options:`` must be empty)."""


@dataclass
class DataConfig:
    """Where the data comes from: what every task shares (columns are task options)."""

    dataset: str | None = None
    """Hub id or registered dataset name (``nlptasks list datasets``); used when no
    ``train_path`` is given."""
    dataset_config: str | None = None
    """Hub dataset configuration name."""
    train_split: str = "train"
    eval_split: str | None = None
    """Split to evaluate on; when absent, ``eval_fraction`` of train is held out."""
    train_path: str | None = None
    """Local training file (csv, tsv, json, jsonl, parquet, txt); wins over ``dataset``."""
    eval_path: str | None = None
    eval_fraction: float = 0.1
    split_seed: int = 42
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    max_length: int = 128
    """Truncation length in tokens (capped by the model's position embeddings)."""

    def problems(self) -> list[str]:
        """Values of the right type that cannot work, one line each."""
        return _failed(
            [
                (0 < self.eval_fraction < 1, "'data.eval_fraction' must be between 0 and 1"),
                (self.max_length > 1, "'data.max_length' must be at least 2"),
                (
                    self.max_train_examples is None or self.max_train_examples > 0,
                    "'data.max_train_examples' must be at least 1",
                ),
                (
                    self.max_eval_examples is None or self.max_eval_examples > 0,
                    "'data.max_eval_examples' must be at least 1",
                ),
                *_seed("data.split_seed", self.split_seed),
            ]
        )


@dataclass
class TrainConfig:
    """Optimisation and evaluation settings for the shared trainer."""

    epochs: float = 3.0
    max_steps: int | None = None
    """Stop after this many optimizer steps (wins over ``epochs``)."""
    learning_rate: float = 2e-5
    batch_size: int = 32
    """Examples per optimizer step on each process (micro-batch x accumulation)."""
    gradient_accumulation_steps: int = 1
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = 1.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """``auto``: bf16 where the hardware runs it fast (a CUDA GPU with bf16, a CPU with
    AVX512-BF16 or AMX), else no mixed precision. Provenance records what it became."""
    seed: int = 42
    eval_every: int | None = None
    """Evaluate every N optimizer steps; when absent, at the end of each epoch."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement of ``metric_for_best``."""
    metric_for_best: str | None = None
    """Metric that picks the best checkpoint (default: the task's main metric)."""
    group_by_length: bool = True
    length_bucket: int = 1
    """With ``group_by_length``: lengths are rounded down to this many tokens before sorting,
    so a batch draws from a bucket at random instead of from near-duplicates (1: exact)."""
    max_tokens_per_batch: int | None = None
    """Token-budget batching: at most this many padded tokens per micro-batch instead of a
    fixed number of examples (off: null)."""
    compile: bool = False
    """``torch.compile`` the model before training (its compile time is reported apart)."""
    attn_implementation: str | None = None
    """The attention kernel (transformers' ``attn_implementation``: ``sdpa``, ``eager``,
    ``flash_attention_2``...) for training; null: the model's default (SDPA where it has it)."""
    fused_optimizer: bool = True
    """AdamW's fused kernel, one pass over all parameters (falls back when unavailable)."""
    log_every: int = 10
    save_checkpoints: bool = True
    save_every: int | None = None
    """Also save ``checkpoints/last`` every N optimizer steps (besides each evaluation), so a
    killed run loses at most N steps."""
    save_total_limit: int | None = None
    """Keep this many numbered checkpoints (``checkpoints/step-N``) besides last and best."""
    bootstrap_resamples: int = 1000
    """Resamples of the eval examples behind each metric's 95% confidence interval (0: no
    intervals)."""
    bootstrap_seed: int = 0
    """Seed of the resampling: the same predictions and seed give the same intervals."""

    def problems(self) -> list[str]:
        """Values of the right type that cannot work, one line each."""
        accumulation = self.gradient_accumulation_steps
        return _failed(
            [
                (
                    math.isfinite(self.epochs) and self.epochs > 0,
                    "'train.epochs' must be a number above 0",
                ),
                (
                    math.isfinite(self.learning_rate),
                    "'train.learning_rate' must be a finite number",
                ),
                (
                    self.max_steps is None or self.max_steps > 0,
                    "'train.max_steps' must be at least 1",
                ),
                (self.batch_size > 0, "'train.batch_size' must be at least 1"),
                (
                    0 <= self.bootstrap_resamples <= MAX_RESAMPLES,
                    f"'train.bootstrap_resamples' must be in 0..{MAX_RESAMPLES} (0: no intervals)",
                ),
                *_seed("train.bootstrap_seed", self.bootstrap_seed),
                (accumulation > 0, "'train.gradient_accumulation_steps' must be >= 1"),
                (
                    accumulation <= 0 or self.batch_size % accumulation == 0,
                    f"'train.batch_size' ({self.batch_size}) must be a multiple of "
                    f"'train.gradient_accumulation_steps' ({accumulation})",
                ),
                (self.eval_batch_size > 0, "'train.eval_batch_size' must be at least 1"),
                (self.learning_rate > 0, "'train.learning_rate' must be above 0"),
                (
                    math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                    "'train.weight_decay' must be 0 or more",
                ),
                (
                    self.max_grad_norm is None
                    or (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0),
                    "'train.max_grad_norm' must be above 0 (null turns clipping off); a "
                    "negative norm would flip every step",
                ),
                *_seed("train.seed", self.seed),
                (0 <= self.warmup_ratio < 1, "'train.warmup_ratio' must be in [0, 1)"),
                (
                    self.eval_every is None or self.eval_every > 0,
                    "'train.eval_every' must be at least 1",
                ),
                (self.warmup_steps >= 0, "'train.warmup_steps' must not be negative"),
                (
                    self.early_stopping_patience is None or self.early_stopping_patience > 0,
                    "'train.early_stopping_patience' must be at least 1",
                ),
                (self.log_every > 0, "'train.log_every' must be at least 1"),
                (self.length_bucket > 0, "'train.length_bucket' must be at least 1"),
                (
                    self.max_tokens_per_batch is None or self.max_tokens_per_batch > 0,
                    "'train.max_tokens_per_batch' must be at least 1 (null: off)",
                ),
                (
                    self.save_every is None or self.save_every > 0,
                    "'train.save_every' must be at least 1",
                ),
                (
                    self.save_total_limit is None or self.save_total_limit > 0,
                    "'train.save_total_limit' must be at least 1",
                ),
            ]
        )


@dataclass
class GenerationConfig:
    """Decoding settings shared by every task that generates text (eval and predict)."""

    max_new_tokens: int | None = None
    """Tokens to generate at most; when absent the task decides (e.g. from its data)."""
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    """Sample from the k most likely tokens only (with ``do_sample``); 0 turns the limit off;
    when absent, the model's generation_config decides (transformers' default is 50)."""
    repetition_penalty: float = 1.0
    seed: int | None = None
    """Seed of sampled decoding: the same seed and settings give the same text."""
    every: int | None = None
    """Generation-based metrics every N evaluations; when absent, only for the final model
    (generating costs much more than a loss pass)."""

    def problems(self) -> list[str]:
        """Values of the right type that cannot work, one line each."""
        return _failed(
            [
                (
                    self.max_new_tokens is None or self.max_new_tokens > 0,
                    "'generation.max_new_tokens' must be at least 1",
                ),
                (self.num_beams > 0, "'generation.num_beams' must be at least 1"),
                (
                    math.isfinite(self.temperature) and self.temperature > 0,
                    "'generation.temperature' must be a number above 0",
                ),
                (0 < self.top_p <= 1, "'generation.top_p' must be in (0, 1]"),
                (
                    self.top_k is None or self.top_k >= 0,
                    "'generation.top_k' must be 0 (off) or more",
                ),
                (
                    math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
                    "'generation.repetition_penalty' must be a number above 0",
                ),
                *_seed("generation.seed", self.seed),
                (self.every is None or self.every > 0, "'generation.every' must be at least 1"),
            ]
        )


@dataclass
class LoraConfig:
    """Parameter-efficient fine-tuning with LoRA adapters (``peft``); off unless enabled.

    The adapters are merged into the model when it is saved, so the saved model loads with
    plain transformers; ``save_adapter`` also saves the adapter alone (``RUN/adapter``)."""

    enabled: bool = False
    r: int = 8
    """Rank of the adapter matrices."""
    alpha: int = 16
    """Scaling numerator: updates are scaled by alpha / r."""
    dropout: float = 0.05
    target_modules: list[str] | None = None
    """Names of the linear layers to adapt (``[q_proj, v_proj]``); when absent, peft's
    default for the model type."""
    save_adapter: bool = False

    def problems(self) -> list[str]:
        """Values of the right type that cannot work, one line each."""
        return _failed(
            [
                (self.r > 0, "'lora.r' must be at least 1"),
                (self.alpha > 0, "'lora.alpha' must be at least 1"),
                (0 <= self.dropout < 1, "'lora.dropout' must be in [0, 1)"),
                (
                    self.target_modules is None or len(self.target_modules) > 0,
                    "'lora.target_modules' must name at least one module (or be left out)",
                ),
            ]
        )


DISTRIBUTED_PRESETS = {"fsdp": ("fsdp2",), "deepspeed": ("zero2", "zero3")}
"""The presets of each sharding strategy (the first is the strategy's default)."""


@dataclass
class DistributedConfig:
    """How training is spread over the processes that ``torchrun`` or ``accelerate launch``
    start (one process trains plainly, whatever the strategy): data parallel (``ddp``), or
    model, gradients and optimizer states sharded (``fsdp``, ``deepspeed``), through
    accelerate's plugins. ``recipes show --resolved`` shows the effective settings."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] | None = None
    """null: the preset's (or a DeepSpeed config file's) strategy, else ``ddp``."""
    preset: str | None = None
    """``fsdp2`` for fsdp (FSDP v2, each ``_no_split_modules`` block its own unit, sharded
    checkpoints); ``zero2`` or ``zero3`` for deepspeed; null: the strategy's default. A preset
    alone sets its strategy."""
    config_file: str | None = None
    """A DeepSpeed JSON file, or an accelerate config YAML whose ``fsdp_config`` /
    ``deepspeed_config`` section says how to shard (its launch settings are the launcher's)."""
    cpu_ram_efficient_loading: bool = True
    """fsdp: only the main process holds the full weights before sharding; the others start
    from empty (meta) tensors and receive their shards."""
    offload: bool = False
    """Keep parameters and optimizer states in CPU memory (FSDP CPU offload, ZeRO offload)."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass: less memory, ~30% slower."""
    data_timeout_minutes: float = 30.0
    """How long the other processes of a node wait for its main process to tokenise the data
    before they stop with an error that names the step."""

    def __post_init__(self) -> None:
        # A preset alone says its strategy (so does a DeepSpeed JSON); a strategy alone
        # takes its default preset. An explicit strategy is never changed.
        if self.strategy is None:
            named = [s for s, presets in DISTRIBUTED_PRESETS.items() if self.preset in presets]
            deepspeed_json = isinstance(self.config_file, str) and self.config_file.endswith(
                ".json"
            )
            self.strategy = named[0] if named else "deepspeed" if deepspeed_json else "ddp"  # type: ignore[assignment]
        if (
            self.preset is None
            and self.strategy in DISTRIBUTED_PRESETS
            and not (isinstance(self.config_file, str) and self.config_file.endswith(".json"))
        ):
            self.preset = DISTRIBUTED_PRESETS[str(self.strategy)][0]

    def problems(self) -> list[str]:
        """Values of the right type that cannot work, one line each."""
        allowed = DISTRIBUTED_PRESETS.get(str(self.strategy), ())
        every = sorted(p for presets in DISTRIBUTED_PRESETS.values() for p in presets)
        known = self.preset is None or self.preset in every
        return _failed(
            [
                (known, f"'distributed.preset' {self.preset!r} is unknown ({', '.join(every)})"),
                (
                    not known or self.preset is None or self.preset in allowed,
                    f"'distributed.preset' {self.preset!r} does not go with strategy "
                    f"'{self.strategy}' (presets: {', '.join(every)})",
                ),
                (
                    not (self.offload and self.strategy == "ddp"),
                    "'distributed.offload' needs strategy fsdp or deepspeed (ddp keeps every "
                    "weight on the device)",
                ),
                (
                    not (self.activation_checkpointing and self.strategy != "fsdp"),
                    "'distributed.activation_checkpointing' is an fsdp setting (a DeepSpeed JSON "
                    "says its own)",
                ),
                (
                    self.config_file is None
                    or self.config_file.endswith((".json", ".yaml", ".yml")),
                    "'distributed.config_file' must be a DeepSpeed .json or an accelerate "
                    ".yaml config",
                ),
                (
                    not (self.strategy == "ddp" and self.config_file),
                    "'distributed.config_file' says how to shard: it needs strategy fsdp or "
                    "deepspeed, not ddp",
                ),
                (
                    math.isfinite(self.data_timeout_minutes) and self.data_timeout_minutes > 0,
                    "'distributed.data_timeout_minutes' must be above 0",
                ),
            ]
        )


TRACKERS: dict[str, Any] = {"tensorboard": "tensorboard"}
"""The experiment trackers ``track.to`` may name: what accelerate's ``log_with`` takes for
each (its tracker's name, or a ``GeneralTracker`` instance)."""


@dataclass
class TrackConfig:
    """Experiment trackers that receive the run's hyperparameters, training curves and
    evaluations (through accelerate's tracker API, on the main process only); none unless
    named, and offline: each writes under the run directory (or ``dir``)."""

    to: list[str] = field(default_factory=list)
    """Tracker names (``tensorboard``); ``nlptasks run --report-to`` overrides it."""
    project: str | None = None
    """The tracker's project: TensorBoard's folder under ``dir``; the task's name when
    absent."""
    run_name: str | None = None
    """The run's name in the tracker (``dir/project/run_name`` for TensorBoard); the run
    directory's name when absent."""
    dir: str | None = None
    """Where the trackers write; ``RUN/trackers`` when absent."""

    def problems(self) -> list[str]:
        """Unknown tracker names, one line each."""
        return _failed(
            [
                (
                    name in TRACKERS,
                    f"unknown tracker '{name}' in 'track.to'; choose from {', '.join(TRACKERS)}",
                )
                for name in self.to
            ]
        )


@dataclass
class Expectation:
    """What a run of this recipe should reach (``nlptasks verify RUN``), and where the
    reference number comes from."""

    min: dict[str, float] = field(default_factory=dict)
    """Each metric's lowest acceptable value (for metrics where higher is better)."""
    max: dict[str, float] = field(default_factory=dict)
    """Each metric's highest acceptable value (perplexity, loss)."""
    reference: dict[str, float] = field(default_factory=dict)
    """The published or measured numbers the bounds are set from."""
    data: str = ""
    """The eval data the numbers are for (a run on other data is not comparable)."""
    examples: int | None = None
    """How many eval examples the numbers were measured on (results.json's
    ``data.eval.examples``); ``verify`` refuses a run that scored another number."""
    sha256: str | None = None
    """The SHA-256 of those eval files (results.json's ``data.eval.sha256``), for local
    files; ``verify`` refuses a run on other bytes."""
    source: str = ""
    """Where the reference numbers come from: a paper's table, a README, a measured run."""

    def problems(self) -> list[str]:
        """Bounds that check nothing or cannot be met, one line each."""
        found = [
            f"'expect.min.{name}' ({low}) is above 'expect.max.{name}' ({self.max[name]})"
            for name, low in self.min.items()
            if name in self.max and low > self.max[name]
        ]
        if not self.min and not self.max:
            found.append("'expect' needs bounds: 'expect.min' or 'expect.max' (metric: value)")
        for kind, bounds in (("min", self.min), ("max", self.max)):
            found += [
                f"'expect.{kind}.{name}' must be a finite number, not {value}"
                for name, value in bounds.items()
                if not math.isfinite(value)
            ]
        if self.examples is not None and self.examples < 1:
            found.append(f"'expect.examples' must be at least 1, not {self.examples}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            found.append(
                f"'expect.sha256' must be 64 hex characters (results.json's data.eval.sha256), "
                f"not '{clip(self.sha256)}'"
            )
        return [f"{problem}." for problem in found]


def own_problems(section: object) -> list[str]:
    """What a section says is wrong with itself (its ``problems()``, optional for a task's
    options), one line each ending in a full stop."""
    own = getattr(section, "problems", None)
    return [f"{p.rstrip('.')}." for p in own()] if callable(own) else []


@dataclass
class Recipe:
    """One run: task, model, data, training, the task's options and generation settings."""

    task: str
    model: str
    """Model preset name (``nlptasks list models``), local directory or hub id."""
    description: str = ""
    output_dir: str = "runs"
    """Folder that receives a new run directory per run."""
    run_name: str | None = None
    license: str | None = None
    """The fine-tuned model's license on its model card (a Hub license id such as
    ``apache-2.0``; ``other`` when absent: it depends on the base model and the data)."""
    trust_remote_code: bool = False
    """Let a model run its own Python code from its folder or the Hub (transformers'
    ``trust_remote_code``). Off unless a recipe turns it on; a warning says so."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: Any = field(default_factory=NoOptions)
    """The task's own settings: an instance of its ``TaskInfo.options`` dataclass."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    expect: Expectation | None = None
    """What a run should reach (``nlptasks verify``); none by default."""
    name: str | None = None
    """The recipe's own name (set when loaded from the registry)."""

    def problems(self) -> list[str]:
        """Every section's value problems (types are the builder's), one line each."""
        return [
            *self.train.problems(),
            *self.data.problems(),
            *self.generation.problems(),
            *self.lora.problems(),
            *self.distributed.problems(),
            *self.track.problems(),
            *_failed(
                [
                    (
                        not (self.lora.enabled and self.distributed.strategy != "ddp"),
                        f"LoRA does not go with distributed.strategy={self.distributed.strategy} "
                        f"yet: its trainable part is small, so train it with ddp (the default)",
                    )
                ]
            ),
            *own_problems(self.options),
            *(self.expect.problems() if self.expect is not None else []),
        ]


def recipe_field_types(options: type) -> dict[str, Any]:
    """The field types the builder uses for a recipe of a task whose options are ``options``
    (``Recipe.options`` is declared ``Any``)."""
    return {"options": options}


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data (re-runnable with ``--recipe``)."""
    return dataclasses.asdict(recipe, dict_factory=_plain_dict)


def _plain_dict(items: list[tuple[str, Any]]) -> dict[str, Any]:
    # YAML's safe dumper has no tuples: a tuple option is written as a list.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True)


def with_absolute_paths(recipe: Recipe) -> Recipe:
    """The recipe with its data files as absolute paths, so that the run directory's
    ``recipe.yaml`` means the same files from any working directory (``nlptasks eval``).
    Task options whose names end in ``_path`` are files too (translation's parallel files)."""

    def absolute(path: str | None) -> str | None:
        return str(Path(path).expanduser().resolve()) if path else path

    data = dataclasses.replace(
        recipe.data,
        train_path=absolute(recipe.data.train_path),
        eval_path=absolute(recipe.data.eval_path),
    )
    sharding = dataclasses.replace(
        recipe.distributed, config_file=absolute(recipe.distributed.config_file)
    )
    options = recipe.options
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        paths = {
            f.name: absolute(getattr(options, f.name))
            for f in dataclasses.fields(options)
            if f.name.endswith("_path") and isinstance(getattr(options, f.name), str)
        }
        options = dataclasses.replace(options, **paths)
    return dataclasses.replace(recipe, data=data, options=options, distributed=sharding)
