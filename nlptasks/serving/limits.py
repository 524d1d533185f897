"""What a request may be: its key (``Authorization: Bearer``), its body's size, its records'
count and length. Each refusal is a JSON error before any model work.

The key and body checks are pure ASGI middlewares, so they cover every route (other routers'
too) and refuse a request before its body is parsed: a 1 GB body is cut off at the limit,
not read into memory first.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nlptasks.serving.errors import ApiError
from nlptasks.serving.settings import API_KEY_VARIABLE, ServeSettings

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

OPEN_PATHS = frozenset({"/health"})
"""Paths answered without a key: a load balancer's health check carries none."""


async def send_error(send: Send, error: ApiError) -> None:
    """Answer with ``error`` as JSON from an ASGI middleware (outside FastAPI's handlers)."""
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The request's path within this app: without the mount's ``root_path``, which
    Starlette keeps in ``scope["path"]`` when the app is mounted (``/sentiment/health`` is
    this app's ``/health``)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class ApiKeyMiddleware:
    """With a key set, every route but ``/health`` needs ``Authorization: Bearer KEY`` (401
    otherwise). ``hmac.compare_digest`` compares in constant time: how long a wrong key takes
    to be refused says nothing about how much of it was right."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope) not in OPEN_PATHS:
            problem = self.problem(_header(scope, b"authorization"))
            if problem:
                await send_error(
                    send,
                    ApiError(
                        401, problem, "invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
                    ),
                )
                return
        await self.app(scope, receive, send)

    def problem(self, authorization: str | None) -> str | None:
        """Why this Authorization header is refused, or None."""
        if not authorization:
            return (
                "This server needs an API key: send the header 'Authorization: Bearer KEY' "
                f"(the key nlptasks serve was started with, --api-key or {API_KEY_VARIABLE})."
            )
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return "The Authorization header must be 'Bearer KEY'."
        # Compared as sent (latin-1 bytes); the configured key is printable ASCII (problems()).
        if not hmac.compare_digest(given.strip().encode("latin-1"), self.key):
            return "The API key is wrong: send the key nlptasks serve was started with."
        return None


class DrainMiddleware:
    """Once the server is stopping (``state.draining``, set by the first SIGTERM or Ctrl-C),
    new requests get 503 and ``Connection: close`` while those in flight are answered;
    ``/health`` answers itself (503 "draining"), so a load balancer takes this replica out."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and getattr(self.state, "draining", False)
            and route_path(scope) not in OPEN_PATHS
        ):
            stopping = ApiError(
                503,
                "The server is shutting down; retry on another replica.",
                "shutting_down",
                headers={"Connection": "close", "Retry-After": "1"},
            )
            await send_error(send, stopping)
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses (413) a body larger than ``limit`` bytes: at once from its Content-Length, or
    as soon as the bytes read pass the limit (a chunked body, or a Content-Length that lies).
    The body is read here and handed on whole, so the app never sees a partial one."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def too_large(self, size: str) -> ApiError:
        return ApiError(
            413,
            f"The request body is {size}; this server takes at most {self.limit} bytes "
            f"(nlptasks serve --max-body-bytes). Send fewer or shorter records per request.",
            "body_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await send_error(send, ApiError(400, "The Content-Length header is not a number."))
                return
            if int(declared) > self.limit:
                await send_error(send, self.too_large(f"{int(declared)} bytes"))
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await send_error(send, self.too_large(f"over {self.limit} bytes"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return dict(await receive())  # later calls: wait for the disconnect, as usual

        await self.app(scope, replay, send)


def check_record_lengths(
    records: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    settings: ServeSettings,
    name: str = "records",
) -> None:
    """Each input field at most ``max_record_chars`` characters (422 naming the field)."""
    limit = settings.max_record_chars
    for number, record in enumerate(records):
        for field in fields:
            value = record.get(field)
            if isinstance(value, str) and len(value) > limit:
                where = f"{name}[{number}].{field}"
                raise ApiError(
                    422,
                    f"{where} has {len(value)} characters; this server takes at most {limit} "
                    f"per field (nlptasks serve --max-record-chars). Shorten it.",
                    "field_too_long",
                    where,
                )


def check_record_count(count: int, settings: ServeSettings) -> None:
    """At least one record, and at most ``max_records`` (413: the request is too large)."""
    if count == 0:
        raise ApiError(422, "records is empty: give at least one record.", "no_records", "records")
    if count > settings.max_records:
        raise ApiError(
            413,
            f"The request has {count} records; this server takes at most "
            f"{settings.max_records} per request (nlptasks serve --max-records). Split it.",
            "too_many_records",
            "records",
        )


__all__ = [
    "ApiKeyMiddleware",
    "BodyLimitMiddleware",
    "DrainMiddleware",
    "OPEN_PATHS",
    "check_record_count",
    "check_record_lengths",
    "route_path",
    "send_error",
]
