"""A fixture task that fails on one record: the sentiment task, except that a record whose
text is ``explode`` makes its ``predict`` raise a task error for the whole call.

It stands for a task whose per-record checks live in ``predict`` (not in the core's
``check_records``): when such a record joins a served batch, the batch fails, and the server
must run each joined request alone so that only the request that sent it fails. It wraps
the built-in task rather than registering a new one, so a trained sentiment model serves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nlptasks.errors import NlpTasksError

BAD_TEXT = "explode"


class ExplodingTask:
    """``task`` (the sentiment task) whose ``predict`` refuses the text ``explode``."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.info = task.info
        self.calls: list[int] = []
        """Records per ``predict`` call, in call order (what the test checks batching by)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def predict(
        self,
        model: Any,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Any,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        self.calls.append(len(records))
        for record in records:
            if record["text"] == BAD_TEXT:
                raise NlpTasksError(f"The text '{BAD_TEXT}' cannot be predicted. Send another.")
        return list(self.task.predict(model, tokenizer, records, recipe, write))
