"""Recipes: YAML files that say everything about one run, validated against a typed schema.

A recipe names a task, a model and its data and training settings, the task's own settings
(``options:``, a dataclass the task declares) and the shared generation settings
(``generation:``). It may ``extends:`` one other recipe (one level only). ``key=value``
overrides (values parsed as YAML) and ``~key`` removals (back to the default) apply after
loading. Validation reports every problem at once, with suggestions for misspelled keys.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nlptasks.errors import ConfigError, NlpTasksError, PluginError, UnknownNameError
from nlptasks.plugins.registry import get_registries


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
    source: str = ""
    """Where the reference numbers come from: a paper's table, a README, a measured run."""


@dataclass
class NoOptions:
    """The options of a task that declares none."""


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
    """The task's own settings: an instance of its ``options_class`` dataclass."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    expect: Expectation | None = None
    """What a run should reach (``nlptasks verify``); none by default."""
    name: str | None = None
    """The recipe's own name (set when loaded from the registry)."""


def load_recipe(
    task: str,
    recipe: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Recipe:
    """Find, load, extend, override and validate a recipe for ``task``.

    ``recipe`` is a registered name (``minilm`` or ``sentiment/minilm``), a YAML path, or None
    for the task's default recipe.
    """
    path, name = resolve_recipe_path(task, recipe)
    raw = read_recipe_dict(path, task)
    if raw.get("task", task) != task:
        raise ConfigError(
            str(path),
            [
                f"is a recipe for task '{raw['task']}', not '{task}'. "
                f"Run 'nlptasks run {raw['task']} --recipe {path}'."
            ],
        )
    options_cls = options_class(task)
    raw = _move_task_settings(raw, options_cls, str(path))
    raw, override_problems = _apply_overrides(raw, overrides, options_cls)
    raw.setdefault("task", task)
    raw.setdefault("name", name)
    try:
        recipe_obj = validate(raw, str(path), options_cls, overridden=_override_keys(overrides))
    except ConfigError as exc:  # every problem at once: the overrides' and the recipe's
        raise ConfigError(str(path), override_problems + exc.problems) from None
    if override_problems:
        raise ConfigError(str(path), override_problems)
    return recipe_obj


def _move_task_settings(raw: dict[str, Any], options_cls: type, source: str) -> dict[str, Any]:
    """Read task settings a recipe still keeps under ``data`` (as recipes, and the
    ``recipe.yaml`` of runs, did before tasks had options) as ``options``, with a warning."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw
    own = {f.name for f in dataclasses.fields(options_cls)} - {
        f.name for f in dataclasses.fields(DataConfig)
    }
    moved = [key for key in data if key in own]
    if not moved:
        return raw
    raw = copy.deepcopy(raw)
    options = raw.setdefault("options", {})
    if not isinstance(options, dict):
        return raw  # validation reports the malformed section
    for key in moved:
        options.setdefault(key, raw["data"].pop(key))
    keys = ", ".join(f"data.{k}" for k in moved)
    warnings.warn(
        f"Recipe {source}: {keys} are task options now; read as options.* (move them there).",
        stacklevel=3,
    )
    return raw


def options_class(task: str) -> type:
    """The options dataclass the registered ``task`` declares (:class:`NoOptions` if none)."""
    entry = get_registries().tasks.get(task)
    cls = getattr(entry.load(), "options_class", None) or NoOptions
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise PluginError(
            f"Task '{task}' (plugin '{entry.plugin}') has an options_class that is not a "
            f"dataclass. Fix the plugin: declare its options with @dataclass."
        )
    return cls


def resolve_recipe_path(task: str, recipe: str | None) -> tuple[Path, str]:
    """Return (path, recipe name) for a registered name, a file path, or the task default."""
    regs = get_registries()
    task_entry = regs.tasks.get(task)
    if recipe is None:
        recipe = str(getattr(task_entry.load(), "default_recipe", "default"))
    candidate = Path(recipe)
    # A folder that happens to share a recipe's name is not a recipe file.
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise NlpTasksError(
                f"Recipe file '{recipe}' does not exist. Check the path, or see "
                f"'nlptasks recipes list' for built-in recipes."
            )
        return candidate, candidate.stem
    key = recipe if "/" in recipe else f"{task}/{recipe}"
    if key not in regs.recipes:
        known = [n.split("/", 1)[1] for n in regs.recipes.names() if n.startswith(f"{task}/")]
        raise UnknownNameError(
            f"recipe for task '{task}'", recipe, known, "See 'nlptasks recipes list'."
        )
    return regs.recipes.get(key).target, key.split("/", 1)[1]


def locate_recipe(item: str) -> tuple[Path, str]:
    """(path, task) of a recipe file or a registered recipe (``TASK/NAME``, or ``NAME`` if
    only one task has it).

    A registered recipe's task comes from its registration (a plugin's file may live in any
    folder); a file's from its own ``task:`` key, never from its folder's name.
    """
    path = Path(item)
    if path.is_file():
        task = read_recipe_dict(path).get("task")
        if not task:
            raise ConfigError(str(path), ["has no 'task:' key. Add 'task: NAME' to the file."])
        return path, str(task)
    regs = get_registries()
    matches = [e for e in regs.recipes if item in (e.name, e.name.split("/", 1)[1])]
    if len(matches) == 1:
        return matches[0].target, matches[0].tasks[0]
    if len(matches) > 1:
        names = ", ".join(e.name for e in matches)
        raise NlpTasksError(
            f"Recipe name '{item}' is ambiguous: {names}. Write TASK/NAME, e.g. {matches[0].name}."
        )
    raise UnknownNameError("recipe", item, regs.recipes.names(), "See 'nlptasks recipes list'.")


def read_recipe_dict(path: Path, task: str | None = None) -> dict[str, Any]:
    """Read a YAML recipe and merge the one recipe it ``extends`` (one level only)."""
    raw = read_yaml(path)
    parent_ref = raw.pop("extends", None)
    if parent_ref is None:
        return raw
    parent_path = _resolve_parent(path, str(parent_ref), task or raw.get("task"))
    parent = read_yaml(parent_path)
    if "extends" in parent:
        raise ConfigError(
            str(path),
            [
                f"extends '{parent_ref}', which itself extends '{parent['extends']}'; only one "
                f"level of 'extends' is allowed. Copy the keys you need instead."
            ],
        )
    return _deep_merge(parent, raw)


def _resolve_parent(child: Path, ref: str, task: str | None) -> Path:
    sibling = child.parent / (ref if ref.endswith((".yaml", ".yml")) else f"{ref}.yaml")
    if sibling.is_file():
        return sibling
    if task:
        return resolve_recipe_path(task, ref)[0]
    raise ConfigError(str(child), [f"extends '{ref}', which was not found next to it."])


def read_yaml(path: Path) -> dict[str, Any]:
    """One recipe file as a dict (``extends`` not resolved); malformed YAML is one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NlpTasksError(f"Cannot read recipe '{path}': {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), [f"is not UTF-8 text ({exc.reason} at byte {exc.start}). Save it as UTF-8."]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"{path}{where}", [f"malformed YAML ({problem}). Fix the syntax there."]
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["must be a YAML mapping of keys to values."])
    return data


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _override_keys(overrides: list[str] | tuple[str, ...]) -> set[str]:
    return {item.partition("=")[0] for item in overrides if not item.startswith("~")}


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...], options_cls: type = NoOptions
) -> dict[str, Any]:
    """Apply ``key=value`` (value parsed as YAML) and ``~key`` (remove) overrides.

    A key the schema does not have is reported as the override's mistake, not the recipe's.
    """
    result, problems = _apply_overrides(raw, overrides, options_cls)
    if problems:
        raise ConfigError("overrides", problems)
    return result


