"""``GET /metrics``: Prometheus text for one server (requests, latencies, batch sizes, queue).

Each app has its own ``CollectorRegistry``, never ``prometheus_client``'s global one: two apps
in one process (tests, a user mounting two models) would otherwise register the same metric
names twice and fail, or mix their counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from nlptasks.serving.errors import ApiError
from nlptasks.serving.limits import route_path, send_error

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
"""Records per model call: powers of two, the sizes a batch is usually capped at."""


class ServerMetrics:
    """The metrics of one server, in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nlptasks_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nlptasks_request_seconds",
            "Seconds from a request's arrival to the end of its answer (a stream's last "
            "event), by route.",
            ["route"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "nlptasks_batch_records",
            "Records per model call of /v1/predict (requests joined by dynamic batching).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "nlptasks_queue_depth",
            "Predict requests waiting for the model.",
            registry=self.registry,
        )
        self.retries = Counter(
            "nlptasks_batch_retries",
            "Joined batches that failed and were run again one request at a time (so a bad "
            "record fails only its own request).",
            registry=self.registry,
        )
        self.busy = Counter(
            "nlptasks_busy_refusals",
            "Predict requests refused with 503 because the queue was full.",
            registry=self.registry,
        )
        self.in_flight = 0
        """Requests started and not yet answered (not a metric: what a stop reports)."""
        self.stopped = 0
        """Requests the server stopped before answering them (a forced stop, or a graceful
        stop that ran out of time)."""

    def render(self) -> bytes:
        """The Prometheus text exposition of this server's metrics."""
        return generate_latest(self.registry)


Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class MetricsMiddleware:
    """Counts every HTTP request by route and status and times it: a pure ASGI middleware, the
    outermost one, so refused requests (401, 413) and other routers' requests count too.

    Routes are the app's own paths; anything else is counted as ``other`` (a scanner probing
    random paths must not create a label per path)."""

    def __init__(self, app: Any, metrics: ServerMetrics, routes: Callable[[], Collection[str]]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)  # a mounted app's own path, without the mount's prefix
        route = path if path in self.routes() else "other"
        started = time.perf_counter()
        # No response, no exception: the client went away (mid-body); nginx's 499.
        status: int | None = None

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            # The server is stopping without waiting for this request (a second signal, or
            # the graceful stop's time ran out). Say so in JSON when nothing was sent yet,
            # and end here: re-raised, uvicorn would log a traceback and send a text 500.
            self.metrics.stopped += 1
            if status is None:
                status = 503
                stop = ApiError(503, "The server stopped before answering; retry.", "stopped")
                with contextlib.suppress(Exception):
                    await send_error(send, stop)
        except BaseException:
            status = status or 500  # an exception that escapes is a 500
            raise
        finally:
            self.metrics.in_flight -= 1
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status or 499)).inc()
