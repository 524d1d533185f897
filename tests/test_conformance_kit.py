"""The kit for plugin authors, tested: the conformance checks fail on broken tasks (each on
its own defect, the others still passing), ``plugins.isolated`` loads exactly the plugins
under test, and the ``isolated_plugins``, ``cli``, ``tiny_model`` and ``tiny_data`` fixtures
do what they say.

The conformance classes run in a pytest of their own (pytester, in a subprocess: each
trains a tiny model), on test files generated here; tests/plugins/kit_broken.py holds the
broken variants of the sentiment task.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import nlptasks
from nlptasks.errors import PluginError
from nlptasks.plugins import manager as plugins
from nlptasks.plugins.registry import get_registries
from nlptasks.testing.conformance import TaskConformance

# A test module may load a plugin this way (only conftest files may not, below the root).
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
BUILTIN_TASKS = ["generation", "qa", "sentiment", "translation"]

# The kit's checks that the inner runs make; the two-process one (a torchrun of its own,
# the slowest by far) is deselected there.
CHECKS = (
    "test_task_follows_the_protocol",
    "test_loads_beside_the_builtins",
    "test_recipes_validate",
    "test_trains_in_a_few_steps",
    "test_forward_gives_one_loss_per_example",
    "test_predictions_add_up_to_the_metrics",
    "test_eval_reports_the_declared_metrics",
    "test_results_follow_the_schema",
    "test_confidence_intervals_and_predictions",
    "test_predict_returns_json_records",
    "test_explanations_fit_the_records",
    "test_saved_model_reloads_with_auto_classes",
    "test_export_loads_with_auto_classes",
    "test_model_card_parses",
)
TWO_PROCESS = "test_two_process_eval_equals_one_process"
# The checks that use the shared 3-step run (an error there is an error in each of them).
RUN_CHECKS = CHECKS[3:]

# Each variant of tests/plugins/kit_broken.py: the checks that must not pass, with how they
# end ("failed" in the check, "error" in the shared run) and a piece of what they say. Every
# check not named must pass.
DEFECTS: dict[str, dict[str, tuple[str, str]]] = {
    "kit-control": {},
    # Training itself refuses a batch loss that is not one number per example.
    "kit-mean-loss": {
        check: ("error", "Task 'kit-mean-loss': forward's loss must hold one number per example")
        for check in RUN_CHECKS
    },
    # The run itself refuses a declared metric that evaluation does not report, so every
    # check that needs the run errors (with the run's one-line PluginError).
    "kit-extra-metric": {
        check: (
            "error",
            "Task 'kit-extra-metric' reported metrics that do not match its "
            "declaration (missing: precision)",
        )
        for check in RUN_CHECKS
    },
    # A generation metric on a task that cannot generate: loading the task refuses it (it
    # could never be reported), so the checks that load it fail and the run errors.
    "kit-never-generated-metric": {
        **{
            check: ("error", "declares metrics that need generation but has no generate_step")
            for check in RUN_CHECKS
        },
        "test_task_follows_the_protocol": ("failed", "has no generate_step"),
        "test_recipes_validate": ("failed", "has no generate_step"),
    },
    # Declared and in range, but the same statistics give another number each time: a fresh
    # evaluation disagrees, and so do the run's own predictions.jsonl. (Its value falls
    # inside its random bootstrap interval or not, by chance: that check is not judged.)
    "kit-random-metric": {
        "test_eval_reports_the_declared_metrics": (
            "failed",
            "assert result.metrics == pytest.approx(conformance_run.metrics",
        ),
        "test_predictions_add_up_to_the_metrics": (
            "failed",
            "assert dict(found) == pytest.approx(reported",
        ),
        "test_confidence_intervals_and_predictions": ("any", ""),
    },
    "kit-nan-metric": {
        "test_eval_reports_the_declared_metrics": ("failed", "macro_f1 is NaN on the tiny data"),
    },
    "kit-unmasked-predict": {
        "test_predict_returns_json_records": ("failed", "}) alone['score']: "),
    },
    "kit-bad-predict": {
        "test_predict_returns_json_records": (
            "failed",
            "Out of range float values are not JSON compliant",
        ),
    },
    # Its predictions are right; only the explanations' check can tell.
    "kit-bad-explain": {
        "test_explanations_fit_the_records": ("failed", "tokens but"),
    },
    # The card repeats the task's (wrong) tag, so only the reload check can tell.
    "kit-wrong-tag": {
        "test_saved_model_reloads_with_auto_classes": (
            "failed",
            "AutoModelForQuestionAnswering does not load weight bert.pooler",
        ),
    },
    "kit-no-input-fields": {
        "test_task_follows_the_protocol": ("failed", "input_fields must name the fields"),
    },
}

# Class bodies beyond task/plugin/tiny_data.
EXTRA_SETTINGS: dict[str, str] = {}


def class_name(task: str) -> str:
    return "Test" + "".join(part.capitalize() for part in task.split("-"))


def broken_kit_file() -> str:
    lines = [
        "from nlptasks.testing import TaskConformance",
        "from nlptasks.testing.tiny_datasets import sentiment",
        "",
        "",
        "class BrokenSentiment(TaskConformance):",
        '    plugin = "tests.plugins.kit_broken"',
        "",
        "    def tiny_data(self, folder):",
        "        return sentiment(folder)  # not built in: no tiny dataset of their own",
    ]
    for task in DEFECTS:
        lines += ["", "", f"class {class_name(task)}(BrokenSentiment):", f'    task = "{task}"']
        if task in EXTRA_SETTINGS:
            lines.append(f"    {EXTRA_SETTINGS[task]}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def kit_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocesses import this repository's test plugins, offline."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NLPTASKS_LOAD_PLUGINS", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return pytester


def run_kit(pytester: pytest.Pytester, source: str) -> tuple[Any, dict[str, tuple[str, str]]]:
    """Run a generated conformance file (all but the two-process check) in a subprocess;
    return pytest's result and ``{"Class::test": (outcome, message)}`` from its JUnit XML."""
    pytester.makepyfile(test_kit=source)
    report = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-k",
        f"not {TWO_PROCESS}",
        f"--junitxml={report}",
        "-q",
        timeout=600,
    )
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        key = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        ended = [c for c in case if c.tag in ("failure", "error", "skipped")]
        if not ended:
            outcomes[key] = ("passed", "")
        else:
            kind = {"failure": "failed", "error": "error", "skipped": "skipped"}[ended[0].tag]
            outcomes[key] = (kind, f"{ended[0].get('message', '')}\n{ended[0].text or ''}")
    return result, outcomes