def _apply_overrides(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...], options_cls: type
) -> tuple[dict[str, Any], list[str]]:
    """The overridden dict and the problems of the overrides that could not apply."""
    result = copy.deepcopy(raw)
    problems = []
    for item in overrides:
        if item.startswith("~"):
            keys = item[1:].split(".")
            if "=" in item or _field_type(keys, options_cls) is None:
                hint = _path_hint(keys, options_cls) if "=" not in item else ""
                hint = hint or (" Write ~KEY with no value." if "=" in item else "")
                problems.append(f"cannot remove '{item[1:]}': not a recipe key.{hint}")
                continue
            node = result
            for key in keys[:-1]:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(keys[-1], None)
            continue
        key, sep, value_text = item.partition("=")
        if not sep or not key:
            problems.append(f"override '{item}' is not KEY=VALUE or ~KEY (e.g. train.epochs=1).")
            continue
        parts = key.split(".")
        expected = _field_type(parts, options_cls)
        if key == "task":
            problems.append(
                f"override '{item}' cannot change the task; run 'nlptasks run "
                f"{value_text or 'TASK'} ...' instead."
            )
            continue
        if expected is None:
            problems.append(
                f"override '{item}' sets unknown key '{key}'.{_path_hint(parts, options_cls)}"
            )
            continue
        node = result
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _parse_value(value_text, expected)
    return result, problems


