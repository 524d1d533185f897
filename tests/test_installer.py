"""``nlptasks plugins install`` / ``uninstall`` with real distributions, in a throwaway
virtualenv that sees this environment's packages (nlptasks, torch) through a .pth file."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlptasks.cli import cli
from nlptasks.plugins.installer import canonical_name, install_command, uninstall_command

pytestmark = pytest.mark.slow


def write_plugin(folder: Path, name: str, module_source: str) -> Path:
    """A plugin package folder (pyproject with the nlptasks entry point, one module)."""
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "0.3.0"
            dependencies = ["nlptasks"]

            [project.entry-points.nlptasks]
            {name.replace("-", "_")} = "{name.replace("-", "_")}"

            [tool.setuptools]
            py-modules = ["{name.replace("-", "_")}"]
            """
        )
    )
    (folder / f"{name.replace('-', '_')}.py").write_text(module_source)
    return folder


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    # No pip of its own: this environment's pip (and setuptools) serve it through the .pth.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next((root / "lib").glob("python*/site-packages"))
    # This environment's packages, after the venv's own (pip installs into the venv);
    # addsitedir also runs their .pth files (nlptasks may be an editable install).
    parent = sysconfig.get_paths()["purelib"]
    (site / "parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return root


def nlptasks_in(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        # Offline and fast: build with this environment's setuptools, fetch nothing.
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.pop("NLPTASKS_LOAD_PLUGINS", None)
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "nlptasks.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


GOOD = (
    "import nlptasks\n\n@nlptasks.hookimpl\ndef register_models(register):\n"
    "    register('demo-model', lambda: '/models/demo')\n"
)


def test_install_list_and_uninstall_a_real_plugin(venv: Path, tmp_path: Path) -> None:
    folder = write_plugin(tmp_path / "demo", "nlptasks-demo", GOOD)
    installed = nlptasks_in(venv, "plugins", "install", str(folder))
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = nlptasks_in(venv, "plugins")
    assert listed.returncode == 0, listed.stderr
    assert "nlptasks_demo (nlptasks-demo 0.3.0): register_models" in listed.stdout
    removed = nlptasks_in(venv, "plugins", "uninstall", "nlptasks-demo", "-y")
    assert removed.returncode == 0, removed.stderr
    assert "nlptasks_demo" not in nlptasks_in(venv, "plugins").stdout


def test_a_broken_plugin_can_be_uninstalled_even_in_strict_mode(
    venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_plugin(tmp_path / "broken", "nlptasks-broken", "raise RuntimeError('boom')\n")
    assert nlptasks_in(venv, "plugins", "install", str(folder)).returncode == 0
    monkeypatch.setenv("NLPTASKS_STRICT_PLUGINS", "1")
    strict = nlptasks_in(venv, "plugins")
    assert strict.returncode == 1 and "nlptasks_broken" in strict.stderr  # strict: an error
    # Installing another plugin and removing the broken one load no plugin: they work.
    other = write_plugin(tmp_path / "other", "nlptasks-other", GOOD.replace("demo", "other"))
    assert nlptasks_in(venv, "plugins", "install", str(other)).returncode == 0
    removed = nlptasks_in(venv, "plugins", "uninstall", "nlptasks-broken", "-y")
    assert removed.returncode == 0, removed.stderr
    monkeypatch.delenv("NLPTASKS_STRICT_PLUGINS")
    after = nlptasks_in(venv, "plugins")
    assert after.returncode == 0 and "nlptasks_broken" not in after.stdout + after.stderr
    assert "nlptasks_other" in after.stdout
    nlptasks_in(venv, "plugins", "uninstall", "nlptasks-other", "-y")


@pytest.mark.parametrize(
    "name", ["nlptasks", "NLPTasks", "NLPTASKS", "nlptasks==0.1.0", "nlptasks[all]", "nlptasks>=0"]
)
def test_nlptasks_itself_is_never_uninstalled(name: str) -> None:
    result = CliRunner().invoke(cli, ["plugins", "uninstall", name, "-y"])
    assert result.exit_code == 1
    assert "Refusing to uninstall nlptasks itself" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_missing_plugin_folder_is_one_line() -> None:
    result = CliRunner().invoke(cli, ["plugins", "install", "./no-such-plugin"])
    assert result.exit_code == 1
    assert "'./no-such-plugin' looks like a path but does not exist" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_pip_commands() -> None:
    assert install_command(["nlptasks-ner"]) == [
        sys.executable,
        "-m",
        "pip",
        "install",
        "nlptasks-ner",
    ]
    assert install_command(["x"], upgrade=True)[4:] == ["--upgrade", "x"]
    assert uninstall_command(["a", "b"], yes=True)[3:] == ["uninstall", "--yes", "a", "b"]
    assert canonical_name("NLPTasks_NER.x") == "nlptasks-ner-x"
    # URLs and direct references go to pip as they are, not refused as missing paths.
    urls = ["git+https://example.org/a/b.git", "pkg @ https://example.org/x.whl"]
    assert install_command(urls)[4:] == urls


BROKEN = {
    "nlptasks-importfail": "raise RuntimeError('boom')\n",
    "nlptasks-misspelled": (
        "import nlptasks\n@nlptasks.hookimpl\ndef register_taks(register):\n"
        "    register('never', 'x:y')\n"
    ),
    "nlptasks-lazytypo": (
        "import nlptasks\n@nlptasks.hookimpl\ndef register_tasks(register):\n"
        "    register('typo-task', 'nlptasks.builtins.sentiment.task:SentimentTsk')\n"
    ),
    "nlptasks-dupe": (
        "import nlptasks\n@nlptasks.hookimpl\ndef register_tasks(register):\n"
        "    register('sentiment', 'nlptasks.builtins.sentiment.task:SentimentTask')\n"
    ),
    "nlptasks-hookraises": (
        "import nlptasks\n@nlptasks.hookimpl\ndef register_models(register):\n"
        "    raise ValueError('hook broke')\n"
    ),
}


@pytest.fixture
def installed(venv: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.param
    result = nlptasks_in(
        venv, "plugins", "install", str(write_plugin(tmp_path / name, name, BROKEN[name]))
    )
    assert result.returncode == 0, result.stderr[-2000:]
    yield name
    nlptasks_in(venv, "plugins", "uninstall", "-y", name)


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("installed", "warning"),
    [
        (
            "nlptasks-importfail",
            "Warning: Plugin 'nlptasks_importfail' (nlptasks-importfail 0.3.0) failed to load "
            "and was skipped: RuntimeError: boom",
        ),
        (
            "nlptasks-misspelled",
            "Warning: Plugin 'nlptasks_misspelled' (nlptasks-misspelled 0.3.0) failed to load "
            "and was skipped: PluginValidationError: unknown hook 'register_taks'",
        ),
        (
            "nlptasks-hookraises",
            "Warning: Plugin 'nlptasks_hookraises' (nlptasks-hookraises 0.3.0) failed in hook "
            "register_models; other plugins are unaffected: ValueError: hook broke",
        ),
    ],
    indirect=["installed"],
)
def test_a_broken_installed_plugin_is_one_warning(
    venv: Path, installed: str, warning: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = nlptasks_in(venv, "list", "tasks")
    assert listed.returncode == 0
    assert "sentiment" in listed.stdout and "translation" in listed.stdout
    lines = warning_lines(listed)
    assert len(lines) == 1 and lines[0].startswith(warning), lines
    monkeypatch.setenv("NLPTASKS_STRICT_PLUGINS", "1")
    strict = nlptasks_in(venv, "list", "tasks")
    assert strict.returncode == 1 and installed.replace("-", "_") in strict.stderr


@pytest.mark.parametrize("installed", ["nlptasks-lazytypo"], indirect=True)
def test_an_installed_plugins_target_typo_fails_only_its_task(venv: Path, installed: str) -> None:
    listed = nlptasks_in(venv, "list", "tasks")
    assert listed.returncode == 0 and "typo-task" in listed.stdout and not listed.stderr.strip()
    run = nlptasks_in(venv, "run", "typo-task")
    assert run.returncode == 1
    assert warning_lines(run) == [
        "Error: Plugin 'nlptasks_lazytypo' registered task 'typo-task' as "
        "'nlptasks.builtins.sentiment.task:SentimentTsk', which cannot be imported: module "
        "'nlptasks.builtins.sentiment.task' has no attribute 'SentimentTsk'. Fix the target in "
        "the plugin."
    ]
    assert nlptasks_in(venv, "recipes", "validate", "sentiment/minilm").returncode == 0


@pytest.mark.parametrize("installed", ["nlptasks-dupe"], indirect=True)
def test_an_installed_duplicate_of_a_builtin_fails_only_that_name(
    venv: Path, installed: str
) -> None:
    run = nlptasks_in(venv, "run", "sentiment")
    assert run.returncode == 1
    assert warning_lines(run) == [
        "Error: Task 'sentiment' is registered by both plugin 'nlptasks_dupe' and plugin "
        "'sentiment'. Uninstall one of them or limit plugins with NLPTASKS_LOAD_PLUGINS."
    ]
    # Every other command and task works.
    assert nlptasks_in(venv, "list", "tasks").returncode == 0
    assert nlptasks_in(venv, "recipes", "validate", "qa/minilm").returncode == 0
    assert nlptasks_in(venv, "plugins").returncode == 0
