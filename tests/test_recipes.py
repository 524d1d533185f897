from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from nlptasks.errors import ConfigError, NlpTasksError, UnknownNameError
from nlptasks.recipes import apply_overrides, dump_recipe, load_recipe

REPO = Path(__file__).resolve().parent.parent


def test_every_shipped_recipe_loads_and_validates() -> None:
    paths = sorted((REPO / "nlptasks" / "builtins").glob("*/recipes/*.yaml"))
    assert len(paths) == 12  # update when adding recipes: a glob that finds nothing must fail
    for path in paths:
        task = path.parent.parent.name  # nlptasks/builtins/TASK/recipes/NAME.yaml
        recipe = load_recipe(task, str(path))
        assert recipe.task == task
        assert recipe.model
        first = path.read_text().splitlines()[0]
        assert first.startswith("#"), f"{path} must open with a comment showing the command"


def test_registered_recipes_match_files() -> None:
    from nlptasks.plugins.registry import get_registries

    names = get_registries().recipes.names()
    assert names == [
        "generation/gpt2",
        "generation/smollm2",
        "generation/smollm2-lora",
        "qa/bert-base",
        "qa/minilm",
        "sentiment/bert-base",
        "sentiment/distilbert",
        "sentiment/minilm",
        "translation/gemma3-270m",
        "translation/marian-en-ro",
        "translation/smollm2",
        "translation/t5-small",
    ]


def test_default_recipe_is_offline_minilm() -> None:
    recipe = load_recipe("sentiment")
    assert recipe.name == "minilm"
    assert recipe.model == "all-minilm-l6-v2"
    assert recipe.data.dataset == "rotten-tomatoes-snippets"


def test_required_keys_exist() -> None:
    recipe = load_recipe(
        "sentiment",
        "minilm",
        [
            "data.train_path=a.tsv",
            "data.eval_path=b.tsv",
            "data.max_train_examples=10",
            "data.max_eval_examples=5",
            "train.epochs=2",
            "train.max_steps=7",
            "train.learning_rate=3e-5",
            "train.batch_size=8",
            "train.seed=3",
            "output_dir=out",
            "model=other",
        ],
    )
    assert recipe.data.train_path == "a.tsv" and recipe.data.eval_path == "b.tsv"
    assert recipe.data.max_train_examples == 10 and recipe.data.max_eval_examples == 5
    assert recipe.train.epochs == 2.0 and recipe.train.max_steps == 7
    assert recipe.train.learning_rate == pytest.approx(3e-5)
    assert recipe.train.batch_size == 8 and recipe.train.seed == 3
    assert recipe.output_dir == "out" and recipe.model == "other"


def test_extends_merges_one_level() -> None:
    recipe = load_recipe("sentiment", "distilbert")
    assert recipe.model == "distilbert/distilbert-base-uncased"
    assert recipe.data.dataset == "nyu-mll/glue"  # inherited from bert-base
    assert recipe.train.learning_rate == pytest.approx(2e-5)
    assert recipe.name == "distilbert"


