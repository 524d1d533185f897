"""Start-up: wall time of the real ``nlptasks`` console command, each call a fresh process.

Targets (issue 20): ``nlptasks --help`` under 0.5 s, ``nlptasks list`` under 1.5 s. Each
contender runs the installed console script ``n`` times after ``warmup`` untimed calls (the
first call after a while pays for a cold page cache, which says nothing about the code) and
reports the median per call as ``seconds``: ``examples`` is 1, so the harness's
"examples/s" column reads as calls per second.

    python benchmarks/harness.py startup --repeats 3 --param n=10
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DESCRIPTION = "start-up of the nlptasks console command: --help, list, --version (fresh processes)"
PARAMS: dict[str, Any] = {"n": 10, "warmup": 1, "importtime": True, "top": 10}
BASELINE = None

Result = dict[str, Any]


def console_script() -> str:
    """The ``nlptasks`` script next to this interpreter (the harness's venv), else on PATH."""
    beside = Path(sys.executable).parent / "nlptasks"
    if beside.exists():
        return str(beside)
    found = shutil.which("nlptasks")
    if found is None:
        raise RuntimeError("no nlptasks console script: pip install -e . into this venv")
    return found


def _call(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def import_offenders(args: list[str], top: int) -> Result:
    """``python -X importtime -m nlptasks ARGS``: the modules with the most self time, and
    the total microseconds spent importing (top-level modules' cumulative times summed)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nlptasks", *args],
        capture_output=True,
        text=True,
    )
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|")
        rows.append((int(self_us), int(cumulative_us), name))
    # Top-level imports are the unindented names; their cumulative times sum to the total.
    total = sum(c for _, c, name in rows if not name.startswith("  "))
    ranked = sorted(rows, reverse=True)[:top]
    return {
        "import_total_ms": total / 1000,
        "import_top_self_ms": {name.strip(): s / 1000 for s, _, name in ranked},
        "imports_torch": any(name.strip() == "torch" for _, _, name in rows),
    }


def _timed(args: list[str]) -> Any:
    def contender(params: dict[str, Any]) -> Result:
        command = [console_script(), *args]
        for _ in range(int(params["warmup"])):
            _call(command)
        times = [_call(command) for _ in range(int(params["n"]))]
        result: Result = {
            "seconds": statistics.median(times),
            "examples": 1,
            "tokens": 0,
            "times": times,
            "min_seconds": min(times),
            "command": " ".join(["nlptasks", *args]),
            "cpu_count": os.cpu_count(),
        }
        if params.get("importtime"):
            result.update(import_offenders(args, int(params["top"])))
        return result

    return contender


CONTENDERS = {
    "help": _timed(["--help"]),
    "list": _timed(["list"]),
    "version": _timed(["--version"]),
}