def test_the_kit_has_the_checks_these_tests_expect() -> None:
    """A check added to the kit must be added here too, with what makes it fail."""
    kit = sorted(name for name in dir(TaskConformance) if name.startswith("test_"))
    assert kit == sorted([*CHECKS, TWO_PROCESS])


def test_a_conforming_task_passes_every_check(kit_pytester: pytest.Pytester) -> None:
    """The harness is sound: the built-in sentiment task, as tests/test_conformance.py runs
    it, passes every check there."""
    source = (
        "from nlptasks.testing import TaskConformance\n\n\n"
        "class TestSentiment(TaskConformance):\n"
        '    task = "sentiment"\n'
    )
    result, outcomes = run_kit(kit_pytester, source)
    result.assert_outcomes(passed=len(CHECKS), deselected=1)
    assert outcomes == {f"TestSentiment::{check}": ("passed", "") for check in CHECKS}


def test_each_defect_fails_exactly_its_checks(kit_pytester: pytest.Pytester) -> None:
    """One run for all variants (each trains its own tiny model); kit-control, the same
    plugin, recipe and data without a defect, passes everything."""
    result, outcomes = run_kit(kit_pytester, broken_kit_file())

    expected = {
        f"{class_name(task)}::{check}": defects.get(check, ("passed", ""))[0]
        for task, defects in DEFECTS.items()
        for check in CHECKS
    }
    # A check marked "any" may pass or fail (chance decides); it must not error.
    for key, outcome in expected.items():
        if outcome == "any" and outcomes.get(key, ("", ""))[0] in ("passed", "failed"):
            expected[key] = outcomes[key][0]
    assert {key: outcome for key, (outcome, _) in outcomes.items()} == expected, result.stdout.str()
    for task, defects in DEFECTS.items():
        for check, (_, says) in defects.items():
            message = outcomes[f"{class_name(task)}::{check}"][1]
            assert says in message, f"{task} {check}: {message}"
    failed = sum(outcome == "failed" for outcome in expected.values())
    errors = sum(outcome == "error" for outcome in expected.values())
    result.assert_outcomes(
        passed=len(expected) - failed - errors,
        failed=failed,
        errors=errors,
        deselected=len(DEFECTS),
    )


