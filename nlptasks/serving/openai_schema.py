"""The OpenAI request bodies ``/v1/completions`` and ``/v1/chat/completions`` accept, read
by hand rather than by a pydantic model: every mistake becomes one ``ApiError`` that names
the field and the fix in OpenAI's error shape (so the ``openai`` client raises
``BadRequestError`` with our message), and OpenAI's optional fields that we do not support
are accepted at their default value (clients send ``"logprobs": null`` or
``"frequency_penalty": 0``) but refused with any other value, never silently ignored."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nlptasks.recipes.schema import SEED_RANGE, GenerationConfig
from nlptasks.serving.errors import ApiError

MAX_STOPS = 4
"""Stop strings per request at most (OpenAI's limit)."""

ROLES = ("system", "user", "assistant")

GREEDY_BELOW = 1e-5
"""A temperature below this decodes greedily, as 0 does: dividing the logits by a
temperature near zero overflows them to inf (``5e-324``: a RuntimeError inside sampling),
and sampling that cold picks the most likely token anyway."""


def _is_none(value: Any) -> bool:
    return value is None


def _is_zero(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and value == 0)


def _is_one(value: Any) -> bool:
    """None or 1, written ``1`` or ``1.0`` (integral floats count as integers everywhere)."""
    return value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1
    )


def _is_false(value: Any) -> bool:
    return value is None or value is False


def _is_empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _is_text_format(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and dict(value) == {"type": "text"})


def _no_tool(value: Any) -> bool:
    return value is None or value == "none"


def _anything(value: Any) -> bool:
    return True


Unsupported = dict[str, tuple[Callable[[Any], bool], str]]
"""Field -> (accepts this value, what is accepted): OpenAI fields we do not implement."""

_COMMON: Unsupported = {
    "n": (_is_one, "1 (one choice per request)"),
    "frequency_penalty": (_is_zero, "0"),
    "presence_penalty": (_is_zero, "0"),
    "logit_bias": (_is_empty, "null"),
    "user": (_anything, "any string (ignored)"),
    "service_tier": (_anything, "anything (ignored)"),
    "metadata": (_anything, "anything (ignored)"),
    "store": (_is_false, "false"),
}
COMPLETION_UNSUPPORTED: Unsupported = {
    **_COMMON,
    "echo": (_is_false, "false (the prompt is not repeated)"),
    "best_of": (_is_one, "1"),
    "logprobs": (_is_none, "null (no log-probabilities)"),
    "suffix": (_is_none, "null (no insertion)"),
}
CHAT_UNSUPPORTED: Unsupported = {
    **_COMMON,
    "logprobs": (_is_false, "false (no log-probabilities)"),
    "top_logprobs": (_is_none, "null"),
    "response_format": (_is_text_format, '{"type": "text"}'),
    "tools": (_is_empty, "null (no tool calls)"),
    "tool_choice": (_no_tool, '"none"'),
    "parallel_tool_calls": (_anything, "anything (ignored: no tools)"),
    "functions": (_is_empty, "null (no function calls)"),
    "function_call": (_no_tool, '"none"'),
    "modalities": (_anything, "anything (ignored: text only)"),
    "reasoning_effort": (_is_none, "null"),
}
MESSAGE_DEFAULTS: Unsupported = {
    "name": (_is_none, "null (the chat template gets role and content only)"),
    "refusal": (_is_none, "null"),
    "tool_calls": (_is_empty, "null (no tool calls)"),
    "function_call": (_is_none, "null (no function calls)"),
    "audio": (_is_none, "null (text only)"),
    "annotations": (_is_empty, "null"),
}
"""Message fields besides role and content, accepted at their default only: a client that
sends back an earlier reply's message object sends them as null."""

_SUPPORTED = (
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "stream",
    "stream_options",
)


