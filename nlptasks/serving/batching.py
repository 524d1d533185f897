"""Dynamic batching: predict requests that arrive close together share one model call.

Requests wait in a queue; the batcher takes the first, waits up to ``batch_timeout_ms`` for
others, joins them up to ``max_batch_size`` records (a larger request goes alone) and runs
ONE ``Predictor.predict`` over all their records on the model's thread, then hands each
request its own slice of the results. Per request this is exactly ``nlptasks predict``: the
same ``Predictor.predict`` on the same records, only in company.

Length sorting is the task's own: every built-in task's ``predict`` (generation's through
``generate_texts``) and the NER example's use ``nlptasks.predict_batches``: the joined
records are tokenised, sorted by length into forward batches of the recipe's own
``train.eval_batch_size`` (``max_batch_size`` caps the records of one model call, not of one
forward pass: memory stays what the recipe says), each padded to its own longest, and the
results put back in input order. So this module does not sort again.

The queue holds at most ``ServeSettings.queue_limit`` records; past it a request gets 503
with Retry-After, rather than waiting behind work the server cannot finish in time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from nlptasks.errors import first_line
from nlptasks.serving.engine import Engine
from nlptasks.serving.errors import ApiError
from nlptasks.serving.metrics import ServerMetrics

log = logging.getLogger("nlptasks.serve")


@dataclass
class _Job:
    """One request's records and where its answer goes."""

    records: list[Any]
    labels: list[str]
    future: asyncio.Future[list[dict[str, Any]]] = field(repr=False)


class Batcher:
    """Joins predict requests into model calls; one per server, run by the app's lifespan."""

    def __init__(self, engine: Engine, metrics: ServerMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_records = engine.settings.max_batch_size
        self.wait_s = engine.settings.batch_timeout_ms / 1000
        self.queue_limit = engine.settings.queue_limit
        self._queue: collections.deque[_Job] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the batcher on the running event loop (again after a ``stop``)."""
        if self._task is None or self._task.done():
            self._closing = False
            self._arrived = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        """Answer every request already queued, then stop (the server is shutting down)."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task

    async def predict(self, records: list[Any], labels: list[str]) -> list[dict[str, Any]]:
        """Predictions for one request's records (checked already), once its batch has run.
        Cancelling the wait (a request timeout) drops the request if its batch has not
        started."""
        if self._closing:
            raise ApiError(503, "The server is shutting down; retry on another replica.")
        # An app used without its lifespan (a bare TestClient, or mounted in another app:
        # Starlette runs no lifespan of a mounted app) still works.
        self.start()
        queued = self._queued_records()
        if queued and queued + len(records) > self.queue_limit:
            self.metrics.busy.inc()
            raise ApiError(
                503,
                f"The server is busy ({queued} records are waiting for the model; it queues "
                f"at most {self.queue_limit}): retry later.",
                "server_busy",
                headers={"Retry-After": "1"},
            )
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(records, labels, future))
        self.metrics.queue_depth.set(len(self._queue))
        assert self._arrived is not None
        self._arrived.set()
        return await future

    async def _loop(self) -> None:
        assert self._arrived is not None
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            await self._gather()
            jobs = self._take()
            self.metrics.queue_depth.set(len(self._queue))
            if jobs:
                await self._run(jobs)

    async def _gather(self) -> None:
        """Wait up to ``batch_timeout_ms`` for a full batch (no wait when it is full or the
        server is draining)."""
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + self.wait_s
        while not self._closing and self._queued_records() < self.max_records:
            left = end - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def _queued_records(self) -> int:
        return sum(len(job.records) for job in self._queue)

    def _take(self) -> list[_Job]:
        """The jobs of the next batch, in arrival order: the first always (even if alone it
        is over the limit), then others while they fit. Abandoned jobs (timed out) are
        dropped unrun."""
        jobs: list[_Job] = []
        count = 0
        while self._queue:
            job = self._queue[0]
            if job.future.done():
                self._queue.popleft()
                continue
            if jobs and count + len(job.records) > self.max_records:
                break
            jobs.append(self._queue.popleft())
            count += len(job.records)
        return jobs

    async def _run(self, jobs: list[_Job]) -> None:
        """One model call for ``jobs``; if it fails and they were several, each alone, so a
        failure reaches only the request that caused it."""
        records = [record for job in jobs for record in job.records]
        labels = [label for job in jobs for label in job.labels]
        try:
            results = await self._call(records, labels)
        except Exception as exc:  # noqa: BLE001 - each request gets its own answer below
            if len(jobs) == 1:
                _settle(jobs[0], exception=exc)
                return
            self.metrics.retries.inc()
            log.warning("A joined batch of %d requests failed (%s); retrying each alone.",
                        len(jobs), first_line(exc))  # fmt: skip
            for job in jobs:
                try:
                    _settle(job, await self._call(job.records, job.labels))
                except Exception as alone:  # noqa: BLE001 - this request's own error
                    _settle(job, exception=alone)
            return
        start = 0
        for job in jobs:
            _settle(job, results[start : start + len(job.records)])
            start += len(job.records)

    async def _call(self, records: list[Any], labels: list[str]) -> list[dict[str, Any]]:
        self.metrics.batch_size.observe(len(records))
        # The task cuts the records into length-sorted forward batches of the recipe's
        # eval_batch_size, as nlptasks predict does by default.
        found = await self.engine.run(self.engine.predictor.predict, records, labels)
        return list(found)


def _settle(
    job: _Job, result: list[dict[str, Any]] | None = None, exception: BaseException | None = None
) -> None:
    """Answer a job unless its request gave up waiting (timed out, client gone)."""
    if job.future.done():
        return
    if exception is not None:
        job.future.set_exception(exception)
    else:
        job.future.set_result(result or [])


__all__ = ["Batcher"]
