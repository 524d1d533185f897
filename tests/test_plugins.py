"""Plugin loading and the registries built from the hooks."""

from __future__ import annotations

import inspect
import json
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nlptasks import hookspecs, plugins
from nlptasks.errors import DuplicateNameError, PluginError, UnknownNameError
from nlptasks.registry import get_registries
from tests.plugins import toy

HOOKS = [
    name
    for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, "nlptasks_spec")
]


@pytest.fixture
def toy_plugin() -> Iterator[None]:
    plugins.register_plugin(toy, "toy", distribution="nlptasks-toy")
    toy.EVENTS.clear()
    try:
        yield
    finally:
        plugins.unregister_plugin("toy")


def test_builtin_plugins_register_through_the_same_hooks() -> None:
    regs = get_registries()
    assert regs.tasks.get("sentiment").plugin == "sentiment"
    assert regs.recipes.get("sentiment/minilm").plugin == "sentiment"
    infos = {i.name: i for i in plugins.plugin_infos()}
    assert infos["sentiment"].builtin
    assert "register_tasks" in infos["sentiment"].hooks


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'sentiment'"):
        get_registries().tasks.get("sentimen")


def test_hook_register_tasks(toy_plugin: None) -> None:
    entry = get_registries().tasks.get("toy-task")
    assert entry.plugin == "toy"
    assert entry.load().__name__ == "SentimentTask"


def test_hook_register_models(toy_plugin: None) -> None:
    from nlptasks.models import resolve_model

    assert resolve_model("toy-model") == "/nonexistent/toy-model"
    assert resolve_model("some/hub-id") == "some/hub-id"


def test_hook_register_datasets(toy_plugin: None) -> None:
    from nlptasks.data import load_splits
    from nlptasks.recipes import DataConfig

    splits = load_splits(DataConfig(dataset="toy-reviews", eval_fraction=0.5, split_seed=1))
    assert len(splits["train"]) == 30 and len(splits["eval"]) == 30
    assert splits["train"].column_names == ["review", "label"]


def test_hook_register_metrics(toy_plugin: None) -> None:
    entry = get_registries().metrics.get("toy_metric")
    assert entry.load() is toy.load_toy_reviews  # lazy "module:attr" resolved on demand
    assert get_registries().metrics.get("accuracy").plugin == "sentiment"


def test_hook_register_recipes(toy_plugin: None) -> None:
    from nlptasks.recipes import load_recipe

    recipe = load_recipe("toy-task", "toy")
    assert recipe.model == "toy-model" and recipe.data.dataset == "toy-reviews"


def test_hook_register_commands(toy_plugin: None) -> None:
    group = click.Group()
    plugins.get_plugin_manager().hook.register_commands(cli=group)
    result = CliRunner().invoke(group, ["hello", "world"])
    assert result.output == "hello world\n"


def test_hook_on_event(toy_plugin: None, tmp_path: Path) -> None:
    from nlptasks.events import EventLog

    log = EventLog(tmp_path / "events.jsonl")
    log.emit("step", step=1, loss=0.5)
    log.close()
    assert toy.EVENTS[-1]["type"] == "step" and toy.EVENTS[-1]["loss"] == 0.5
    assert json.loads((tmp_path / "events.jsonl").read_text())["step"] == 1


