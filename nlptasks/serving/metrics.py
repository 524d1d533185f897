"""``GET /metrics``: Prometheus text for one server (requests, latencies, batch sizes, queue).

Each app has its own ``CollectorRegistry``, never ``prometheus_client``'s global one: two apps
in one process (tests, a user mounting two models) would otherwise register the same metric
names twice and fail, or mix their counts.
"""

from __future__ import annotations

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
        path = scope.get("path", "")
        route = path if path in self.routes() else "other"
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception that escapes is a 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status)).inc()