def _parse_value(text: str, expected: Any) -> Any:
    """An override's value: YAML, except that text meant for a string field stays text.

    YAML would turn ``no`` into False, ``1.10`` into 1.1, ``2024-01-01`` into a date and cut
    ``a #2`` at the comment; a string field (a path, a name) must get exactly what was typed.
    """
    if text == "":
        return None
    if _accepts_plain_text(expected) and text not in ("null", "~"):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not YAML: keep the text, validation checks its type


def _accepts_plain_text(expected: Any) -> bool:
    if expected is str:
        return True
    args = typing.get_args(expected)
    if typing.get_origin(expected) is Literal:
        return all(isinstance(a, str) for a in args)
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return len(real) == 1 and _accepts_plain_text(real[0])
    return False


def _hints(cls: Any, options_cls: type) -> dict[str, Any]:
    """The schema of one section: its field types, with the task's options class in place."""
    hints = typing.get_type_hints(cls)
    if cls is Recipe:
        hints["options"] = options_cls
    return hints


def _field_type(path: list[str], options_cls: type = NoOptions) -> Any:
    """The schema type at a dotted path (``["train", "epochs"]``), or None if there is none."""
    cls: Any = Recipe
    for part in path:
        cls = _optional_dataclass(cls) or cls
        if typing.get_origin(cls) is dict:  # a mapping's key (expect.min.accuracy)
            cls = typing.get_args(cls)[1]
            continue
        if not dataclasses.is_dataclass(cls):
            return None
        hints = _hints(cls, options_cls)
        if part not in hints:
            return None
        cls = hints[part]
    return cls


def _path_hint(path: list[str], options_cls: type = NoOptions) -> str:
    cls: Any = Recipe
    prefix = ""
    for part in path:
        if not dataclasses.is_dataclass(cls):
            return ""
        hints = _hints(cls, options_cls)
        if part not in hints:
            return _suggest(prefix, part, list(hints), options_cls)
        prefix += f"{part}."
        cls = hints[part]
    return ""


def _suggest(prefix: str, key: str, known: list[str], options_cls: type) -> str:
    """`` Did you mean ...?`` for a misspelled key; points settings that are the task's own
    (e.g. ``data.label_names``) at the options section."""
    if prefix == "data." and key in {f.name for f in dataclasses.fields(options_cls)}:
        return f" Did you mean 'options.{key}'? (task settings live in options)"
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f" Did you mean '{prefix}{close[0]}'?"
    return f" Known keys: {', '.join(prefix + k for k in known) or 'none'}."


