"""OpenAI-compatible ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions``.

A completion is what ``nlptasks predict`` gives for the same prompt: the task's own
``predict`` runs on ``{input_field: prompt}`` with the request's decoding settings over the
recipe's (so prompted translation serves its prompt template, and a generation recipe with
``options.chat`` its chat template). A chat is rendered by ``nlptasks.generating.render_chat``
(the model's chat template, else the ``role: content`` lines the generation task trains a
model without a template on) and generated as the generation task generates
(``generate_texts``), so a one-message chat equals ``nlptasks predict`` with
``options.chat=true``.

Generation requests are not batched across requests: each request is one call on the model's
thread (``Engine.run``), in arrival order; a list of prompts (at most ``--max-records``) is
one call that generates each prompt alone, so each text is the one that prompt gets by
itself. Every prompt's length is checked against the context before the first is generated.
``stream: true`` sends the text as server-sent events while the model thread writes it; a
stop string, a client that went away (streamed or not: a waiting request polls its
connection) or a request out of time ends generating at the next piece and skips the
prompts not yet started, so no model time is wasted.

On shutdown (SIGTERM), a stream still running ``--request-timeout`` seconds after this
module first saw the server draining is halted at its next piece with an OpenAI-shaped
``error`` event ("the server is shutting down") and ``data: [DONE]``, inside uvicorn's grace
period (``--request-timeout`` + 5 s), so a client never sees a torn stream; shorter streams
finish normally.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nlptasks.errors import NlpTasksError, PluginError
from nlptasks.recipes.schema import GenerationConfig
from nlptasks.serving.engine import Engine
from nlptasks.serving.errors import ApiError, error_body
from nlptasks.serving.openai_schema import (
    ChatRequest,
    GenerationRequest,
    check_unicode,
    parse_chat,
    parse_completion,
    shown,
)
from nlptasks.serving.stops import StopScanner

T = TypeVar("T")

Send = Callable[[int, str], None]
"""``send(choice index, text)``: hands generated text from the model thread to the stream."""


POLL_S = 0.25
"""How often a waiting request looks at its client's connection and at the server's
draining flag."""


class _Halt(Exception):
    """Raised from a write callback to end generating now: a stop string was completed, or
    the client that would read the text went away."""


class _ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


class _ShuttingDown(Exception):
    """The server is draining and this stream ran out of its grace time."""


@dataclass
class Choice:
    """One prompt's answer: its text, why it ended, and its token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def openai_router(engine: Engine) -> APIRouter:
    """The OpenAI-compatible routes of ``engine``'s model. A model that does not generate
    text (a classifier, a QA model) still lists itself under ``/v1/models``; its
    completion endpoints answer 404 naming ``/v1/predict``."""
    router = APIRouter()
    service = _Service(engine)

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [service.model_card()]}

    @router.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        service.check_model(model_id)
        return service.model_card()

    @router.post("/v1/completions")
    async def completions(request: Request) -> Response:
        service.check_generates("/v1/completions")
        limits = engine.settings
        parsed = parse_completion(await _body(request), limits.max_record_chars, limits.max_records)
        settings = service.settings(parsed)
        many = len(parsed.prompts) > 1
        labels = [f"prompt[{i}]" if many else "prompt" for i in range(len(parsed.prompts))]

        def job(send: Send | None, gone: threading.Event) -> list[Choice]:
            if gone.is_set():  # its request gave up while it waited for the model
                return []
            service.check_prompts(parsed.prompts, labels, settings, add_special_tokens=True)
            choices = []
            for i, prompt in enumerate(parsed.prompts):
                if gone.is_set():  # the client left or the time ran out: no more prompts
                    break
                choices.append(
                    service.complete(i, prompt, settings, parsed.stops, send, gone, labels[i])
                )
            return choices

        return await service.respond(request, parsed, job, chat=False)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        service.check_generates("/v1/chat/completions")
        parsed = parse_chat(await _body(request), engine.settings.max_record_chars)
        settings = service.settings(parsed)
        prompt = service.render_chat(parsed)

        def job(send: Send | None, gone: threading.Event) -> list[Choice]:
            if gone.is_set():
                return []
            service.check_prompts([prompt], ["messages"], settings, add_special_tokens=False)
            return [service.chat(prompt, settings, parsed.stops, send, gone)]

        return await service.respond(request, parsed, job, chat=True)

    return router


