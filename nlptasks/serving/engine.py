"""The served model: one ``Predictor`` (what ``nlptasks predict`` uses), run by one thread.

Every request that needs the model goes through ``Engine.run``: a single worker thread runs
the model, so requests never race on it, and the event loop stays free to take requests
(which is what lets requests pile up into batches while the model is busy)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nlptasks.errors import NlpTasksError
from nlptasks.serving.settings import ServeSettings

T = TypeVar("T")


@dataclass
class Engine:
    """A loaded model and the one thread that runs it."""

    predictor: Any
    """``nlptasks.runner.Predictor``: task, recipe, model, tokenizer, precision."""
    settings: ServeSettings
    model_name: str
    run_dir: Path | None = None
    """The run the model came from, if any (its recipe is shown by ``/v1/info``)."""
    _executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="nlptasks-model")
    )

    @property
    def task(self) -> Any:
        return self.predictor.task

    @property
    def generates(self) -> bool:
        """Whether the model writes text (a causal or sequence-to-sequence LM): then the
        OpenAI-compatible endpoints are served."""
        model = self.predictor.model
        can = getattr(model, "can_generate", None)
        return bool(callable(can) and can()) and len(self.task.info.input_fields) == 1

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the model's thread, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    def close(self, wait: bool = True) -> None:
        """Finish the work already handed to the model's thread, then stop it (``wait=False``:
        a forced stop, which drops the work not started and does not wait for the rest)."""
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


def load_engine(
    model_dir: str,
    task: str | None = None,
    settings: ServeSettings | None = None,
    overrides: Sequence[str] = (),
    mixed_precision: str | None = None,
) -> Engine:
    """Load the model at ``model_dir`` for serving, as ``nlptasks predict`` would: the task
    from its run's recipe.yaml unless given, the run's recipe with ``overrides``.

    The recipe's ``train.eval_batch_size`` is kept: ``--max-batch-size`` caps the records
    joined into one model call, and the task's predict splits them into forward batches of
    the recipe's size (as ``nlptasks predict`` does by default), so memory stays what the
    recipe says and ``/v1/info`` shows the run's recipe."""
    from nlptasks.recipes import read_yaml
    from nlptasks.runner import load_predictor
    from nlptasks.runs.directory import run_of

    settings = settings or ServeSettings()
    run = run_of(model_dir, files=("recipe.yaml",))
    if task is None:
        found = read_yaml(run / "recipe.yaml").get("task") if run is not None else None
        if not isinstance(found, str) or not found:
            raise NlpTasksError(
                f"{model_dir} is not a model folder inside a run (RUN/model), so its task is "
                f"unknown. Give it: --task sentiment (or the task it was trained for)."
            )
        task = found
    predictor = load_predictor(task, model_dir, None, mixed_precision, list(overrides))
    folder = Path(model_dir).expanduser().resolve()
    name = settings.model_name or (run.name if run is not None else folder.name)
    return Engine(predictor, settings, name, run)
