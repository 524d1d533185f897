"""What ``nlptasks serve`` is told: where to listen, how to batch, its limits and its key."""

from __future__ import annotations

from dataclasses import dataclass

API_KEY_VARIABLE = "NLPTASKS_API_KEY"
"""The environment variable ``nlptasks serve`` reads the API key from when ``--api-key`` is
not given (a key on the command line shows in ``ps``)."""


@dataclass(frozen=True)
class ServeSettings:
    """One server's settings; every limit is checked per request, with a 4xx JSON error."""

    host: str = "127.0.0.1"
    """Loopback unless told otherwise: a model server is not for the whole network."""
    port: int = 8000
    """0: a free port the system picks (``nlptasks serve`` prints which)."""
    model_name: str = ""
    """The name clients give as ``model`` (OpenAI endpoints) and ``/v1/info`` shows; empty:
    the model folder's run name (``RUN`` of ``RUN/model``) or the folder's own name."""
    max_batch_size: int = 32
    """Records predicted together at most: requests that arrive within ``batch_timeout_ms``
    of each other are joined up to this many records."""
    batch_timeout_ms: float = 5.0
    """How long the first request of a batch waits for others to join it."""
    api_key: str | None = None
    """With a key, every request but ``/health`` needs ``Authorization: Bearer KEY``."""
    max_body_bytes: int = 1_000_000
    """Request bodies larger than this are refused (413) before they are parsed."""
    max_records: int = 256
    """Records per ``/v1/predict`` request at most."""
    max_record_chars: int = 32_768
    """Characters per input field at most (a SQuAD context is a few thousand)."""
    request_timeout_s: float = 120.0
    """A request not answered in this many seconds gets 504 (the model's work for it is
    dropped when it has not started)."""

    max_queue_records: int | None = None
    """Records waiting for the model at most (None: ``max(16 * max_batch_size, 1024)``); a
    request past it gets 503 with Retry-After."""

    @property
    def queue_limit(self) -> int:
        """``max_queue_records``, or its default from ``max_batch_size``."""
        if self.max_queue_records is not None:
            return self.max_queue_records
        return max(16 * self.max_batch_size, 1024)

    def problems(self) -> list[str]:
        """Settings that cannot work, one line each (for one-line CLI errors)."""
        checks = [
            (
                0 <= self.port <= 65535,
                f"--port must be 0-65535 (0: any free port), not {self.port}",
            ),
            (self.max_batch_size >= 1, "--max-batch-size must be at least 1"),
            (self.batch_timeout_ms >= 0, "--batch-timeout-ms must be 0 or more"),
            (self.max_body_bytes >= 1024, "--max-body-bytes must be at least 1024"),
            (self.max_records >= 1, "--max-records must be at least 1"),
            (self.max_record_chars >= 1, "--max-record-chars must be at least 1"),
            (self.request_timeout_s > 0, "--request-timeout must be above 0 seconds"),
            (
                self.max_queue_records is None or self.max_queue_records >= 1,
                "--max-queue-records must be at least 1",
            ),
        ]
        problems = [message for ok, message in checks if not ok]
        key = self.api_key
        if key is not None:
            # Exactly what a client can send in a header: HTTP headers are read as latin-1,
            # and their surrounding whitespace is dropped, so such a key would never match.
            if not key.strip():
                problems.append("the API key is empty")
            elif key != key.strip():
                problems.append("the API key starts or ends with whitespace; remove it")
            elif not all(" " <= c <= "~" for c in key):
                problems.append(
                    "the API key has characters other than printable ASCII (letters, digits, "
                    "punctuation), which an Authorization header cannot carry; choose another"
                )
        return problems