def test_extends_two_levels_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("task: sentiment\nmodel: m\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    (tmp_path / "c.yaml").write_text("extends: b\n")
    assert load_recipe("sentiment", str(tmp_path / "b.yaml")).model == "m"
    with pytest.raises(ConfigError, match="only one level"):
        load_recipe("sentiment", str(tmp_path / "c.yaml"))


def test_overrides_set_and_remove() -> None:
    raw = {"train": {"epochs": 3, "seed": 1}, "model": "x"}
    out = apply_overrides(raw, ["train.epochs=1", "~train.seed", "data.max_length=64"])
    assert out == {"train": {"epochs": 1}, "model": "x", "data": {"max_length": 64}}
    assert raw["train"] == {"epochs": 3, "seed": 1}  # the input is not modified
    recipe = load_recipe("sentiment", "minilm", ["~train.learning_rate"])
    assert recipe.train.learning_rate == pytest.approx(2e-5)  # back to the schema default


def test_override_values_are_yaml_typed() -> None:
    recipe = load_recipe(
        "sentiment",
        "minilm",
        [
            "train.eval_every=5",
            "train.group_by_length=false",
            "options.label_names=[a, b]",
            "train.max_grad_norm=null",
        ],
    )
    assert recipe.train.eval_every == 5
    assert recipe.train.group_by_length is False
    assert recipe.options.label_names == ["a", "b"]
    assert recipe.train.max_grad_norm is None


def test_every_problem_reported_at_once_with_suggestions() -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(
            "sentiment",
            "minilm",
            [
                "train.epoch=1",
                "train.learning_rate=fast",
                "data.max_length=x",
                "train.scheduler=exponential",
                "trian.seed=1",
            ],
        )
    problems = info.value.problems
    assert len(problems) == 5
    text = str(info.value)
    assert "Did you mean 'train.epochs'?" in text
    assert "Did you mean 'train'?" in text
    # Mistakes typed on the command line are blamed on the override, not the recipe file.
    assert "override 'train.epoch=1' sets unknown key 'train.epoch'" in text
    assert "'train.learning_rate' (set by an override) must be a number, got str 'fast'" in text
    assert "'data.max_length' (set by an override) must be an integer" in text
    assert "one of 'linear', 'cosine', 'constant'" in text
    assert "\n" not in text


def test_missing_required_field(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("task: sentiment\ndata:\n  max_length: 32\n")
    with pytest.raises(ConfigError, match="missing required key 'model'"):
        load_recipe("sentiment", str(path))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("task: sentiment\nmodel: [unclosed\ntrain:\n  epochs: 1\n")
    with pytest.raises(ConfigError, match=r"line \d+.*malformed YAML"):
        load_recipe("sentiment", str(path))


def test_unknown_recipe_suggests() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'minilm'"):
        load_recipe("sentiment", "minlm")


def test_missing_recipe_file() -> None:
    with pytest.raises(NlpTasksError, match="does not exist"):
        load_recipe("sentiment", "no/such/recipe.yaml")


def test_resolved_dump_is_rerunnable(tmp_path: Path) -> None:
    recipe = load_recipe("sentiment", "distilbert", ["train.epochs=1"])
    path = tmp_path / "recipe.yaml"
    path.write_text(dump_recipe(recipe))
    again = load_recipe("sentiment", str(path))
    assert again == recipe


def test_recipe_for_another_task_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("task: qa\nmodel: m\n")
    with pytest.raises(ConfigError, match="not 'sentiment'"):
        load_recipe("sentiment", str(path))


def test_impossible_values_are_reported_before_a_run() -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(
            "sentiment",
            "minilm",
            [
                "train.batch_size=30",
                "train.gradient_accumulation_steps=4",
                "train.epochs=0",
                "data.eval_fraction=1.5",
            ],
        )
    text = str(info.value)
    assert "must be a multiple of 'train.gradient_accumulation_steps' (4)" in text
    assert "'train.epochs' must be a number above 0" in text
    assert "'data.eval_fraction' must be between 0 and 1" in text
    assert len(info.value.problems) == 3


def test_string_fields_get_exactly_the_typed_text() -> None:
    recipe = load_recipe(
        "sentiment",
        "minilm",
        [
            "train.mixed_precision=no",
            "data.dataset_config=1.10",
            "data.train_path=my data #2.tsv",
            "run_name=2024-01-01",
            "options.text_column=yes",
            "data.eval_split=null",
        ],
    )
    assert recipe.train.mixed_precision == "no"
    assert recipe.data.dataset_config == "1.10"
    assert recipe.data.train_path == "my data #2.tsv"
    assert recipe.run_name == "2024-01-01"
    assert recipe.options.text_column == "yes"
    assert recipe.data.eval_split is None


def test_yaml_no_in_a_recipe_file_is_the_word(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("task: sentiment\nmodel: m\ntrain:\n  mixed_precision: no\n")
    assert load_recipe("sentiment", str(path)).train.mixed_precision == "no"


def test_removing_an_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe("sentiment", "minilm", ["~train.epoch", "~train.epochs=1"])
    text = str(info.value)
    assert "cannot remove 'train.epoch'" in text and "Did you mean 'train.epochs'?" in text
    assert "Write ~KEY with no value" in text


def test_more_impossible_values() -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(
            "sentiment",
            "minilm",
            [
                "options.label_names=[neg, neg]",
                "train.early_stopping_patience=0",
                "train.warmup_steps=-5",
                "train.epochs=.inf",
            ],
        )
    text = str(info.value)
    assert "must not repeat a name" in text
    assert "'train.early_stopping_patience' must be at least 1" in text
    assert "'train.warmup_steps' must not be negative" in text
    assert "'train.epochs' must be a number above 0" in text


def test_task_options_are_typed_validated_and_shown() -> None:
    recipe = load_recipe("sentiment", "minilm", ["options.text_column=review"])
    from nlptasks.builtins.sentiment.task import SentimentOptions

    assert isinstance(recipe.options, SentimentOptions)
    assert recipe.options.text_column == "review"
    assert recipe.options.label_names == ["negative", "positive"]
    dumped = dump_recipe(recipe)
    assert "options:\n  text_column: review\n" in dumped
    with pytest.raises(ConfigError) as info:
        load_recipe("sentiment", "minilm", ["options.label_colum=x", "options.label_names=3"])
    text = str(info.value)
    assert "Did you mean 'options.label_column'?" in text
    assert "'options.label_names' (set by an override) must be a list of a string" in text


def test_task_settings_still_under_data_are_read_as_options(tmp_path: Path) -> None:
    # The recipe.yaml of runs made before tasks had options keeps them under data.
    path = tmp_path / "old.yaml"
    path.write_text("task: sentiment\nmodel: m\ndata:\n  label_names: [a, b]\n  max_length: 9\n")
    with pytest.warns(UserWarning, match=r"data.label_names are task options now"):
        recipe = load_recipe("sentiment", str(path))
    assert recipe.options.label_names == ["a", "b"] and recipe.data.max_length == 9
    # On the command line the key is simply wrong, with a pointer to where it lives now.
    with pytest.raises(ConfigError, match="Did you mean 'options.label_names'"):
        load_recipe("sentiment", "minilm", ["data.label_names=[a, b]"])


def test_the_task_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError, match="override 'task=qa' cannot change the task"):
        load_recipe("sentiment", "minilm", ["task=qa"])


def test_a_folder_named_like_a_recipe_is_not_a_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "minilm").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_recipe("sentiment", "minilm").name == "minilm"


def test_value_problems_are_reported_with_type_problems() -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(
            "sentiment",
            "minilm",
            ["train.epochs=-1", "data.max_length=abc", "options.label_names=[a, a]"],
        )
    assert len(info.value.problems) == 3


def test_tuple_options_take_lists_and_round_trip(tmp_path: Path) -> None:
    from dataclasses import dataclass

    from nlptasks.recipes import recipe_to_dict, validate

    @dataclass
    class Tupled:
        names: tuple[str, ...] = ("a",)

    recipe = validate({"task": "x", "model": "m", "options": {"names": ["b", "c"]}}, "r", Tupled)
    assert recipe.options.names == ("b", "c")
    dumped = recipe_to_dict(recipe)
    assert dumped["options"]["names"] == ["b", "c"]
    assert validate(dumped, "again", Tupled).options.names == ("b", "c")


def test_a_recipe_without_options_gets_the_task_defaults(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("task: sentiment\nmodel: m\n")
    recipe = load_recipe("sentiment", str(path))
    assert recipe.options.label_column == "label" and recipe.options.label_names is None


def test_generation_settings_are_checked() -> None:
    recipe = load_recipe("sentiment", "minilm", ["generation.num_beams=4", "generation.every=2"])
    assert recipe.generation.num_beams == 4 and recipe.generation.every == 2
    with pytest.raises(ConfigError) as info:
        load_recipe(
            "sentiment",
            "minilm",
            ["generation.top_p=0", "generation.temperature=0", "generation.max_new_tokens=0"],
        )
    assert len(info.value.problems) == 3


def test_builtin_recipes_use_auto_precision() -> None:
    for name in ("minilm", "bert-base", "distilbert"):
        assert load_recipe("sentiment", name).train.mixed_precision == "auto"


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from nlptasks.training import precision

    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.resolve("auto") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.resolve("auto") == "no"
    assert precision.resolve("bf16") == "bf16"  # an explicit choice is kept
    with pytest.raises(NlpTasksError, match="needs a GPU"):
        precision.resolve("fp16")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    from nlptasks.training import precision

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    assert precision.cpu_has_fast_bf16() is expected


def test_task_options_without_defaults_and_mappings() -> None:
    from dataclasses import dataclass, field

    from nlptasks.recipes import validate

    @dataclass
    class Needs:
        language: str
        weights: dict[str, float] = field(default_factory=dict)

    raw = {"task": "x", "model": "m"}
    with pytest.raises(ConfigError, match="missing required key 'options.language'"):
        validate(raw, "r.yaml", Needs)
    recipe = validate({**raw, "options": {"language": "en", "weights": {"a": 1}}}, "r", Needs)
    assert recipe.options == Needs("en", {"a": 1.0})
    with pytest.raises(ConfigError, match="'options.weights' must be a mapping of a string"):
        validate({**raw, "options": {"language": "en", "weights": [1]}}, "r", Needs)


def test_validate_takes_the_task_from_the_file_not_its_folder(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nlptasks.cli import cli

    folder = tmp_path / "qa"  # a folder named like another task
    folder.mkdir()
    copied = folder / "mine.yaml"
    assert (
        CliRunner().invoke(cli, ["recipes", "copy", "sentiment/minilm", str(copied)]).exit_code == 0
    )
    result = CliRunner().invoke(cli, ["recipes", "validate", str(copied)])
    assert result.exit_code == 0, result.output
    no_task = tmp_path / "sentiment" / "r.yaml"
    no_task.parent.mkdir()
    no_task.write_text("model: m\n")
    result = CliRunner().invoke(cli, ["recipes", "validate", str(no_task)])
    assert result.exit_code == 1 and "has no 'task:' key" in result.output


@dataclass
class _Inner:
    size: int = 1


@dataclass
class _Section:
    # Type hints are resolved from the module, so the classes live at its top level.
    name: str
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    inner: _Inner = field(default_factory=_Inner)
    extra: Any = None


def test_build_dataclass_is_typed_and_reports_every_problem() -> None:
    from nlptasks.recipes import build_dataclass

    built, problems = build_dataclass(_Section, {"name": 3, "rate": "2e-5", "inner": {"size": 2}})
    assert problems == [] and built == _Section("3", 2e-5, "a", _Inner(2))
    built, problems = build_dataclass(
        _Section,
        {"rate": "fast", "mode": "c", "inner": {"sise": 1}, "nme": "x"},
        "sec",
        overridden={"sec.rate"},
    )
    assert built is None
    assert problems == [
        "'sec.rate' (set by an override) must be a number, got str 'fast'.",
        "'sec.mode' must be one of 'a', 'b', got str 'c'.",
        "unknown key 'sec.inner.sise'. Did you mean 'sec.inner.size'?",
        "unknown key 'sec.nme'. Did you mean 'sec.name'?",
        "missing required key 'sec.name'. Add 'sec.name: ...'.",
    ]
    assert build_dataclass(_Section, [1], "sec") == (
        None,
        ["'sec' must be a mapping, got list [1]."],
    )
    # A field declared Any takes a dataclass by its dotted key, with its defaults when absent.
    built, problems = build_dataclass(_Section, {"name": "n"}, field_types={"extra": _Inner})
    assert problems == [] and built is not None and built.extra == _Inner(1)
    built, problems = build_dataclass(
        _Section, {"name": "n", "extra": {"size": "x"}}, field_types={"extra": _Inner}
    )
    assert problems == ["'extra.size' must be an integer, got str 'x'."]


def test_each_section_checks_its_own_values() -> None:
    from nlptasks.recipes import (
        DataConfig,
        Expectation,
        GenerationConfig,
        LoraConfig,
        Recipe,
        TrainConfig,
    )

    sections = (DataConfig(), TrainConfig(), GenerationConfig(), LoraConfig())
    assert all(section.problems() == [] for section in sections)
    assert TrainConfig(batch_size=30, gradient_accumulation_steps=4).problems() == [
        "'train.batch_size' (30) must be a multiple of 'train.gradient_accumulation_steps' (4)."
    ]
    assert DataConfig(max_length=1).problems() == ["'data.max_length' must be at least 2."]
    assert GenerationConfig(top_p=0).problems() == ["'generation.top_p' must be in (0, 1]."]
    assert LoraConfig(target_modules=[]).problems() == [
        "'lora.target_modules' must name at least one module (or be left out)."
    ]
    assert Expectation().problems() == [
        "'expect' needs bounds: 'expect.min' or 'expect.max' (metric: value)."
    ]
    assert Expectation(min={"a": 2.0}, max={"a": 1.0}).problems() == [
        "'expect.min.a' (2.0) is above 'expect.max.a' (1.0)."
    ]

    # A recipe gathers its sections' problems, in order, the task's options' among them.
    @dataclass
    class Options:
        size: int = 0

        def problems(self) -> list[str]:
            return ["'options.size' must be at least 1"] if self.size < 1 else []

    bad = Recipe(
        task="t",
        model="m",
        train=TrainConfig(epochs=0),
        lora=LoraConfig(r=0),
        options=Options(),
        expect=Expectation(max={"loss": float("nan")}),
    )
    problems = bad.problems()
    assert problems[:2] == [
        "'train.epochs' must be a number above 0.",
        "'lora.r' must be at least 1.",
    ]
    assert problems[2] == "'options.size' must be at least 1."  # a full stop is added
    assert problems[3] == "'expect.max.loss' must be a finite number, not nan."
    assert len(problems) == 4


def test_recipe_modules_import_alone_without_cycles() -> None:
    import ast
    import subprocess
    import sys

    package = REPO / "nlptasks" / "recipes"
    allowed = {  # each module imports only the ones before it
        "schema": set(),
        "builder": set(),
        "safe_yaml": set(),
        "lookup": {"safe_yaml"},
        "overrides": {"schema", "builder", "safe_yaml"},
        "loading": {"schema", "builder", "lookup", "overrides"},
    }
    assert {p.stem for p in package.glob("*.py")} == {"__init__", *allowed}
    for name, deps in allowed.items():
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {
            node.module.rsplit(".", 1)[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("nlptasks.recipes.")
        }
        assert imported <= deps, f"nlptasks.recipes.{name} imports {imported - deps}"
        if name in ("builder", "safe_yaml"):  # nothing of nlptasks but its leaf, errors
            assert all(
                node.module == "nlptasks.errors" or not (node.module or "").startswith("nlptasks")
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
            )
        code = f"import nlptasks.recipes.{name}, sys; assert 'torch' not in sys.modules"
        subprocess.run([sys.executable, "-c", code], check=True)


def test_yaml_limits_are_one_problem_each_and_cheap() -> None:
    """Nesting, aliases and long integers past the limits are refused before anything is
    expanded; what stays within them reads like yaml.safe_load."""
    import time

    import yaml

    from nlptasks.recipes.safe_yaml import MAX_DEPTH, YAMLLimitError, load_yaml

    deepest = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # in the top mapping: MAX_DEPTH
    assert load_yaml(f"a: {deepest}") == yaml.safe_load(f"a: {deepest}")
    with pytest.raises(YAMLLimitError, match="nested more than"):
        load_yaml(f"a: [{deepest}]")
    few = "a: &a [x, x]\nb: [*a, *a]\n"
    assert load_yaml(few) == yaml.safe_load(few)
    laughs = ["a: &a [" + ",".join(["lol"] * 9) + "]"]
    pairs = zip("abcdefgh", "bcdefghi", strict=True)
    laughs += [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in pairs]
    started = time.perf_counter()
    with pytest.raises(YAMLLimitError, match="aliases that expand"):
        load_yaml("\n".join(laughs))  # 9**9 values if expanded
    assert time.perf_counter() - started < 5
    with pytest.raises(YAMLLimitError, match="5001 digits"):
        load_yaml("a: 1" + "0" * 5000)
    assert load_yaml("a: 0x" + "f" * 5000)["a"] > 0  # hexadecimal has no digit limit


def test_errors_quote_values_cut_to_length() -> None:
    from nlptasks.errors import clip, clip_repr, shorten_message

    assert clip("x" * 80) == "x" * 80
    assert clip("x" * 81) == "x" * 52 + "…" + "x" * 27
    long_path = "/tmp/" + "d" * 100 + "/my-recipe.yaml"  # the file name survives the cut
    assert clip(long_path).startswith("/tmp/ddd") and clip(long_path).endswith("/my-recipe.yaml")
    assert len(clip(long_path)) == 80
    assert len(clip_repr(list(range(10**6)))) == 80
    assert clip_repr(10**5000).startswith("an integer of about 500")  # no ValueError
    long = "start " + "v" * 10**6 + " end"
    assert len(shorten_message(long)) < 1010 and shorten_message(long).endswith(" end")


def test_every_seed_has_the_range_and_message_of_train_seed(tmp_path: Path) -> None:
    from nlptasks.evaluation.bootstrap import intervals

    for key in ("train.seed", "train.bootstrap_seed", "data.split_seed", "generation.seed"):
        for bad in (-1, 2**32):
            with pytest.raises(ConfigError, match=rf"'{key}' must be in 0\.\.4294967295"):
                load_recipe("sentiment", "minilm", [f"{key}={bad}"])
        load_recipe("sentiment", "minilm", [f"{key}={2**32 - 1}"])
    with pytest.raises(NlpTasksError, match=r"'seed' must be in 0\.\.4294967295"):
        intervals([{"x": 1.0}], lambda sums: sums, resamples=10, seed=-1)


def test_a_registered_recipe_knows_its_task_without_a_task_key() -> None:
    """Built-in recipes name no task (their registration does): a command of another task
    says whose recipe it is, and validating the file by path works."""
    from click.testing import CliRunner

    from nlptasks.cli import cli

    path = REPO / "nlptasks/builtins/qa/recipes/minilm.yaml"
    assert "task:" not in path.read_text()
    result = CliRunner().invoke(cli, ["recipes", "validate", str(path)])
    assert result.exit_code == 0 and result.output.strip().endswith("ok"), result.output
    with pytest.raises(ConfigError, match="is a recipe for task 'qa', not 'sentiment'"):
        load_recipe("sentiment", str(path))
    with pytest.raises(ConfigError, match="is a recipe for task 'qa', not 'sentiment'"):
        load_recipe("sentiment", "qa/minilm")


def test_run_rows_of_the_bad_input_table_create_no_run_folder(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    """The table checks each message; this checks the 'before the work' part of the 'run'
    rows: their -o folder never exists, so a check moved back after training fails here."""
    from click.testing import CliRunner

    from nlptasks.cli import cli
    from tests.bad_input import recipes as table

    train, dev = sst2_small
    f = {"root": tmp_path, "model": tiny_bert, "train": train, "dev": dev}
    table.add_files(f)
    checked = 0
    for name, argv_of, code, _ in table.CASES:
        try:
            argv = argv_of(f)
        except KeyError:  # a row on the table's shared finished run: no 'run' row needs it
            continue
        if argv[0] != "run" or "-o" not in argv:
            continue
        folder = Path(argv[argv.index("-o") + 1])
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == code, (name, result.output)
        assert not folder.exists(), f"{name}: {folder} was created"
        checked += 1
    assert checked >= 10


def test_a_question_ends_the_message_without_a_full_stop() -> None:
    message = str(ConfigError("r.yaml", ["a is wrong.", "unknown key 'x'. Did you mean 'y'?"]))
    assert message.endswith("Did you mean 'y'?"), message
