"""Fresh virtualenvs holding the nlptasks wheel (not the editable source tree), for tests of
what a user installs. Dependencies come from this environment, so nothing downloads."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    """The nlptasks wheel, built without build isolation (setuptools is already here)."""
    pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO))
    (path,) = out.glob("nlptasks-*.whl")
    return path


def pip(*args: str, python: Path | None = None) -> None:
    target = ["--python", str(python)] if python else []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *target, *args],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def fresh_venv(root: Path, wheel: Path) -> Path:
    """A virtualenv at ``root`` with the wheel installed; returns its python.

    A .pth line adds this environment's site-packages as plain folders: their packages (torch,
    transformers) import, but the editable-install hooks inside them do not run, so
    ``import nlptasks`` is the wheel's copy."""
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if "site-packages" in p]
    Path(target, "deps.pth").write_text("\n".join(deps) + "\n")
    pip("install", "--no-deps", "--no-index", "-q", str(wheel), python=python)
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for commands in a fresh virtualenv: offline, no PYTHONPATH, every
    installed plugin loaded."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NLPTASKS_LOAD_PLUGINS")}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}
