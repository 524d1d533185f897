"""Errors a server answers with: always JSON, always 4xx for a client's mistake, never a
traceback. The body has OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``),
so the official ``openai`` client raises its own typed errors with our message, and every
other endpoint answers the same way."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server refuses: ``status`` (4xx, or 503/504), one line that names the
    problem and the fix, the offending field (``param``) and a short machine ``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "invalid_request",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code, self.param)


def error_body(
    status: int, message: str, code: str = "invalid_request", param: str | None = None
) -> dict[str, Any]:
    """The JSON of an error answer."""
    kind = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
