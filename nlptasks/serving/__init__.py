"""``nlptasks serve``: a trained model behind an ASGI app (FastAPI on uvicorn).

``nlptasks.serve(model_dir, ...)`` builds the app, for tests and for users who mount it in
their own ASGI server::

    app = nlptasks.serve("runs/RUN/model")
    # uvicorn.run(app), or fastapi.testclient.TestClient(app), or app.mount(...) elsewhere

Modules, one job each: ``settings`` (what a server is told), ``engine`` (the Predictor and
its one model thread), ``batching`` (requests joined into model calls), ``limits`` (API key,
body size, record count and length), ``metrics`` (Prometheus), ``errors`` (JSON errors),
``app`` (routes and error handlers), ``openai_api`` (the OpenAI-compatible routes of a model
that generates), ``openai_schema`` (their request bodies, checked field by field) and
``stops`` (stop strings cut from streamed text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nlptasks.serving.settings import API_KEY_VARIABLE, ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI


def serve(
    model_dir: str,
    task: str | None = None,
    *,
    settings: ServeSettings | None = None,
    overrides: Sequence[str] = (),
    mixed_precision: str | None = None,
    allow_untrained_head: bool = False,
) -> FastAPI:
    """The ASGI app serving the model at ``model_dir`` (loaded now, so a bad model folder is an
    error here, not at the first request): ``POST /v1/predict`` returns what ``nlptasks
    predict`` prints for the same records; ``/health``, ``/v1/info``, ``/metrics``; and the
    OpenAI-compatible endpoints for a model that generates. ``task``: the run's own unless
    given; ``overrides`` change the model's recipe (``generation.num_beams=4``).

    Mounted in another app (``host.mount("/sentiment", app)``) it answers under the mount's
    path, the API key and the metrics see its own routes (``/health`` stays open). Starlette
    runs no lifespan of a mounted app: the batcher starts with the first request, and the
    shutdown drain (answering queued requests, stopping the model's thread) is the host
    app's job."""
    from nlptasks.errors import NlpTasksError
    from nlptasks.model_fit import allow_untrained_head as untrained_heads
    from nlptasks.serving.app import build_app
    from nlptasks.serving.engine import load_engine

    settings = settings or ServeSettings()
    problems = settings.problems()
    if problems:
        raise NlpTasksError(f"Cannot serve: {'; '.join(problems)}.")
    with untrained_heads(allow_untrained_head):
        engine = load_engine(model_dir, task, settings, overrides, mixed_precision)
    return build_app(engine)


__all__ = ["API_KEY_VARIABLE", "ServeSettings", "serve"]
