"""The wheel ships the built-in plugins and recipes inside nlptasks, and works installed."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.venvs import build_wheel, fresh_venv

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert "plugins" not in top_level and "recipes" not in top_level
    assert "tests" not in top_level
    assert "nlptasks/builtins/sentiment/__init__.py" in names
    assert "nlptasks/builtins/sentiment/recipes/minilm.yaml" in names
    assert "nlptasks/builtins/translation/recipes/smollm2.yaml" in names
    assert "nlptasks/templates/plugin/classification/task.py.tmpl" in names
    assert "nlptasks/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "nlptasks = nlptasks.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_installed_wheel_lists_recipes(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    python = fresh_venv(env_dir, wheel)
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(env_dir / "bin" / "nlptasks"), "list", "recipes"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    for name in ("sentiment/minilm", "sentiment/bert-base", "sentiment/distilbert"):
        assert name in out.stdout
    where = subprocess.run(
        [str(python), "-c", "import nlptasks.builtins as b; print(b.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert where.startswith(target), where  # the installed copy, not the source tree
    assert not Path(target, "plugins").exists() and not Path(target, "recipes").exists()
