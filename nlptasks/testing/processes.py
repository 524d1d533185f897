"""``nlptasks`` in fresh processes, one or several under ``torchrun``: how the suites test
multi-process training and evaluation the way a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence


def nlptasks_command(processes: int = 1, module: str = "nlptasks.cli") -> list[str]:
    """The command line that starts ``python -m module``, under ``torchrun`` with
    ``processes`` processes when more than one (``--standalone``: a free port of its own, so
    runs on one host never collide)."""
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        if processes > 1
        else []
    )
    return [sys.executable, *launcher, "-m", module]


def offline_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, offline, one thread per process (two torch processes on a small
    machine would otherwise spin against each other), and the import path of this process
    (a plugin under test may be a module of the test suite, not an installed package)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **(extra or {}),
    }


def run_nlptasks(
    *args: str,
    processes: int = 1,
    env: Mapping[str, str] | None = None,
    module: str = "nlptasks.cli",
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``nlptasks ARGS`` in new processes (``offline_env()`` unless ``env`` is given);
    with ``check``, a non-zero exit fails the test with the end of its stderr."""
    done = subprocess.run(
        [*nlptasks_command(processes, module), *args],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else offline_env(),
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


__all__: Sequence[str] = ("nlptasks_command", "offline_env", "run_nlptasks")