def validate(
    raw: dict[str, Any],
    source: str,
    options_cls: type | None = None,
    overridden: set[str] | frozenset[str] = frozenset(),
) -> Recipe:
    """Build a :class:`Recipe` from a dict, reporting every problem at once.

    ``options_cls`` defaults to the options class of the task ``raw`` names; problems with a
    key in ``overridden`` are said to come from the command line.
    """
    if options_cls is None:
        task = raw.get("task")
        if not task:
            raise ConfigError(source, ["missing required key 'task'. Add 'task: NAME'."])
        options_cls = options_class(str(task))
    problems: list[str] = []
    recipe = _build(Recipe, raw, "", problems, options_cls, overridden)
    if recipe is not None:
        problems.extend(_check_values(recipe))
    else:
        problems.extend(_check_sections(raw, options_cls))
    if problems:
        raise ConfigError(source, problems)
    assert isinstance(recipe, Recipe)
    return recipe


def _check_sections(raw: dict[str, Any], options_cls: type) -> list[str]:
    """Value checks of each section that built, when another did not: every problem is still
    reported at once."""
    problems: list[str] = []
    for name, cls in (
        ("train", TrainConfig),
        ("data", DataConfig),
        ("generation", GenerationConfig),
        ("lora", LoraConfig),
        ("options", options_cls),
    ):
        scratch: list[str] = []
        built = _build(cls, raw.get(name, {}), f"{name}.", scratch, options_cls, frozenset())
        if built is not None and not scratch:  # its type problems are reported already
            problems.extend(_SECTION_CHECKS.get(name, _options_problems)(built))
    return problems


def _check_values(recipe: Recipe) -> list[str]:
    """Values that have the right type but cannot work, caught before any run starts."""
    return [
        *_train_problems(recipe.train),
        *_data_problems(recipe.data),
        *_generation_problems(recipe.generation),
        *_lora_problems(recipe.lora),
        *_options_problems(recipe.options),
        *_expect_problems(recipe.expect),
    ]


def _expect_problems(expect: Expectation | None) -> list[str]:
    if expect is None:
        return []
    found = [
        f"'expect.min.{name}' ({low}) is above 'expect.max.{name}' ({expect.max[name]})"
        for name, low in expect.min.items()
        if name in expect.max and low > expect.max[name]
    ]
    if not expect.min and not expect.max:
        found.append("'expect' needs bounds: 'expect.min' or 'expect.max' (metric: value)")
    for kind, bounds in (("min", expect.min), ("max", expect.max)):
        found += [
            f"'expect.{kind}.{name}' must be a finite number, not {value}"
            for name, value in bounds.items()
            if not math.isfinite(value)
        ]
    return [f"{problem}." for problem in found]


def _failed(checks: list[tuple[bool, str]]) -> list[str]:
    return [f"{message}." for ok, message in checks if not ok]


def _train_problems(t: TrainConfig) -> list[str]:
    return _failed(
        [
            (math.isfinite(t.epochs) and t.epochs > 0, "'train.epochs' must be a number above 0"),
            (math.isfinite(t.learning_rate), "'train.learning_rate' must be a finite number"),
            (t.max_steps is None or t.max_steps > 0, "'train.max_steps' must be at least 1"),
            (t.batch_size > 0, "'train.batch_size' must be at least 1"),
            (t.bootstrap_resamples >= 0, "'train.bootstrap_resamples' must be 0 or more"),
            (
                t.gradient_accumulation_steps > 0,
                "'train.gradient_accumulation_steps' must be >= 1",
            ),
            (
                t.gradient_accumulation_steps <= 0
                or t.batch_size % t.gradient_accumulation_steps == 0,
                f"'train.batch_size' ({t.batch_size}) must be a multiple of "
                f"'train.gradient_accumulation_steps' ({t.gradient_accumulation_steps})",
            ),
            (t.eval_batch_size > 0, "'train.eval_batch_size' must be at least 1"),
            (t.learning_rate > 0, "'train.learning_rate' must be above 0"),
            (
                math.isfinite(t.weight_decay) and t.weight_decay >= 0,
                "'train.weight_decay' must be 0 or more",
            ),
            (
                t.max_grad_norm is None or (math.isfinite(t.max_grad_norm) and t.max_grad_norm > 0),
                "'train.max_grad_norm' must be above 0 (null turns clipping off); a negative "
                "norm would flip every step",
            ),
            (0 <= t.seed < 2**32, "'train.seed' must be in 0..4294967295"),
            (0 <= t.warmup_ratio < 1, "'train.warmup_ratio' must be in [0, 1)"),
            (t.eval_every is None or t.eval_every > 0, "'train.eval_every' must be at least 1"),
            (t.warmup_steps >= 0, "'train.warmup_steps' must not be negative"),
            (
                t.early_stopping_patience is None or t.early_stopping_patience > 0,
                "'train.early_stopping_patience' must be at least 1",
            ),
            (t.log_every > 0, "'train.log_every' must be at least 1"),
            (t.save_every is None or t.save_every > 0, "'train.save_every' must be at least 1"),
            (
                t.save_total_limit is None or t.save_total_limit > 0,
                "'train.save_total_limit' must be at least 1",
            ),
        ]
    )