async def _body(request: Request) -> Any:
    """The request's JSON, every string in it valid Unicode."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:  # bad JSON, a 5000-digit number, [[[[...
        raise ApiError(
            400,
            f"The request body is not valid JSON ({str(error)[:200]}); send a JSON object "
            f"with Content-Type: application/json.",
            code="invalid_json",
        ) from None
    check_unicode(body)
    return body


class _Service:
    """What the routes share: the engine, the task's input field, the model's context."""

    def __init__(self, engine: Engine) -> None:
        from nlptasks.models import position_limit

        self.engine = engine
        predictor = engine.predictor
        self.fields = tuple(engine.task.info.input_fields)
        self.context = position_limit(predictor.model, predictor.tokenizer)
        self.created = int(time.time())
        self.encoder_decoder = bool(
            getattr(getattr(predictor.model, "config", None), "is_encoder_decoder", False)
        )
        self.drain_seen: float | None = None
        """When a request first saw the server draining (``time.monotonic()``)."""

    # ----------------------------------------------------------------- checks (event loop)
    def model_card(self) -> dict[str, Any]:
        return {
            "id": self.engine.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "nlptasks",
            "task": self.engine.task.info.name,
            "context_length": self.context,
        }

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.engine.model_name:
            raise ApiError(
                404,
                f"The model '{name}' is not served here; this server serves "
                f"'{self.engine.model_name}' (GET /v1/models lists it).",
                code="model_not_found",
                param="model",
            )

    def check_generates(self, path: str) -> None:
        if not self.engine.generates:
            raise ApiError(
                404,
                f"{path} is not served: this server's model is a "
                f"'{self.engine.task.info.name}' model, which does not generate text. Use "
                f"POST /v1/predict with records of its input fields "
                f"({', '.join(self.fields)}).",
                code="not_found",
            )

    def settings(self, parsed: GenerationRequest) -> GenerationConfig:
        """The request's decoding settings over the recipe's, its model name checked."""
        self.check_model(parsed.model)
        wanted = parsed.sampling.max_tokens
        if wanted is not None and self.context is not None and wanted >= self.context:
            raise ApiError(
                400,
                f"'max_tokens' is {shown(wanted)}, but this model's context length is "
                f"{self.context} tokens, prompt included; ask for fewer.",
                code="context_length_exceeded",
                param="max_tokens",
            )
        return parsed.sampling.settings(self.engine.predictor.recipe.generation)

    def render_chat(self, parsed: ChatRequest) -> str:
        """The conversation as the model reads it, ending with the start of the assistant's
        turn: its chat template, else the ``role: content`` lines the generation task
        trains a model without a template on (what ``options.chat`` does either way)."""
        from nlptasks.generating import render_chat

        if self.encoder_decoder:
            raise ApiError(
                400,
                "This model is an encoder-decoder (sequence-to-sequence) model, which has no "
                "chat format; use /v1/completions.",
                code="chat_not_supported",
            )
        tokenizer = self.engine.predictor.tokenizer
        try:
            return render_chat(tokenizer, list(parsed.messages), prompt=True)
        except Exception as error:  # jinja's TemplateError, raise_exception() in a template
            raise ApiError(
                400,
                f"The model's chat template refused these messages: {error}",
                code="invalid_messages",
                param="messages",
            ) from None

    def shutting_down(self, state: Any) -> bool:
        """Whether a stream must end now: the server (``state.draining``) has been draining
        for ``--request-timeout`` seconds, counted from the first time a request saw it."""
        if not getattr(state, "draining", False):
            return False
        now = time.monotonic()
        if self.drain_seen is None:
            self.drain_seen = now
        return now - self.drain_seen >= self.engine.settings.request_timeout_s

    # ----------------------------------------------------------------- model thread
    def check_prompts(
        self,
        prompts: Sequence[str],
        labels: Sequence[str],
        settings: GenerationConfig,
        add_special_tokens: bool,
    ) -> None:
        """Refuse (400) a prompt too long for the context before any prompt is generated,
        so a list's fault is found before it costs model time and before a stream starts
        (a proper status, not an error event). The task may add a template around a
        completion's prompt: it checks the whole again, naming the prompt too."""
        from nlptasks.generating import DEFAULT_NEW_TOKENS

        if self.context is None:
            return
        # An encoder-decoder's new tokens are the decoder's: only the input must fit.
        new = 0 if self.encoder_decoder else settings.max_new_tokens or DEFAULT_NEW_TOKENS
        tokenizer = self.engine.predictor.tokenizer
        encoded = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
        for label, ids in zip(labels, encoded, strict=True):
            if len(ids) + new > self.context:
                total = f"; with max_tokens {new} that is {len(ids) + new}," if new else ","
                raise ApiError(
                    400,
                    f"{label} has {len(ids)} tokens{total} more than the model's context "
                    f"({self.context} tokens). Shorten it"
                    f"{' or ask for fewer max_tokens' if new else ''}.",
                    code="context_length_exceeded",
                    param=label.split("[")[0],
                )

    def complete(
        self,
        index: int,
        prompt: str,
        settings: GenerationConfig,
        stops: Sequence[str],
        send: Send | None,
        gone: threading.Event,
        label: str = "prompt",
    ) -> Choice:
        """``prompt``'s completion, as ``nlptasks predict`` gives it (runs on the model
        thread): the task's streamed text, or the text of its prediction. ``label``: how
        errors name the prompt (``prompt[3]`` in a list)."""
        predictor = self.engine.predictor
        writer = _Writer(index, stops, send, gone)
        with _Probe(predictor.model) as probe:
            try:
                found = predictor.predict(
                    [{self.fields[0]: prompt}], generation=settings, stream=writer.write
                )
            except _Halt:
                found = None
            except NlpTasksError as error:  # the task checks one record: "Input 1"
                named = str(error) if label == "prompt" else f"{label}: {error}"
                raise ApiError(400, named, code="invalid_prompt", param="prompt") from None
        if found is not None and not writer.streamed:  # a task that writes nothing
            writer.add(_prediction_text(found[0], self.fields))
        return self._choice(writer, probe, prompt, settings)

    def chat(
        self,
        prompt: str,
        settings: GenerationConfig,
        stops: Sequence[str],
        send: Send | None,
        gone: threading.Event,
    ) -> Choice:
        """The assistant's reply to the rendered conversation ``prompt`` (model thread)."""
        from nlptasks.generating import generate_texts
        from nlptasks.training import precision

        predictor = self.engine.predictor
        model, tokenizer = predictor.model, predictor.tokenizer
        writer = _Writer(0, stops, send, gone)
        with _Probe(model) as probe:
            try:
                with precision.inference(predictor.precision, model):
                    generate_texts(
                        model,
                        tokenizer,
                        [prompt],
                        settings,
                        1,
                        self.context,
                        add_special_tokens=False,  # the template wrote the special tokens
                        write=writer.write,
                    )
            except _Halt:
                pass
            except NlpTasksError as error:
                raise ApiError(400, str(error), code="invalid_prompt", param="messages") from None
        return self._choice(writer, probe, prompt, settings)

    def _choice(
        self, writer: _Writer, probe: _Probe, prompt: str, settings: GenerationConfig
    ) -> Choice:
        text = writer.finish()
        tokenizer = self.engine.predictor.tokenizer
        if probe.calls:  # what generate() itself saw and did
            prompt_tokens, new_tokens = probe.prompt_tokens, probe.steps
            limit = probe.max_new_tokens or settings.max_new_tokens
        else:  # a task that generates some other way: count the text
            prompt_tokens = len(tokenizer(prompt)["input_ids"])
            new_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            limit = settings.max_new_tokens
        length = not writer.scanner.stopped and limit is not None and new_tokens >= limit
        return Choice(text, "length" if length else "stop", prompt_tokens, new_tokens)

    # ----------------------------------------------------------------- responses
    async def respond(
        self,
        request: Request,
        parsed: GenerationRequest,
        job: Callable[[Send | None, threading.Event], list[Choice]],
        chat: bool,
    ) -> Response:
        """Run ``job`` on the model thread and answer with its choices, whole or streamed.
        ``--request-timeout`` bounds a whole answer, and a stream's wait for its first text
        (a long generation that is being streamed is not cut, unless the server is shutting
        down); a request that runs out of time, or whose client left, stops its generation
        at the next piece, or never starts it."""
        shape = _Shape(self.engine.model_name, chat)
        seconds = self.engine.settings.request_timeout_s
        if not parsed.stream:
            gone = threading.Event()
            work = asyncio.ensure_future(self.engine.run(job, None, gone))
            work.add_done_callback(_settled)
            try:
                choices = await _wait(request, work, gone, seconds)
            except _ClientGone:
                return Response(status_code=CLIENT_CLOSED)
            return JSONResponse(shape.whole(choices))
        stream = _Stream(self.engine, job)
        # Errors before the first text (a prompt too long for the context) still get a
        # proper 4xx answer; only later ones have to travel inside the event stream.
        first_text = asyncio.ensure_future(stream.next())
        try:
            first = await _wait(request, first_text, stream.gone, seconds)
        except _ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        finally:
            first_text.cancel()
        return StreamingResponse(
            _events(
                stream,
                first,
                shape,
                parsed.include_usage,
                lambda: self.shutting_down(request.app.state),
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


CLIENT_CLOSED = 499
"""The status logged and counted for a request whose client left before its answer (nginx's
convention); nobody receives it."""


async def _wait(
    request: Request, work: asyncio.Future[T], gone: threading.Event, seconds: float
) -> T:
    """``work``'s result. Meanwhile the client's connection is looked at every ``POLL_S``:
    when it closed, or ``seconds`` passed (504), ``gone`` is set, which ends the job's
    generation at its next piece (or before it starts) and skips its remaining prompts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise _timeout(seconds)
            done, _ = await asyncio.wait({work}, timeout=min(POLL_S, left))
            if done:
                return work.result()
            if await request.is_disconnected():
                raise _ClientGone
    except BaseException:
        gone.set()
        raise


def _timeout(seconds: float) -> ApiError:
    return ApiError(
        504,
        f"The generation did not finish within {seconds:g} s (nlptasks serve "
        f"--request-timeout); ask for fewer max_tokens, stream the answer, or retry later.",
        code="timeout",
    )


def _settled(future: asyncio.Future[Any]) -> None:
    """Take a finished job's outcome, so a request that stopped waiting for it leaves no
    'exception was never retrieved' in the log."""
    if not future.cancelled():
        future.exception()


class _Writer:
    """The write callback of one prompt's generation: cuts at stop strings, hands the text
    on, and tells a piece of the text from the line break that ends a record."""

    def __init__(
        self, index: int, stops: Sequence[str], send: Send | None, gone: threading.Event
    ) -> None:
        self.index, self.send, self.gone = index, send, gone
        self.scanner = StopScanner(stops)
        self.parts: list[str] = []
        self.streamed = False
        self.held = ""
        """A trailing line break: the end of the record (dropped) unless more text follows."""

    def write(self, piece: str) -> None:
        """Called on the model thread with each piece the task writes."""
        if self.gone.is_set():
            raise _Halt("the client went away")
        self.streamed = True
        text, self.held = self.held + piece, ""
        if text.endswith("\n"):  # the task ends each record with one: hold it
            text, self.held = text[:-1], "\n"
        self.add(text)
        if self.scanner.stopped:
            raise _Halt("a stop string")

    def add(self, text: str) -> None:
        self._out(self.scanner.feed(text))

    def finish(self) -> str:
        self._out(self.scanner.finish())
        return "".join(self.parts)

    def _out(self, text: str) -> None:
        if text:
            self.parts.append(text)
            if self.send is not None:
                self.send(self.index, text)


class _Probe:
    """What ``model.generate`` saw and did during one prediction: its prompt's tokens, its
    ``max_new_tokens`` and the decoding steps it ran (one forward pass per new token), for
    ``usage`` and ``finish_reason``. The task's text alone cannot tell them apart: decoding
    and re-encoding the text can merge tokens, and an EOS leaves no trace in the text."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls = 0
        self.steps = 0
        self.prompt_tokens = 0
        self.max_new_tokens: int | None = None

    def __enter__(self) -> _Probe:
        original = self.model.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            if mask is not None:
                self.prompt_tokens += int(mask.sum())
            elif ids is not None:
                self.prompt_tokens += int(ids.numel())
            self.max_new_tokens = kwargs.get("max_new_tokens")
            return original(*args, **kwargs)

        def step(module: Any, inputs: Any, output: Any) -> None:
            self.steps += 1

        self.hook = self.model.register_forward_hook(step)
        # Only this thread runs the model, so shadowing its method for one call is safe.
        self.own = vars(self.model).get("generate")  # a wrapper someone set on the instance
        self.model.generate = generate
        return self

    def __exit__(self, *exc: object) -> None:
        self.hook.remove()
        if self.own is not None:
            self.model.generate = self.own
        else:
            del self.model.generate


def _prediction_text(prediction: Mapping[str, Any], fields: Sequence[str]) -> str:
    """The generated text of a task's prediction: its first string that is not an input
    (translation: ``translation``)."""
    for key, value in prediction.items():
        if key not in fields and isinstance(value, str):
            return value
    raise PluginError(
        f"The task's prediction has no generated text (its keys: {', '.join(prediction)}); "
        f"its predict() must return the text under a key that is not an input field."
    )


class _Stream:
    """Text from the model thread to the event loop, as it is written."""

    def __init__(
        self, engine: Engine, job: Callable[[Send | None, threading.Event], list[Choice]]
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        self.gone = threading.Event()
        self.future = asyncio.ensure_future(engine.run(job, self.send, self.gone))
        self.future.add_done_callback(_settled)
        # Runs after every put the job scheduled: both go through the loop in order.
        self.future.add_done_callback(lambda _: self.queue.put_nowait(None))

    def send(self, index: int, text: str) -> None:
        """On the model thread: queue ``text``, or stop generating when nobody reads it."""
        if self.gone.is_set():
            raise _Halt("the client went away")
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, text))

    async def next(self) -> tuple[int, str] | None:
        """The next piece of text; None once the job has ended (its error raised here
        when nothing more came before it)."""
        item = await self.queue.get()
        if item is None and self.future.exception() is not None:
            raise self.future.exception()  # type: ignore[misc]
        return item


async def _events(
    stream: _Stream,
    first: tuple[int, str] | None,
    shape: _Shape,
    include_usage: bool,
    shutting_down: Callable[[], bool],
) -> AsyncIterator[str]:
    """The server-sent events of a streamed answer: a chunk per piece of text, a last chunk
    per choice with its finish_reason, the usage when asked for, then ``[DONE]``. An error
    after the first text, or a server shutting down, ends it with an OpenAI-shaped
    ``error`` event, then ``[DONE]``: never a torn stream."""
    try:
        if shape.chat:
            yield _event(shape.chunk(0, {"role": "assistant", "content": ""}))
        item = first
        while item is not None:
            yield _event(shape.chunk(*item))
            item = await _next_piece(stream, shutting_down)
        error = stream.future.exception()
        if error is not None:  # after text was sent: the status line is long gone
            status = error.status if isinstance(error, ApiError) else 500
            message = str(error) if isinstance(error, ApiError) else "generation failed"
            yield _event(error_body(status, message, "generation_failed"))
            yield "data: [DONE]\n\n"
            return
        choices = stream.future.result()
        for index, choice in enumerate(choices):
            yield _event(shape.chunk(index, None, choice.finish_reason))
        if include_usage:
            yield _event({**shape.head("chunk"), "choices": [], "usage": _usage(choices)})
        yield "data: [DONE]\n\n"
    except _ShuttingDown:
        stream.gone.set()  # the model thread stops at its next piece
        message = "The server is shutting down; this answer was cut short. Retry the request."
        yield _event(error_body(503, message, "server_shutting_down"))
        yield "data: [DONE]\n\n"
    finally:
        stream.gone.set()  # a client that left stops the generation at its next piece


async def _next_piece(stream: _Stream, shutting_down: Callable[[], bool]) -> tuple[int, str] | None:
    """The stream's next piece (None: the job ended); raises ``_ShuttingDown`` once the
    server has drained for too long, looked at between pieces and every ``POLL_S``."""
    while True:
        if shutting_down():
            raise _ShuttingDown
        if not stream.queue.empty():
            return stream.queue.get_nowait()
        try:
            return await asyncio.wait_for(stream.queue.get(), POLL_S)
        except asyncio.TimeoutError:
            continue


def _event(data: Mapping[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _usage(choices: Sequence[Choice]) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in choices)
    completion = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _Shape:
    """OpenAI's response objects: completions or chat completions, whole or in chunks."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model, self.chat = model, chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def head(self, kind: str) -> dict[str, Any]:
        if self.chat:
            name = "chat.completion.chunk" if kind == "chunk" else "chat.completion"
        else:
            name = "text_completion"
        return {
            "id": self.id,
            "object": name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def whole(self, choices: Sequence[Choice]) -> dict[str, Any]:
        listed = []
        for index, choice in enumerate(choices):
            item: dict[str, Any] = {"index": index}
            if self.chat:
                item["message"] = {"role": "assistant", "content": choice.text}
            else:
                item["text"] = choice.text
            listed.append({**item, "logprobs": None, "finish_reason": choice.finish_reason})
        return {**self.head("whole"), "choices": listed, "usage": _usage(choices)}

    def chunk(
        self, index: int, text: str | Mapping[str, Any] | None, finish: str | None = None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index}
        if self.chat:
            item["delta"] = (
                dict(text)
                if isinstance(text, Mapping)
                else {}
                if text is None
                else {"content": text}
            )
        else:
            item["text"] = "" if text is None else text
        item.update(logprobs=None, finish_reason=finish)
        return {**self.head("chunk"), "choices": [item]}
