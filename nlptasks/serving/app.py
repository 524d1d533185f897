"""The FastAPI app of ``nlptasks serve``: its routes, its middlewares and its error answers.

FastAPI on uvicorn rather than LitServe: LitServe runs the model in worker processes behind
its own request/response API, where we need the ``Predictor`` in this process (what
``nlptasks predict`` computes, byte for byte) and our own error shape; an ASGI app is also
what users mount in their own server (``nlptasks.serve(...)``).

Middlewares, outermost first: metrics (every request counted, refused ones too), the drain
(503 for new work once the server is stopping), the API key, the body size limit; then
FastAPI's routing. Every answer that is not a success is JSON in
OpenAI's error shape (``errors.error_body``): 4xx for a client's mistake, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException

from nlptasks.errors import NlpTasksError, PluginError, first_line, shorten_message
from nlptasks.serving.batching import Batcher
from nlptasks.serving.engine import Engine
from nlptasks.serving.errors import ApiError, error_body
from nlptasks.serving.limits import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    DrainMiddleware,
    check_record_count,
    check_record_lengths,
)
from nlptasks.serving.metrics import MetricsMiddleware, ServerMetrics

log = logging.getLogger("nlptasks.serve")

Body = TypeVar("Body", bound=BaseModel)


class PredictRequest(BaseModel):
    """``POST /v1/predict``: ``records`` (many) or ``record`` (one), each an object with the
    task's input fields or, for a task with one field, a plain string."""

    model_config = ConfigDict(extra="forbid")

    records: list[Any] | None = None
    record: Any = None
    model: str | None = None
    """Optional: the served model's name (``/v1/info``); another name is a 404."""


