"""``nlptasks plugins install`` / ``uninstall``: pip, in the environment nlptasks runs in.

As ``llm install`` does: a plugin lands next to nlptasks whichever Python or virtualenv that
is, so that the entry point is found. pip reports its own progress and errors; its exit code
is the command's. Neither command loads plugins, so both work when an installed plugin is
broken (even under ``NLPTASKS_STRICT_PLUGINS``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from nlptasks.errors import NlpTasksError

OWN_DISTRIBUTION = "nlptasks"


def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``NLPTasks_NER`` -> ``nlptasks-ner``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def install_command(
    packages: Sequence[str], upgrade: bool = False, editable: bool = False
) -> list[str]:
    """The pip command that installs ``packages`` (names, requirement specifiers or paths)."""
    for package in packages:
        # URLs and direct references ("git+https://...", "pkg @ https://...") are pip's.
        is_url = "://" in package or "@" in package
        looks_like_path = package.startswith((".", "/", "~")) or "/" in package or "\\" in package
        if looks_like_path and not is_url and not Path(package).expanduser().exists():
            raise NlpTasksError(
                f"'{package}' looks like a path but does not exist. Give the folder of a "
                f"plugin package (with its pyproject.toml) or a package name."
            )
    if editable and not all(Path(p).expanduser().is_dir() for p in packages):
        raise NlpTasksError("--editable takes plugin folders only. Drop --editable for names.")
    command = [sys.executable, "-m", "pip", "install"]
    if upgrade:
        command.append("--upgrade")
    for package in packages:
        command += ["-e", package] if editable else [package]
    return command


def uninstall_command(packages: Sequence[str], yes: bool = False) -> list[str]:
    """The pip command that removes ``packages``; nlptasks itself is refused."""
    for package in packages:
        # pip uninstall takes requirement specifiers too: "nlptasks==0.1", "nlptasks[all]".
        name = re.split(r"[\s\[<>=!~;@(]", package.strip(), maxsplit=1)[0]
        if canonical_name(name) == OWN_DISTRIBUTION:
            raise NlpTasksError(
                "Refusing to uninstall nlptasks itself: 'plugins uninstall' removes plugins. "
                "Use pip uninstall nlptasks to remove nlptasks."
            )
    return [sys.executable, "-m", "pip", "uninstall", *(["--yes"] if yes else []), *packages]


def run_pip(command: list[str]) -> int:
    """Run pip (its output goes straight to the terminal); return its exit code."""
    return subprocess.call(command)