def test_toy_dataset_trains_end_to_end(toy_plugin: None, tiny_bert: Path, tmp_path: Path) -> None:
    from nlptasks.runner import run

    result = run(
        "sentiment",
        None,
        [
            f"model={tiny_bert}",
            "data.dataset=toy-reviews",
            "~data.label_names",
            "train.max_steps=2",
            "train.batch_size=8",
            "data.eval_fraction=0.2",
        ],
        output_dir=str(tmp_path / "run"),
    )
    assert 0 <= result.metrics["accuracy"] <= 1
    config = json.loads((tmp_path / "run/model/config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}  # label names from the data
    assert [e["type"] for e in toy.EVENTS][:2] == ["run_start", "train_start"]


def test_duplicate_name_names_both_plugins() -> None:
    from tests.plugins import duplicate

    plugins.register_plugin(duplicate, "dup-plugin")
    try:
        with pytest.raises(DuplicateNameError, match="'sentiment'.*'dup-plugin'"):
            get_registries()
    finally:
        plugins.unregister_plugin("dup-plugin")


def test_misspelled_hook_fails_loudly() -> None:
    from tests.plugins import misspelled

    with pytest.raises(Exception, match="register_taks"):
        plugins.register_plugin(misspelled, "misspelled")
    plugins.unregister_plugin("misspelled")


def _fake_distribution(root: Path, name: str, module_source: str) -> None:
    """An installed distribution with an `nlptasks` entry point, as pip would leave it."""
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[nlptasks]\n{name} = {name}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NLPTASKS_LOAD_PLUGINS", raising=False)
    return tmp_path


def test_entry_point_plugin_loads(site: Path) -> None:
    _fake_distribution(
        site,
        "nlptasks_good",
        (
            "import nlptasks\n@nlptasks.hookimpl\ndef register_models(register):\n"
            "    register('good-model', lambda: '/models/good')\n"
        ),
    )
    plugins.reset()
    assert get_registries().models.get("good-model").plugin == "nlptasks_good"
    info = next(i for i in plugins.plugin_infos() if i.name == "nlptasks_good")
    assert (info.distribution, info.version) == ("nlptasks_good", "1.2.3")


def test_broken_plugin_is_one_warning_and_skipped(site: Path) -> None:
    _fake_distribution(site, "nlptasks_broken", "raise ImportError('no module named foo')\n")
    plugins.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regs = get_registries()
    assert "sentiment" in regs.tasks  # the rest still works
    messages = [str(w.message) for w in caught if issubclass(w.category, plugins.PluginLoadWarning)]
    assert len(messages) == 1
    assert re.search(r"Plugin 'nlptasks_broken' \(nlptasks_broken 1\.2\.3\) failed", messages[0])
    assert "\n" not in messages[0]
    sys.modules.pop("nlptasks_broken", None)


def test_broken_plugin_cli_still_works(site: Path) -> None:
    import subprocess

    _fake_distribution(site, "nlptasks_broken2", "raise RuntimeError('boom')\n")
    out = subprocess.run(
        [sys.executable, "-m", "nlptasks", "list", "tasks", "--json"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(site)},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["name"] == "sentiment"
    warning_lines = [line for line in out.stderr.splitlines() if "nlptasks_broken2" in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("Warning: Plugin")


def test_strict_mode_raises(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(site, "nlptasks_broken3", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("NLPTASKS_STRICT_PLUGINS", "1")
    plugins.reset()
    with pytest.raises(PluginError, match="nlptasks_broken3"):
        get_registries()


def test_allow_list(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(site, "nlptasks_skipme", "raise RuntimeError('must not load')\n")
    monkeypatch.setenv("NLPTASKS_LOAD_PLUGINS", "")
    plugins.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "sentiment" in get_registries().tasks


def test_every_hook_is_documented_and_tested() -> None:
    assert set(HOOKS) == {
        "register_tasks",
        "register_models",
        "register_datasets",
        "register_metrics",
        "register_recipes",
        "register_commands",
        "on_event",
    }
    tests = Path(__file__).read_text()
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Args:" in doc, name
        assert f"def test_hook_{name}(" in tests, name


def test_failing_hooks_are_one_warning_each(tmp_path: Path) -> None:
    from nlptasks.events import EventLog
    from tests.plugins import faulty

    plugins.register_plugin(faulty, "faulty", distribution="nlptasks-faulty")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            regs = get_registries()
            plugins.call_each("register_commands", cli=click.Group())
            log = EventLog(tmp_path / "events.jsonl")
            for step in range(3):
                log.emit("step", step=step)
            log.close()
        assert "sentiment" in regs.tasks
        messages = [str(w.message) for w in caught]
        assert len(messages) == 3, messages  # on_event reported once, then left out
        assert any("hook register_tasks" in m and "nlptasks-faulty" in m for m in messages)
        assert any("hook register_commands" in m for m in messages)
        assert any("hook on_event" in m and "tracker server is down" in m for m in messages)
        assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 3
    finally:
        plugins.unregister_plugin("faulty")


def test_entry_point_cannot_displace_a_loaded_plugin(site: Path) -> None:
    _fake_distribution(
        site,
        "fake_sentiment",
        "import nlptasks\n@nlptasks.hookimpl\ndef register_models(register):\n"
        "    register('fake-model', lambda: '/x')\n",
    )
    info = site / "fake_sentiment-1.2.3.dist-info" / "entry_points.txt"
    info.write_text("[nlptasks]\nsentiment = fake_sentiment\n")  # clashes with the built-in
    plugins.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regs = get_registries()
    assert "sentiment" in regs.tasks and "fake-model" not in regs.models
    assert any("name is already used by nlptasks" in str(w.message) for w in caught)


def test_register_plugin_with_a_bad_hook_leaves_no_trace() -> None:
    from tests.plugins import misspelled

    with pytest.raises(Exception, match="register_taks"):
        plugins.register_plugin(misspelled, "misspelled")
    assert plugins.get_plugin_manager().get_plugin("misspelled") is None


def test_plugin_recipe_commands_use_the_registered_task(toy_plugin: None, tmp_path: Path) -> None:
    from nlptasks.cli import cli

    runner = CliRunner()
    shown = runner.invoke(cli, ["recipes", "show", "toy-task/toy", "--resolved"])
    assert shown.exit_code == 0, shown.output
    assert "task: toy-task" in shown.output
    assert runner.invoke(cli, ["recipes", "validate", "toy"]).exit_code == 0
    copied = runner.invoke(cli, ["recipes", "copy", "toy", str(tmp_path / "t.yaml")])
    assert copied.exit_code == 0 and "nlptasks run toy-task" in copied.output
