"""``nlptasks serve`` as a real subprocess on a free loopback port, for the serving tests.

    with start_server(model_dir, "--max-batch-size", "8") as server:
        httpx.post(f"{server.url}/v1/predict", json={"records": ["a film"]})

The server is started with ``--port 0`` (the operating system picks a free port, so parallel
test runs never collide) and ``--host 127.0.0.1``; its URL comes from the one line
``nlptasks serve`` prints to stderr ("Serving ... on http://127.0.0.1:PORT ..."), and the
helper then polls ``GET /health`` until it answers 200, within a deadline. Nothing sleeps
longer than a poll interval. Leaving the block stops the server (SIGTERM, then SIGKILL if it
does not exit within the grace period).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from nlptasks.testing.processes import nlptasks_command, offline_env

SERVING_LINE = re.compile(r"Serving .* on (http://[0-9.]+:\d+)")
"""The line ``nlptasks serve`` prints once its socket is bound (``--port 0``: the real port)."""


@dataclass
class Server:
    """A running ``nlptasks serve`` process."""

    url: str
    """``http://127.0.0.1:PORT``, no trailing slash."""
    process: subprocess.Popen[str]
    stderr_lines: list[str] = field(default_factory=list)
    """Everything the server wrote to stderr so far (read by a thread, so the pipe never
    fills up and blocks the server)."""

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def signal(self, number: int = signal.SIGTERM) -> None:
        """Send the server a signal (SIGTERM to test draining)."""
        if self.process.poll() is None:
            self.process.send_signal(number)

    def wait(self, timeout: float = 30) -> int:
        """The exit code, once the process has ended (within ``timeout`` seconds)."""
        return self.process.wait(timeout=timeout)

    def stop(self, grace: float = 15) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def _drain(stream: Iterator[str], lines: list[str], found: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if SERVING_LINE.search(line):
            found.set()
    found.set()  # the stream ended (the process exited): stop waiting for the line


@contextlib.contextmanager
def start_server(
    model_dir: str | Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    deadline: float = 120,
) -> Iterator[Server]:
    """Start ``nlptasks serve MODEL_DIR --host 127.0.0.1 --port 0 ARGS`` and yield it once
    ``/health`` answers; stop it (SIGTERM, then SIGKILL) when the block ends. ``env``: extra
    environment variables (over :func:`nlptasks.testing.offline_env`). The test fails with the
    end of the server's stderr when it exits early or does not answer within ``deadline``
    seconds."""
    command = [
        *nlptasks_command(),
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=offline_env({"PYTHONUNBUFFERED": "1", **(env or {})}),
    )
    lines: list[str] = []
    found = threading.Event()
    assert process.stderr is not None
    reader = threading.Thread(target=_drain, args=(process.stderr, lines, found), daemon=True)
    reader.start()
    server = Server("", process, lines)
    try:
        end = time.monotonic() + deadline
        if not found.wait(deadline) or process.poll() is not None:
            reader.join(timeout=5)
            raise AssertionError(
                f"nlptasks serve did not start (exit code {process.poll()}): "
                f"{''.join(lines)[-3000:]}"
            )
        match = next(m for line in lines if (m := SERVING_LINE.search(line)))
        server.url = match.group(1)
        _wait_for_health(server, end)
        yield server
    finally:
        server.stop()
        reader.join(timeout=5)


def _wait_for_health(server: Server, end: float) -> None:
    """Poll ``/health`` until 200, the process exits or the deadline passes."""
    while True:
        if server.process.poll() is not None:
            raise AssertionError(
                f"nlptasks serve exited with {server.process.returncode}: {server.stderr[-3000:]}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > end:
            raise AssertionError(f"{server.url}/health did not answer: {server.stderr[-3000:]}")
        time.sleep(0.05)


def free_port() -> int:
    """A loopback port nobody listens on right now (for a test that needs the number)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


__all__ = ["SERVING_LINE", "Server", "free_port", "start_server"]