@dataclass(frozen=True)
class Sampling:
    """What a request asks of decoding; ``None``: the recipe's setting."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None

    def settings(self, recipe: GenerationConfig) -> GenerationConfig:
        """The recipe's generation settings with this request's values over them. Like
        ``nlptasks predict``'s flags: a temperature or top_p turns sampling on, except
        temperature 0, which means greedy (OpenAI's convention), and so does any temperature
        below ``GREEDY_BELOW`` (1e-5), which would overflow the logits."""
        settings = dataclasses.replace(recipe)
        if self.max_tokens is not None:
            settings.max_new_tokens = self.max_tokens
        if self.top_p is not None:
            settings.top_p = self.top_p
            settings.do_sample = True
        if self.temperature is not None:
            settings.do_sample = self.temperature >= GREEDY_BELOW
            if settings.do_sample:
                settings.temperature = self.temperature
        if self.seed is not None:
            settings.seed = self.seed
        problems = settings.problems()
        if problems:  # the request's values were checked: a recipe value is to blame
            raise ApiError(400, f"The generation settings cannot work: {'; '.join(problems)}.")
        return settings


@dataclass(frozen=True)
class GenerationRequest:
    """The fields every generating request shares."""

    model: str | None
    sampling: Sampling
    stops: tuple[str, ...]
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class CompletionRequest(GenerationRequest):
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class ChatRequest(GenerationRequest):
    messages: tuple[dict[str, str], ...]


def parse_completion(body: Any, max_chars: int, max_prompts: int) -> CompletionRequest:
    """A ``/v1/completions`` body, checked; ``max_chars``: characters per prompt at most;
    ``max_prompts``: prompts in a list at most (``--max-records``, as ``/v1/predict``)."""
    fields = _object(body, ("prompt",), COMPLETION_UNSUPPORTED)
    prompt = fields.get("prompt")
    if prompt is None:
        raise ApiError(
            400, "'prompt' is missing; give the text to complete.", code="missing", param="prompt"
        )
    if isinstance(prompt, str):
        prompts: tuple[str, ...] = (prompt,)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = tuple(prompt)
    elif isinstance(prompt, list) and not prompt:
        raise ApiError(
            400, "'prompt' is an empty list; give a string or a list of strings.", param="prompt"
        )
    else:
        raise ApiError(
            400,
            f"'prompt' must be a string or a list of strings, not {_kind(prompt)} (token ids "
            f"are not accepted: send text).",
            code="invalid_type",
            param="prompt",
        )
    if len(prompts) > max_prompts:
        raise ApiError(
            413,
            f"'prompt' is a list of {len(prompts)} prompts; this server takes at most "
            f"{max_prompts} per request (nlptasks serve --max-records). Split it.",
            code="too_many_records",
            param="prompt",
        )
    for number, text in enumerate(prompts):
        if not text:
            raise ApiError(400, f"prompt[{number}] is empty; give it text.", param="prompt")
        _check_length(len(text), max_chars, "prompt" if len(prompts) == 1 else f"prompt[{number}]")
    return CompletionRequest(**_common(fields), prompts=prompts)


def parse_chat(body: Any, max_chars: int) -> ChatRequest:
    """A ``/v1/chat/completions`` body, checked; ``max_chars``: characters of all the
    messages' contents together at most."""
    fields = _object(body, ("messages", "max_completion_tokens"), CHAT_UNSUPPORTED)
    if fields.get("max_completion_tokens") is not None:
        if fields.get("max_tokens") is not None:
            raise ApiError(
                400,
                "Give max_tokens or max_completion_tokens, not both.",
                param="max_completion_tokens",
            )
        fields["max_tokens"] = fields["max_completion_tokens"]
    found = fields.get("messages")
    if found is None:
        raise ApiError(
            400,
            "'messages' is missing; give a list of {role, content} messages.",
            code="missing",
            param="messages",
        )
    if not isinstance(found, list):
        raise ApiError(
            400,
            f"'messages' must be a list of {{role, content}} objects, not {_kind(found)}.",
            code="invalid_type",
            param="messages",
        )
    if not found:
        raise ApiError(
            400, "'messages' is empty; give at least one user message.", param="messages"
        )
    messages = tuple(_message(m, f"messages[{i}]") for i, m in enumerate(found))
    _check_length(sum(len(m["content"]) for m in messages), max_chars, "messages")
    return ChatRequest(**_common(fields), messages=messages)


def _object(body: Any, own: tuple[str, ...], unsupported: Unsupported) -> dict[str, Any]:
    """The body as a dict, every field known and every unsupported one at its default."""
    if not isinstance(body, Mapping):
        raise ApiError(
            400, f"The request body must be a JSON object, not {_kind(body)}.", code="invalid_type"
        )
    fields = dict(body)
    for name, value in fields.items():
        if name in unsupported:
            accepts, accepted = unsupported[name]
            if not accepts(value):
                raise ApiError(
                    400,
                    f"'{name}' is not supported with value {value!r}; give {accepted} or "
                    f"leave it out.",
                    code="unsupported_parameter",
                    param=name,
                )
        elif name not in own and name not in _SUPPORTED:
            raise ApiError(
                400,
                f"Unrecognized request argument '{name}'; the accepted fields are "
                f"{', '.join((*own, *_SUPPORTED))}.",
                code="unknown_parameter",
                param=name,
            )
    return fields


def _common(fields: Mapping[str, Any]) -> dict[str, Any]:
    model = fields.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(
            400,
            f"'model' must be a string, not {_kind(model)}.",
            code="invalid_type",
            param="model",
        )
    max_tokens = _integer(fields.get("max_tokens"), "max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise ApiError(
            400, f"'max_tokens' must be at least 1, not {shown(max_tokens)}.", param="max_tokens"
        )
    temperature = _number(fields.get("temperature"), "temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise ApiError(
            400, f"'temperature' must be between 0 and 2, not {temperature}.", param="temperature"
        )
    top_p = _number(fields.get("top_p"), "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise ApiError(400, f"'top_p' must be above 0 and at most 1, not {top_p}.", param="top_p")
    seed = _integer(fields.get("seed"), "seed")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ApiError(
            400,
            f"'seed' must be in {SEED_RANGE[0]}..{SEED_RANGE[1]}, not {shown(seed)}.",
            param="seed",
        )
    stream = fields.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(
            400,
            f"'stream' must be true or false, not {_kind(stream)}.",
            code="invalid_type",
            param="stream",
        )
    options = fields.get("stream_options")
    if options is not None and (
        not isinstance(options, Mapping)
        or set(options) - {"include_usage"}
        or not isinstance(options.get("include_usage", False), bool)
    ):
        raise ApiError(
            400,
            "'stream_options' may only hold include_usage (true or false).",
            param="stream_options",
        )
    if options is not None and not stream:
        raise ApiError(
            400, "'stream_options' is only allowed with stream: true.", param="stream_options"
        )
    return {
        "model": model,
        "sampling": Sampling(max_tokens, temperature, top_p, seed),
        "stops": _stops(fields.get("stop")),
        "stream": bool(stream),
        "include_usage": bool(options and options.get("include_usage")),
    }


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ApiError(
            400,
            f"'stop' must be a string or a list of strings, not {_kind(value)}.",
            code="invalid_type",
            param="stop",
        )
    if len(stops) > MAX_STOPS:
        raise ApiError(
            400, f"'stop' has {len(stops)} strings; give at most {MAX_STOPS}.", param="stop"
        )
    if any(not s for s in stops):
        raise ApiError(400, "'stop' holds an empty string; give non-empty strings.", param="stop")
    return tuple(stops)


def _message(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ApiError(
            400,
            f"{where} must be an object with role and content, not {_kind(value)}.",
            code="invalid_type",
            param=where,
        )
    role = value.get("role")
    if role not in ROLES:
        raise ApiError(
            400,
            f"{where}.role is {role!r}; give one of {', '.join(ROLES)} (tools are not supported).",
            param=f"{where}.role",
        )
    for name, field in value.items():
        if name in ("role", "content"):
            continue
        accepts, accepted = MESSAGE_DEFAULTS.get(name, (_is_none, "nothing: leave it out"))
        if not accepts(field):
            raise ApiError(
                400,
                f"{where}.{name} is not supported with value {_kind(field)}; give {accepted}. "
                f"A message is {{role, content}}.",
                code="unsupported_parameter",
                param=f"{where}.{name}",
            )
    content = value.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for number, part in enumerate(content):
            if not (
                isinstance(part, Mapping)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            ):
                raise ApiError(
                    400,
                    f"{where}.content[{number}] must be a text part "
                    f'({{"type": "text", "text": "..."}}); only text is supported.',
                    param=f"{where}.content",
                )
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise ApiError(
            400,
            f"{where}.content must be a string or a list of text parts, not {_kind(content)}.",
            code="invalid_type",
            param=f"{where}.content",
        )
    return {"role": str(role), "content": content}


def _integer(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(
            400,
            f"'{name}' must be an integer, not {_kind(value)}.",
            code="invalid_type",
            param=name,
        )
    return value


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ApiError(
            400, f"'{name}' must be a number, not {_kind(value)}.", code="invalid_type", param=name
        )
    return float(value)


def shown(number: int) -> str:
    """An integer as an error message shows it: a client's ``1e300`` is not echoed as 301
    digits."""
    text = str(number)
    return text if len(text) <= 20 else f"{text[:3]}... ({len(text)} digits)"


def check_unicode(body: Any) -> None:
    """Refuse a body holding a string that is not valid Unicode (JSON's ``"\ud800"``: a lone
    surrogate, which no tokenizer or UTF-8 answer can carry), naming where it is. The body
    is walked in order without recursion: a deeply nested body must not overflow the stack."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            _check_text(value, where or "The body")
        elif isinstance(value, Mapping):
            items = []
            for key, item in value.items():
                _check_text(str(key), f"A key of {where or 'the body'}")
                items.append((f"{where}.{key}" if where else str(key), item))
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", value[i]) for i in reversed(range(len(value))))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        field = where.split("[")[0].split(".")[0]
        raise ApiError(
            400,
            f"{where} is not valid Unicode: it holds the lone surrogate "
            f"{ascii(text[error.start])}. Send UTF-8 text (pair the surrogate or drop it).",
            code="invalid_unicode",
            param=field if field in _FIELDS else None,
        ) from None


_FIELDS = frozenset(("prompt", "messages", "model", "stop", "user", *_SUPPORTED))


def _check_length(chars: int, limit: int, where: str) -> None:
    if chars > limit:
        raise ApiError(
            413,
            f"{where} has {chars} characters, more than this server's limit of {limit} "
            f"(--max-record-chars); shorten it.",
            code="too_long",
            param=where.split("[")[0],
        )


def _kind(value: Any) -> str:
    """How a JSON value reads in a message: its JSON type and a short repr."""
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    kind = names.get(type(value), type(value).__name__)
    shown = repr(value)
    return kind if len(shown) > 40 or value is None else f"{kind} ({shown})"
