"""Where a result came from: package versions, hardware, the source revision and the command
line, so that a run can be traced and reproduced (results.json's ``provenance``)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("nlptasks", "torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers")


def provenance(
    seed: int,
    device: str,
    num_processes: int,
    mixed_precision: str,
    requested_precision: str | None = None,
) -> dict[str, Any]:
    """Versions, hardware and source revision, so a result can be traced and reproduced.

    ``mixed_precision`` is what ran; ``requested_precision`` what the recipe asked (``auto``).
    """
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": {"python": platform.python_version(), **versions},
        "seed": seed,
        "device": device,
        "num_processes": num_processes,
        "mixed_precision": mixed_precision,
        "mixed_precision_requested": requested_precision or mixed_precision,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": _gpu_name(),
        "git_commit": git_commit(Path.cwd()),
    }


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``'s git repository, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def command_line() -> str | None:
    """The nlptasks command this process runs, when it is one (not a notebook's Python)."""
    import shlex
    import sys

    program = Path(sys.argv[0]).name if sys.argv else ""
    if program == "nlptasks" or sys.argv[0].endswith(
        # python -m nlptasks.cli runs the package's __main__.py (as torchrun does)
        ("nlptasks/cli/__init__.py", "nlptasks/cli/__main__.py", "nlptasks/__main__.py")
    ):
        return shlex.join(["nlptasks", *sys.argv[1:]])
    return None