def _data_problems(d: DataConfig) -> list[str]:
    return _failed(
        [
            (0 < d.eval_fraction < 1, "'data.eval_fraction' must be between 0 and 1"),
            (d.max_length > 1, "'data.max_length' must be at least 2"),
            (
                d.max_train_examples is None or d.max_train_examples > 0,
                "'data.max_train_examples' must be at least 1",
            ),
            (
                d.max_eval_examples is None or d.max_eval_examples > 0,
                "'data.max_eval_examples' must be at least 1",
            ),
        ]
    )


def _generation_problems(g: GenerationConfig) -> list[str]:
    return _failed(
        [
            (
                g.max_new_tokens is None or g.max_new_tokens > 0,
                "'generation.max_new_tokens' must be at least 1",
            ),
            (g.num_beams > 0, "'generation.num_beams' must be at least 1"),
            (
                math.isfinite(g.temperature) and g.temperature > 0,
                "'generation.temperature' must be a number above 0",
            ),
            (0 < g.top_p <= 1, "'generation.top_p' must be in (0, 1]"),
            (g.top_k is None or g.top_k >= 0, "'generation.top_k' must be 0 (off) or more"),
            (
                math.isfinite(g.repetition_penalty) and g.repetition_penalty > 0,
                "'generation.repetition_penalty' must be a number above 0",
            ),
            (
                g.seed is None or 0 <= g.seed < 2**32,
                "'generation.seed' must be in 0..4294967295",
            ),
            (g.every is None or g.every > 0, "'generation.every' must be at least 1"),
        ]
    )


def _options_problems(options: Any) -> list[str]:
    # A task's options check their own values (an optional ``problems()`` method).
    own = getattr(options, "problems", None)
    return [f"{p.rstrip('.')}." for p in own()] if callable(own) else []


def _lora_problems(lo: LoraConfig) -> list[str]:
    return _failed(
        [
            (lo.r > 0, "'lora.r' must be at least 1"),
            (lo.alpha > 0, "'lora.alpha' must be at least 1"),
            (0 <= lo.dropout < 1, "'lora.dropout' must be in [0, 1)"),
            (
                lo.target_modules is None or len(lo.target_modules) > 0,
                "'lora.target_modules' must name at least one module (or be left out)",
            ),
        ]
    )


_SECTION_CHECKS: dict[str, Any] = {
    "train": _train_problems,
    "data": _data_problems,
    "generation": _generation_problems,
    "lora": _lora_problems,
}


