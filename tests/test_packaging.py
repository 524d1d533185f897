"""The wheel ships the built-in plugins and recipes inside nlptasks, and works installed."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: the build backend (setuptools) is already here, nothing downloads.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("nlptasks-*.whl")
    return path


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert "plugins" not in top_level and "recipes" not in top_level
    assert "tests" not in top_level
    assert "nlptasks/builtins/sentiment/__init__.py" in names
    assert "nlptasks/builtin_recipes/sentiment/minilm.yaml" in names
    assert "nlptasks/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "nlptasks = nlptasks.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_installed_wheel_lists_recipes(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies come from this environment (no download); nlptasks itself only from the
    # wheel: a .pth line adds a folder without running the editable-install hooks inside it.
    deps = [p for p in site.getsitepackages() if "site-packages" in p]
    Path(target, "deps.pth").write_text("\n".join(deps) + "\n")
    # pip --python installs into the new environment, console script included.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
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
