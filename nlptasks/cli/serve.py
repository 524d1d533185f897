"""``nlptasks serve MODEL_DIR``: the model behind an HTTP API (``nlptasks.serving``).

The order matters for one-line errors: settings, then the model folder and the port are
checked (seconds), then the model loads, then the socket is bound and uvicorn serves it.
Nothing heavy is imported at module level: ``nlptasks --help`` imports this module.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from nlptasks.cli import params
from nlptasks.errors import NlpTasksError
from nlptasks.serving.settings import API_KEY_VARIABLE, ServeSettings


@click.command()
@click.argument("model_dir")
@click.option("--task", "-t", help="The model's task (default: its run's recipe.yaml says).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, type=int, show_default=True, help="Port; 0 picks a free one.")
@click.option("--model-name", default="", help="The name clients use (default: the run's).")
@click.option("--max-batch-size", default=32, type=int, show_default=True,
              help="Records joined into one model call at most.")  # fmt: skip
@click.option("--batch-timeout-ms", default=5.0, type=float, show_default=True,
              help="How long a request waits for others to join its batch.")  # fmt: skip
@click.option("--api-key", default=None,
              help=f"Require 'Authorization: Bearer KEY' (or set {API_KEY_VARIABLE}).")  # fmt: skip
@click.option("--max-body-bytes", default=1_000_000, type=int, show_default=True,
              help="Largest request body.")  # fmt: skip
@click.option("--max-records", default=256, type=int, show_default=True,
              help="Records per request at most.")  # fmt: skip
@click.option("--max-record-chars", default=32_768, type=int, show_default=True,
              help="Characters per input field at most.")  # fmt: skip
@click.option("--request-timeout", default=120.0, type=float, show_default=True,
              help="Seconds before a request gets 504.")  # fmt: skip
@click.option("--max-queue-records", default=None, type=int,
              help="Records waiting for the model at most, then 503 "
                   "(default: 16 x --max-batch-size, at least 1024).")  # fmt: skip
@params.recipe_overrides
@params.mixed_precision
@params.allow_untrained_head
def serve(
    model_dir: str,
    task: str | None,
    host: str,
    port: int,
    model_name: str,
    max_batch_size: int,
    batch_timeout_ms: float,
    api_key: str | None,
    max_body_bytes: int,
    max_records: int,
    max_record_chars: int,
    request_timeout: float,
    max_queue_records: int | None,
    overrides: tuple[str, ...],
    mixed_precision: str | None,
    allow_untrained_head: bool,
) -> None:
    """Serve a trained model over HTTP: POST /v1/predict returns what 'nlptasks predict'
    prints; a model that generates also gets OpenAI-compatible /v1/completions and
    /v1/chat/completions. SIGTERM or Ctrl-C answers the requests in flight, then exits.

    \b
    Example:
        nlptasks serve runs/RUN/model
        curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' \\
             -d '{"records": ["A gripping, funny film."]}'
        NLPTASKS_API_KEY=secret nlptasks serve runs/RUN/model --host 0.0.0.0 --port 9000
    """
    settings = ServeSettings(
        host=host,
        port=port,
        model_name=model_name,
        max_batch_size=max_batch_size,
        batch_timeout_ms=batch_timeout_ms,
        api_key=api_key if api_key is not None else (os.environ.get(API_KEY_VARIABLE) or None),
        max_body_bytes=max_body_bytes,
        max_records=max_records,
        max_record_chars=max_record_chars,
        request_timeout_s=request_timeout,
        max_queue_records=max_queue_records,
    )
    problems = settings.problems()
    if problems:
        raise NlpTasksError(f"Cannot serve: {'; '.join(problems)}.")
    if not Path(model_dir).is_dir():
        raise NlpTasksError(
            f"Model directory '{model_dir}' does not exist. Pass the model/ folder of a run, "
            f"e.g. nlptasks serve runs/RUN/model."
        )
    _bind(host, port).close()  # a port in use fails now, not after the model has loaded

    from nlptasks.serving import serve as build

    app = build(
        model_dir,
        task,
        settings=settings,
        overrides=overrides,
        mixed_precision=mixed_precision,
        allow_untrained_head=allow_untrained_head,
    )
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    engine = app.state.engine
    if not settings.api_key:
        click.secho(
            f"Warning: no API key: anyone who can reach {url} can use this model. Give "
            f"--api-key KEY (or set {API_KEY_VARIABLE}) unless only you can reach it.",
            fg="yellow",
            err=True,
        )
    routes = "POST /v1/predict"
    if engine.generates:
        routes += ", /v1/completions, /v1/chat/completions"
    click.echo(
        f"Serving {engine.task.info.name} model {engine.model_name} on {url} "
        f"({routes}; GET /health, /v1/info, /metrics)",
        err=True,
    )
    _run(app, sock, settings)


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (not listening yet), or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restarted server may take the port its predecessor left.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NlpTasksError(
                f"Port {port} on {host} is already in use (another server?). Stop it, or "
                f"choose another --port (--port 0 picks a free one)."
            ) from None
        raise NlpTasksError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Check --host "
            f"(127.0.0.1, 0.0.0.0 or an address of this machine) and --port."
        ) from None
    return sock


def _run(app: Any, sock: socket.socket, settings: ServeSettings) -> None:
    """uvicorn on ``sock`` until SIGTERM or Ctrl-C; then in-flight requests are answered
    (the batcher drains its queue) and this returns, so the command exits 0. A second
    signal stops at once, as does a drain that outlasts its time: then the command says how
    many requests were not answered and exits 130 (SIGINT) or 143 (SIGTERM)."""
    import uvicorn

    signals: list[int] = []
    metrics = app.state.metrics
    grace = float(int(settings.request_timeout_s) + 5)

    class Server(uvicorn.Server):
        """uvicorn, with a drain before its shutdown: after the first signal the socket stays
        open, ``/health`` says 503 "draining" (a load balancer sees it and stops sending) and
        new work gets 503, until the requests in flight are answered; then uvicorn stops."""

        draining_since: float | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            signals.append(sig)
            if self.draining_since is None:
                app.state.draining = True
                self.draining_since = time.monotonic()
                return
            # A second signal, SIGTERM too (uvicorn forces only on SIGINT): stop at once.
            self.should_exit = self.force_exit = True
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if self.draining_since is not None and not self.should_exit:
                if metrics.in_flight == 0:
                    self.should_exit = True
                elif time.monotonic() - self.draining_since > grace:
                    # The drain's time is spent: uvicorn cancels what is left at once.
                    self.config.timeout_graceful_shutdown = 0
                    self.should_exit = True
            return await super().on_tick(counter)

    config = uvicorn.Config(
        app,
        log_level="warning",
        # Requests in flight get up to their own timeout to finish.
        timeout_graceful_shutdown=int(grace),
    )
    server = Server(config)
    # uvicorn catches SIGTERM/SIGINT, shuts down gracefully, then raises the signal again
    # under the handler it found; with these no-op handlers that ends nothing, and the
    # command decides its exit code itself (a drained shutdown is a success, not a kill).
    handlers = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    lost = metrics.stopped + metrics.in_flight
    if server.force_exit or lost:
        last = signals[-1] if signals else signal.SIGTERM
        how = "a second signal" if server.force_exit else "the graceful stop ran out of time"
        were = "request was" if lost == 1 else "requests were"
        click.echo(f"Stopped before {lost} {were} answered ({how}).", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # Not sys.exit: the interpreter would wait for the model's thread to finish its batch.
        os._exit(128 + int(last))


def _ignore(sig: int, frame: Any) -> None:
    """A signal that arrives after uvicorn's shutdown began needs nothing more."""