def build_app(engine: Engine) -> FastAPI:
    """The app serving ``engine``: its routes, middlewares, error handlers and a lifespan
    that starts the batcher and, at shutdown, answers what is queued and closes the engine."""
    settings = engine.settings
    metrics = ServerMetrics()
    batcher = Batcher(engine, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        forced = False
        try:
            yield
        except asyncio.CancelledError:
            # A forced stop: uvicorn skips the lifespan's shutdown and asyncio cancels this
            # task. Ended quietly here, or Starlette logs the cancellation as a traceback.
            forced = True
        finally:
            # uvicorn calls this once in-flight requests are answered (SIGTERM drains them).
            app.state.draining = True
            try:
                await batcher.stop()
            except asyncio.CancelledError:
                forced = True
            # A forced stop leaves the model's thread to finish on its own.
            engine.close(wait=not forced)

    app = FastAPI(
        title=f"nlptasks serve: {engine.model_name}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.draining = False
    _add_routes(app, engine, batcher, metrics)
    # Mounted for every model: one that does not generate answers the OpenAI routes with a
    # 404 that names /v1/predict and its input fields, not a bare "no such route".
    from nlptasks.serving.openai_api import openai_router

    app.include_router(openai_router(engine))
    install_error_handlers(app)
    # add_middleware puts each new one outside the ones before it.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(DrainMiddleware, state=app.state)
    paths = frozenset(getattr(route, "path", "") for route in app.routes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: paths)
    return app


def _add_routes(app: FastAPI, engine: Engine, batcher: Batcher, metrics: ServerMetrics) -> None:
    settings = engine.settings
    fields = tuple(engine.task.info.input_fields)

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 while serving; 503 once the server is shutting down (a load balancer stops
        sending then)."""
        if app.state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/info")
    async def info() -> JSONResponse:
        """What is served: task, model, input fields, the resolved recipe, settings."""
        from nlptasks.recipes.schema import recipe_to_dict
        from nlptasks.version import __version__

        predictor = engine.predictor
        return JSONResponse(
            jsonable_encoder(
                {
                    "task": engine.task.info.name,
                    "model": engine.model_name,
                    "model_dir": str(Path(predictor.model_dir).expanduser().resolve()),
                    "run_dir": str(engine.run_dir) if engine.run_dir else None,
                    "input_fields": list(fields),
                    "generates": engine.generates,
                    "nlptasks_version": __version__,
                    "precision": predictor.precision,
                    "recipe": recipe_to_dict(predictor.recipe),
                    "settings": {
                        "max_batch_size": settings.max_batch_size,
                        "batch_timeout_ms": settings.batch_timeout_ms,
                        "max_body_bytes": settings.max_body_bytes,
                        "max_records": settings.max_records,
                        "max_record_chars": settings.max_record_chars,
                        "request_timeout_s": settings.request_timeout_s,
                        "max_queue_records": settings.queue_limit,
                        "api_key_required": bool(settings.api_key),
                    },
                }
            )
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: requests by route and status, latencies, batch sizes, queue."""
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post(
        "/v1/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        """What ``nlptasks predict`` prints for the records, in order, as one JSON list."""
        from nlptasks.runner import is_unicode

        body = await read_json(request, PredictRequest)
        if body.model is not None and not is_unicode(body.model):
            raise ApiError(
                422,
                "'model' is not valid Unicode (a lone surrogate, such as JSON's \\ud800 "
                "escape alone). Send UTF-8 text.",
                "invalid_request",
                "model",
            )
        if body.model is not None and body.model != engine.model_name:
            raise ApiError(
                404,
                f"Model '{body.model}' is not served here; this server serves "
                f"'{engine.model_name}' (or leave 'model' out).",
                "model_not_found",
                "model",
            )
        records, labels = _records_of(body)
        check_record_count(len(records), settings)
        checked = _check_records(engine, records, labels)
        check_record_lengths(checked, fields, settings)
        results = await within_timeout(batcher.predict(checked, labels), settings.request_timeout_s)
        return JSONResponse({"model": engine.model_name, "predictions": results})


def _records_of(body: PredictRequest) -> tuple[list[Any], list[str]]:
    """The request's records and the names errors give them (``records[3]``)."""
    if body.records is not None and body.record is not None:
        raise ApiError(422, "Give 'records' (a list) or 'record' (one), not both.", param="record")
    if body.record is not None:
        return [body.record], ["record"]
    if body.records is None:
        raise ApiError(
            422,
            'The body has no \'records\': send {"records": [{...}, ...]} or {"record": {...}}.',
            "no_records",
            "records",
        )
    return list(body.records), [f"records[{i}]" for i in range(len(body.records))]


def _check_records(engine: Engine, records: list[Any], labels: list[str]) -> list[Any]:
    """Each record checked on its own before it joins a batch (``nlptasks predict``'s
    checks): a bad record is this request's 422, never a failure of the batch it would join."""
    from nlptasks.runner import check_records

    try:
        return list(check_records(engine.task, records, labels))
    except NlpTasksError as exc:
        where = next((label for label in labels if str(exc).startswith(label)), None)
        raise ApiError(422, shorten_message(str(exc)), "invalid_record", where) from None


async def within_timeout(work: Any, seconds: float) -> Any:
    """``await work``, or 504 after ``seconds`` (``--request-timeout``); work not started by
    then is dropped."""
    try:
        return await asyncio.wait_for(work, seconds)
    except asyncio.TimeoutError:  # not the builtin one before Python 3.11
        raise ApiError(
            504,
            f"The request was not answered within {seconds:g} s (nlptasks serve "
            f"--request-timeout); send fewer records, or retry later.",
            "timeout",
        ) from None


async def read_json(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``: 415 for another content type, 400 for JSON that
    does not parse, 422 naming the field for the wrong shape (unknown keys included)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(
            415,
            f"The body must be JSON, sent with 'Content-Type: application/json' (got "
            f"'{kind or 'no content type'}').",
            "unsupported_media_type",
        )
    raw = await request.body()
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(
            400, "The body is not valid JSON (nested too deeply). Send a JSON object."
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The body is not valid JSON ({exc}). Send a JSON object.") from None
    if not isinstance(data, dict):
        raise ApiError(
            422, f"The body is a JSON {_json_kind(data)}, not an object. Send a JSON object."
        )
    from nlptasks.runner import is_unicode

    if not all(is_unicode(key) for key in data):
        raise ApiError(
            422,
            "A key of the body is not valid Unicode (a lone surrogate, such as JSON's "
            "\\ud800 escape alone). Send UTF-8 text.",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = describe_errors(exc.errors(), model.model_fields)
        raise ApiError(422, message, "invalid_request", param) from None


def _json_kind(data: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(data), "number"
    )


def describe_errors(
    errors: Sequence[Mapping[str, Any]], known: Mapping[str, Any] | Sequence[str] = ()
) -> tuple[str, str | None]:
    """One line for pydantic's first error, naming the field (``records``, ``messages[0]``),
    and that field: what a 422 says."""
    first = errors[0]
    location = [part for part in first.get("loc", ()) if part != "body"]
    field = "".join(
        f"[{part}]" if isinstance(part, int) else (f".{part}" if i else str(part))
        for i, part in enumerate(location)
    )
    if first.get("type") == "extra_forbidden":
        allowed = ", ".join(known)
        return f"Unknown key '{field}' in the body; it takes {allowed}.", field
    if first.get("type") == "missing":
        if not field:
            return "The request has no body: send a JSON object.", None
        return f"The body has no '{field}'; it is required.", field
    message = str(first.get("msg", "is not valid"))
    return (f"'{field}': {message}." if field else f"{message}."), field or None


class ErrorResponse(JSONResponse):
    """An error's JSON even when its message quotes the client's lone surrogates (an unknown
    key ``"\\ud800"``): written with ``\\u`` escapes then, not a UnicodeEncodeError (a 500)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode("ascii")


def install_error_handlers(app: FastAPI) -> None:
    """Every error becomes JSON in OpenAI's shape: ours (ApiError), FastAPI's validation (400
    for JSON that does not parse, 422 naming the field), Starlette's 404/405, a task's
    NlpTasksError (422: the records' fault), and anything else (500, logged, no traceback in
    the body)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return ErrorResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            body = error_body(400, "The body is not valid JSON. Send a JSON object.")
            return JSONResponse(body, status_code=400)
        message, param = describe_errors(errors) if errors else ("Invalid request.", None)
        return ErrorResponse(error_body(422, message, param=param), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        what = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            message = f"No route {what}. This server answers {_routes_text(app)}."
            code = "not_found"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("allow", (exc.headers or {}).get("Allow", ""))
            message = f"{what} is not allowed; use {allowed or 'another method'}."
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), "http_error"
        return JSONResponse(
            error_body(exc.status_code, message, code),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(NlpTasksError)
    async def task_error(request: Request, exc: NlpTasksError) -> JSONResponse:
        if isinstance(exc, PluginError):  # the task's fault, not the request's
            log.error("The task failed: %s", first_line(exc))
            body = error_body(500, f"internal error: {shorten_message(str(exc))}", "task_error")
            return JSONResponse(body, status_code=500)
        body = error_body(422, shorten_message(str(exc)), "invalid_record")
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        message = f"internal error: {type(exc).__name__}: {first_line(exc)}"
        return JSONResponse(error_body(500, message, "internal_error"), status_code=500)


def _routes_text(app: FastAPI) -> str:
    routes = []
    for route in app.routes:
        methods = sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"})
        path = getattr(route, "path", "")
        if methods and not path.startswith(("/openapi", "/docs")):
            routes.append(f"{'/'.join(methods)} {path}")
    return ", ".join(routes)