# ----------------------------------------------------------------------- plugins.isolated
def task_names() -> list[str]:
    return get_registries().tasks.names()


def test_isolated_loads_only_the_plugin_under_test() -> None:
    with plugins.isolated(["tests.plugins.toy"]) as pm:
        assert pm is plugins.get_plugin_manager()
        registries = get_registries()
        assert registries.tasks.names() == ["toy-task"]
        assert registries.models.names() == ["toy-model"]
        assert registries.recipes.names() == ["toy-task/toy"]
        assert [(i.name, i.builtin) for i in plugins.plugin_infos()] == [("toy", False)]


def test_isolated_takes_a_module_object_too() -> None:
    from tests.plugins import toy

    with plugins.isolated([toy]):
        assert task_names() == ["toy-task"]


def test_isolated_with_builtins_adds_the_builtin_plugins() -> None:
    with plugins.isolated(["tests.plugins.toy"], builtins=True):
        assert task_names() == sorted([*BUILTIN_TASKS, "toy-task"])
        infos = {i.name: i.builtin for i in plugins.plugin_infos()}
        # The built-in plugins: one per task, and the bias probe's.
        assert infos == {"toy": False, "probes": True, **{name: True for name in BUILTIN_TASKS}}


def test_the_usual_manager_comes_back_afterwards() -> None:
    usual = task_names()
    assert "sentiment" in usual and "toy-task" not in usual
    with plugins.isolated(["tests.plugins.toy"]):
        assert task_names() == ["toy-task"]
    assert task_names() == usual
    with pytest.raises(RuntimeError, match="inside"), plugins.isolated(["tests.plugins.toy"]):
        raise RuntimeError("inside")
    assert task_names() == usual


def test_plugins_registered_by_hand_come_back_too() -> None:
    from tests.plugins import toy

    plugins.register_plugin(toy, "toy-by-hand")
    with plugins.isolated(["nlptasks.builtins.qa"]):
        assert task_names() == ["qa"]
    assert "toy-task" in task_names()  # the manager of before, not a fresh one


def test_a_plugin_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "needs_missing.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(
            PluginError,
            match=r"^Plugin module 'needs_missing' failed to import: "
            r"ModuleNotFoundError: No module named 'no_such_dependency_xyz'$",
        ):
            plugins.isolated(["needs_missing"]).__enter__()
        with pytest.raises(
            PluginError,
            match=r"'raises_on_import' failed to import: "
            r"RuntimeError: boom",
        ):
            plugins.isolated(["raises_on_import"]).__enter__()
    finally:
        sys.path.remove(str(tmp_path))
    assert task_names() == BUILTIN_TASKS


def test_nested_isolation_restores_the_outer_one() -> None:
    with plugins.isolated(["tests.plugins.toy"]):
        with plugins.isolated(["nlptasks.builtins.qa"]):
            assert task_names() == ["qa"]
        assert task_names() == ["toy-task"]


def test_an_unknown_plugin_is_a_one_line_error_and_changes_nothing() -> None:
    usual = task_names()
    with pytest.raises(PluginError) as caught, plugins.isolated(["no_such_plugin_xyz"]):
        pytest.fail("isolated() of an unknown plugin must not yield")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Plugin 'no_such_plugin_xyz' is neither an installed nlptasks")
    assert task_names() == usual