def _build(
    cls: type,
    raw: Any,
    prefix: str,
    problems: list[str],
    options_cls: type,
    overridden: set[str] | frozenset[str],
) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"'{prefix.rstrip('.')}' must be a mapping, got {_describe(raw)}.")
        return None
    problems_before = len(problems)
    hints = _hints(cls, options_cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            hint = _suggest(prefix, str(key), list(fields), options_cls)
            problems.append(f"unknown key '{prefix}{key}'.{hint}")
            continue
        expected = hints[key]
        if value is not None and (inner := _optional_dataclass(expected)) is not None:
            expected = inner  # an optional section (expect:) that is given
        if dataclasses.is_dataclass(expected):
            values[key] = _build(
                expected,  # type: ignore[arg-type]
                value,
                f"{prefix}{key}.",
                problems,
                options_cls,
                overridden,
            )
            continue
        ok, converted = _check_type(value, expected)
        if not ok:
            origin = " (set by an override)" if f"{prefix}{key}" in overridden else ""
            problems.append(
                f"'{prefix}{key}'{origin} must be {_type_name(expected)}, got {_describe(value)}."
            )
            continue
        values[key] = converted
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values and name not in raw:
            problems.append(f"missing required key '{prefix}{name}'. Add '{prefix}{name}: ...'.")
    if cls is Recipe and "options" not in raw:
        # The task's defaults (not an empty NoOptions); options without a default are
        # reported like any other missing key.
        values["options"] = _build(options_cls, {}, "options.", problems, options_cls, overridden)
    if len(problems) > problems_before:
        return None
    return cls(**values)


def _optional_dataclass(expected: Any) -> Any:
    """The dataclass of an ``X | None`` hint, else None."""
    if typing.get_origin(expected) not in (typing.Union, types.UnionType):
        return None
    classes = [a for a in typing.get_args(expected) if dataclasses.is_dataclass(a)]
    return classes[0] if len(classes) == 1 else None


def _check_type(value: Any, expected: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, converted = _check_type(value, arg)
            if ok:
                return True, converted
        return False, None
    if expected is type(None):
        return value is None, None
    if origin is Literal:
        if isinstance(value, bool):
            # YAML 1.1 reads a bare no/yes in a recipe file as a boolean.
            word = "yes" if value else "no"
            return word in args, word
        return value in args, value
    if origin is list:
        if not isinstance(value, list):
            return False, None
        items = [_check_type(v, args[0]) for v in value]
        return all(ok for ok, _ in items), [c for _, c in items]
    if origin is tuple:  # YAML has lists; a tuple field takes one (``tuple[str, ...]``)
        if not isinstance(value, (list, tuple)):
            return False, None
        item_type = args[0] if args else Any
        items = [_check_type(v, item_type) if item_type is not Any else (True, v) for v in value]
        return all(ok for ok, _ in items), tuple(c for _, c in items)
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        pairs = [(_check_type(k, args[0]), _check_type(v, args[1])) for k, v in value.items()]
        ok = all(k[0] and v[0] for k, v in pairs)
        return ok, {k[1]: v[1] for k, v in pairs} if ok else None
    if origin is not None:  # other generics (tuple[...], set[...]): YAML gives lists
        return False, None
    if expected is bool:
        return isinstance(value, bool), value
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if expected is float:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, (int, float)):
            return True, float(value)
        # YAML 1.1 reads "2e-5" as a string; accept it as a number.
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if expected is str:
        # Numbers are fine where a string is expected (e.g. a model name "123").
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return True, str(value)
        return False, None
    return isinstance(value, expected), value


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        expected, getattr(expected, "__name__", str(expected))
    )


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data (re-runnable with ``--recipe``)."""
    return dataclasses.asdict(recipe, dict_factory=_plain_dict)


def _plain_dict(items: list[tuple[str, Any]]) -> dict[str, Any]:
    # YAML's safe dumper has no tuples: a tuple option is written as a list.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


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
    options = recipe.options
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        paths = {
            f.name: absolute(getattr(options, f.name))
            for f in dataclasses.fields(options)
            if f.name.endswith("_path") and isinstance(getattr(options, f.name), str)
        }
        options = dataclasses.replace(options, **paths)
    return dataclasses.replace(recipe, data=data, options=options)


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True)


def register_recipe_folder(register: Callable[..., None], task: str, folder: str | Path) -> None:
    """Register every ``*.yaml`` in ``folder`` as a recipe of ``task``, named by its file
    stem: what a plugin's ``register_recipes`` hook does with the recipes it ships."""
    for path in sorted(Path(folder).glob("*.yaml")):
        register(task, path.stem, path)