def test_a_builtin_plugin_can_be_the_plugin_under_test() -> None:
    with plugins.isolated(["nlptasks.builtins.qa"]):
        assert task_names() == ["qa"]
        [info] = plugins.plugin_infos()
        assert (info.name, info.distribution, info.builtin) == ("qa", "nlptasks", True)
        assert info.version == nlptasks.__version__
    # With the built-ins as well it is registered once, not twice (pluggy would refuse).
    with plugins.isolated(["nlptasks.builtins.qa"], builtins=True):
        assert task_names() == BUILTIN_TASKS
        assert [i.name for i in plugins.plugin_infos()].count("qa") == 1


def test_a_name_clash_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "clashpkg").mkdir()
    (tmp_path / "clashpkg" / "__init__.py").write_text("")
    (tmp_path / "clashpkg" / "qa.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        with (
            pytest.raises(
                PluginError,
                match=r"^Two plugins would both be named 'qa' \(a plugin "
                r"under test and a built-in\)\. Give isolated\(\) the plugin's",
            ),
            plugins.isolated(["clashpkg.qa"], builtins=True),
        ):
            pass
        with (
            pytest.raises(PluginError, match="another plugin under test"),
            plugins.isolated(["clashpkg.qa", "nlptasks.builtins.qa"]),
        ):
            pass
    finally:
        sys.path.remove(str(tmp_path))
    assert task_names() == BUILTIN_TASKS


def test_an_entry_point_name_loads_the_installed_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed distribution (its metadata on sys.path) whose entry point is the toy plugin.
    info = tmp_path / "nlptasks_toyish-2.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nlptasks-toyish\nVersion: 2.5\n")
    (info / "entry_points.txt").write_text("[nlptasks]\ntoyish = tests.plugins.toy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # Entry points are off in this suite (NLPTASKS_LOAD_PLUGINS=""); naming one loads it.
    assert "toy-task" not in task_names()
    with plugins.isolated(["toyish"]):
        assert task_names() == ["toy-task"]
        [info_] = plugins.plugin_infos()
        assert (info_.name, info_.distribution, info_.version) == (
            "toyish",
            "nlptasks-toyish",
            "2.5",
        )


# ----------------------------------------------------------------------- fixtures
def test_isolated_plugins_fixture(isolated_plugins: Any) -> None:
    pm = isolated_plugins("tests.plugins.toy")
    assert pm is plugins.get_plugin_manager() and pm.has_plugin("toy")
    assert task_names() == ["toy-task"]
    # A second call replaces the first.
    isolated_plugins("nlptasks.builtins.qa", builtins=True)
    assert task_names() == BUILTIN_TASKS


def test_isolated_plugins_fixture_restores_the_manager_when_the_test_ends(
    pytester: pytest.Pytester,
) -> None:
    # In-process, without this suite's conftest (which resets the plugins after each test):
    # the second test sees what the first one's fixture left behind.
    pytester.makeconftest('pytest_plugins = ["nlptasks.testing"]\n')
    pytester.makepyfile(
        test_restore="""
        from nlptasks.plugins.registry import get_registries

        def test_isolate(isolated_plugins):
            isolated_plugins("tests.plugins.toy")
            assert get_registries().tasks.names() == ["toy-task"]

        def test_afterwards():
            assert "toy-task" not in get_registries().tasks.names()
            assert "sentiment" in get_registries().tasks.names()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_cli_fixture_runs_the_command_in_process(cli: Any, isolated_plugins: Any) -> None:
    listed = cli("list", "tasks")
    assert "sentiment" in listed.stdout
    refused = cli("run", "no-such-task", exit_code=1)
    assert refused.output == "Error: Unknown task 'no-such-task'. See 'nlptasks list tasks'.\n"
    # In-process: it sees the plugin manager of the test.
    isolated_plugins("tests.plugins.toy")
    listed = cli("list", "tasks")
    assert "toy-task" in listed.stdout and "sentiment" not in listed.stdout


def test_cli_fixture_has_the_commands_of_the_plugins_under_test(
    cli: Any, isolated_plugins: Any
) -> None:
    isolated_plugins("tests.plugins.toy")
    assert cli("hello", "world").stdout == "hello world\n"  # toy's register_commands
    isolated_plugins("nlptasks.builtins.sentiment")
    assert "No such command 'hello'" in cli("hello", "world", exit_code=2).output


def test_cli_fixture_shows_a_crash_as_a_crash(
    cli: Any, isolated_plugins: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (not an NlpTasksError) in a command is raised with its traceback, even when the
    expected exit code is 1, the code click gives any exception."""
    (tmp_path / "crashing_command.py").write_text(
        "import nlptasks\n\n\n@nlptasks.hookimpl\ndef register_commands(cli):\n"
        "    @cli.command()\n    def crash():\n        raise TypeError('a bug')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    isolated_plugins("crashing_command")
    with pytest.raises(TypeError, match="a bug"):
        cli("crash", exit_code=1)


def test_cli_fixture_fails_on_another_exit_code(cli: Any) -> None:
    with pytest.raises(AssertionError, match=r"nlptasks run no-such-task exited 1, not 0:"):
        cli("run", "no-such-task")


TEXTS = ["zebras juggle quietly at dawn", "a violet kettle whistles", "quietly the zebras sleep"]


@pytest.mark.parametrize(
    ("shape", "auto_class", "model_type"),
    [
        ("encoder", "AutoModelForSequenceClassification", "bert"),
        ("causal", "AutoModelForCausalLM", "gpt2"),
        ("seq2seq", "AutoModelForSeq2SeqLM", "bart"),
    ],
)
def test_tiny_model_fixture(tiny_model: Any, shape: str, auto_class: str, model_type: str) -> None:
    import torch
    import transformers

    folder = tiny_model(shape, TEXTS)
    model = getattr(transformers, auto_class).from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == model_type
    assert model.config.vocab_size == len(tokenizer)
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        # Its vocabulary is trained on these texts: every word is one token.
        assert len(tokenizer.tokenize(text)) == len(text.split()), tokenizer.tokenize(text)
        assert tokenizer.decode(ids, skip_special_tokens=True).strip() == text
    # No dropout: two forward passes in training mode agree.
    model.train()
    batch = tokenizer(TEXTS[:1], return_tensors="pt")
    if shape == "seq2seq":
        batch["decoder_input_ids"] = batch["input_ids"]
    with torch.no_grad():
        first, second = model(**batch).logits, model(**batch).logits
    assert torch.equal(first, second)
    # A new seed makes new weights; the same seed the same ones.
    again = getattr(transformers, auto_class).from_pretrained(tiny_model(shape, TEXTS, seed=0))
    other = getattr(transformers, auto_class).from_pretrained(tiny_model(shape, TEXTS, seed=1))
    name, weights = next(iter(model.base_model.state_dict().items()))
    assert torch.equal(weights, again.base_model.state_dict()[name])
    assert not torch.equal(weights, other.base_model.state_dict()[name])


def test_tiny_model_fixture_refuses_an_unknown_shape(tiny_model: Any) -> None:
    with pytest.raises(ValueError, match="model_shape must be one of encoder, causal, seq2seq"):
        tiny_model("encoder-decoder", TEXTS)


@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_tiny_data_fixture(tiny_data: Any, task: str) -> None:
    from nlptasks.plugins.registry import load_task
    from nlptasks.recipes import load_recipe

    data = tiny_data(task)
    paths = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in data.overrides if "_path=" in o}
    assert set(paths) == {"data.train_path", "data.eval_path"}
    assert all(Path(path).is_file() and Path(path).stat().st_size for path in paths.values())
    assert data.texts and data.records
    fields = load_task(task).info.input_fields
    assert all(set(record) >= set(fields) for record in data.records), data.records
    # The overrides make a valid recipe of the task's default one.
    recipe = load_recipe(task, None, data.overrides)
    assert recipe.data.train_path == paths["data.train_path"]
    # Each call writes a fresh folder.
    assert tiny_data(task).overrides != data.overrides


def test_tiny_data_fixture_knows_only_builtin_tasks(tiny_data: Any) -> None:
    with pytest.raises(KeyError, match="No tiny dataset for task 'toy-task'"):
        tiny_data("toy-task")
