"""The OpenAI-compatible endpoints of ``nlptasks serve``: the real server on a loopback port,
the official ``openai`` client and httpx. A completion is what ``nlptasks predict`` prints
for the same prompt and settings; a one-message chat is ``predict`` with ``options.chat``."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from nlptasks.cli import cli
from nlptasks.testing import DEFAULT_TEXTS, make_tiny_gpt2
from tests.serve_helpers import Server, start_server

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROMPTS = ["a gripping , funny", "the plot is dull and"]
NAME = "tiny-lm"
SAMPLED: dict[str, Any] = {"temperature": 1.5, "seed": 7}
"""Seeded sampling: varied text from a random model, and the same text every time."""


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 whose tokenizer has a chat template (saved with the model)."""
    from transformers import AutoTokenizer

    folder = make_tiny_gpt2(tmp_path_factory.mktemp("chat-gpt2"), DEFAULT_TEXTS, dropout=0)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bare_lm(lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model, its tokenizer without a chat template (as fine-tuning leaves a
    base model's)."""
    folder = tmp_path_factory.mktemp("bare-gpt2") / "model"
    shutil.copytree(lm, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def server(lm: Path) -> Iterator[Server]:
    with start_server(lm, "--task", "generation", "--model-name", NAME) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)


def predict(task: str, model: Path, prompt: str, *flags: str) -> dict[str, Any]:
    """What ``nlptasks predict`` prints for one prompt (JSON: not a terminal)."""
    result = CliRunner().invoke(cli, ["predict", task, "--model", str(model), prompt, *flags])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError, match=f"serves '{NAME}'"):
        client.models.retrieve("gpt-4o")


def test_completions_equal_predict(client: openai.OpenAI, lm: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lm)
    expected = [
        predict("generation", lm, p, "--greedy", "--max-new-tokens", "12")["generated_text"]
        for p in PROMPTS
    ]
    one = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=12, temperature=0)
    assert one.choices[0].text == expected[0]
    assert one.choices[0].finish_reason == "length"  # 12 tokens, no EOS from a random model
    prompt_tokens = len(tokenizer(PROMPTS[0])["input_ids"])
    assert one.usage is not None
    assert (one.usage.prompt_tokens, one.usage.completion_tokens) == (prompt_tokens, 12)
    assert one.usage.total_tokens == prompt_tokens + 12
    both = client.completions.create(model=NAME, prompt=PROMPTS, max_tokens=12, temperature=0)
    assert [c.text for c in both.choices] == expected
    assert [c.index for c in both.choices] == [0, 1]
    # Seeded sampling is predict's too: the same settings give the same text.
    sampled = client.completions.create(model=NAME, prompt=PROMPTS[1], max_tokens=12, **SAMPLED)
    flags = ("--temperature", "1.5", "--seed", "7", "--max-new-tokens", "12")
    assert (
        sampled.choices[0].text == predict("generation", lm, PROMPTS[1], *flags)["generated_text"]
    )


def test_a_one_message_chat_equals_predict_with_options_chat(
    client: openai.OpenAI, lm: Path
) -> None:
    reply = client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": PROMPTS[0]}],
        max_tokens=10,
        temperature=0,
    )
    flags = ("--greedy", "--max-new-tokens", "10", "--set", "options.chat=true")
    expected = predict("generation", lm, PROMPTS[0], *flags)["generated_text"]
    assert reply.choices[0].message.content == expected and expected
    assert reply.choices[0].message.role == "assistant"
    # The template's tokens count as prompt: <|im_start|>user ... <|im_start|>assistant.
    assert reply.usage is not None and reply.usage.prompt_tokens > len(PROMPTS[0].split())
    # Content as text parts, and a system turn, go through the template too.
    parts = client.chat.completions.create(
        model=NAME,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": PROMPTS[0]}]},
        ],
        max_tokens=10,
        temperature=0,
    )
    assert parts.choices[0].message.content  # another prompt: only that it answers


def test_streams_reassemble_to_the_whole_text(client: openai.OpenAI) -> None:
    for decoding in ({"temperature": 0}, SAMPLED):
        whole = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=16, **decoding)
        chunks = list(
            client.completions.create(
                model=NAME,
                prompt=PROMPTS[0],
                max_tokens=16,
                stream=True,
                stream_options={"include_usage": True},
                **decoding,
            )
        )
        pieces = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
        assert "".join(pieces) == whole.choices[0].text
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
        if decoding["temperature"] == 0:  # words (the random model's are " film")
            assert len(pieces) > 1  # it came in pieces, as generated

    messages: Any = [{"role": "user", "content": PROMPTS[1]}]
    for decoding in ({"temperature": 0}, SAMPLED):
        reply = client.chat.completions.create(
            model=NAME, messages=messages, max_tokens=16, **decoding
        )
        stream = client.chat.completions.create(
            model=NAME, messages=messages, max_tokens=16, stream=True, **decoding
        )
        events = list(stream)
        assert events[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in events)
        assert text == reply.choices[0].message.content
        assert events[-1].choices[0].finish_reason == reply.choices[0].finish_reason


def test_stop_cuts_the_text_and_ends_generating(client: openai.OpenAI, server: Server) -> None:
    full = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=30, temperature=0)
    text = full.choices[0].text
    # The random model writes " funny funny ...", a piece per word: "y f" spans two pieces,
    # so the writer must hold back the "y" of a piece until the next piece settles it.
    straddling = re.search(r"\S \S", text[len(text) // 3 :])
    assert straddling is not None, text
    stop = straddling.group()
    expected = text[: text.index(stop)]
    for stream in (False, True):
        found = client.completions.create(
            model=NAME,
            prompt=PROMPTS[0],
            max_tokens=30,
            temperature=0,
            stop=[stop, "never seen"],
            stream=stream,
            stream_options={"include_usage": True} if stream else None,
        )
        chunks: list[Any] = list(found) if stream else [found]
        assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens < 30  # generation ended early
    # The raw stream: OpenAI's event lines, ending with [DONE].
    body = {"model": NAME, "prompt": PROMPTS[1], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "text_completion"


@pytest.mark.parametrize(
    ("pieces", "stops", "sent", "stopped"),
    [
        (["ab", "c", "d"], ["bc"], ["a", "", ""], True),  # across two pieces
        (["a", "b", "x", "y"], ["bc"], ["a", "", "bx", "y"], False),  # a false start
        (["xab", "cab", "cd"], ["abcd", "b"], ["xa", "", ""], True),  # the earliest wins
        (["hello wor", "ld"], ["world!"], ["hello ", ""], False),  # held to the end
    ],
)
def test_the_stop_scanner_holds_back_what_could_start_a_stop(
    pieces: list[str], stops: list[str], sent: list[str], stopped: bool
) -> None:
    from nlptasks.serving.stops import StopScanner

    scanner = StopScanner(stops)
    assert [scanner.feed(p) for p in pieces] == sent
    assert scanner.stopped is stopped
    # What was sent and what the end releases is the text cut at the first stop.
    text = "".join(pieces)
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    assert "".join(sent) + scanner.finish() == text[:cut]


def test_a_seed_repeats_its_text(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        found = client.completions.create(
            model=NAME, prompt=PROMPTS[0], max_tokens=16, temperature=1.5, seed=seed
        )
        return found.choices[0].text

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


@pytest.mark.parametrize(
    ("kind", "request_args", "error", "message"),
    [
        ("completions", {"max_tokens": 0}, openai.BadRequestError, "'max_tokens' must be at"),
        ("completions", {"max_tokens": 500}, openai.BadRequestError, "context length is 128"),
        ("completions", {"temperature": 2.5}, openai.BadRequestError, "between 0 and 2"),
        ("completions", {"top_p": 0}, openai.BadRequestError, "'top_p' must be above 0"),
        ("completions", {"n": 2}, openai.BadRequestError, "'n' is not supported"),
        ("completions", {"stop": list("abcde")}, openai.BadRequestError, "at most 4"),
        ("completions", {"echo": True}, openai.BadRequestError, "'echo' is not supported"),
        ("completions", {"prompt": [1, 2]}, openai.BadRequestError, "token ids are not"),
        ("completions", {"model": "gpt-4o"}, openai.NotFoundError, f"serves '{NAME}'"),
        ("completions", {"prompt": "x" * 40_000}, openai.APIStatusError, "--max-record-chars"),
        ("completions", {"extra_body": {"best_of": 3}}, openai.BadRequestError, "'best_of'"),
        ("completions", {"extra_body": {"foo": 1}}, openai.BadRequestError, "argument 'foo'"),
        ("completions", {"prompt": ["a"] * 257}, openai.APIStatusError, "at most 256 per"),
        # Every prompt is measured before the first is generated: a proper 400 naming it.
        (
            "completions",
            {"prompt": ["a", "a " * 100], "max_tokens": 60, "stream": True},
            openai.BadRequestError,
            r"prompt\[1\] has \d+ tokens; with max_tokens 60",
        ),
        # Found before the first token, so a stream gets a proper status, not a broken stream.
        (
            "completions",
            {"prompt": "a " * 100, "max_tokens": 60, "stream": True},
            openai.BadRequestError,
            "more than the model's context",
        ),
        ("chat", {"messages": []}, openai.BadRequestError, "'messages' is empty"),
        (
            "chat",
            {"messages": [{"role": "robot", "content": "hi"}]},
            openai.BadRequestError,
            "messages\\[0\\].role is 'robot'",
        ),  # fmt: skip
        (
            "chat",
            {"messages": [{"role": "user", "content": "hi", "name": "bob"}]},
            openai.BadRequestError,
            "messages\\[0\\].name is not supported",
        ),
        ("chat", {"seed": -1}, openai.BadRequestError, "'seed' must be in"),
        (
            "chat",
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            openai.BadRequestError,
            "'tools' is not supported",
        ),  # fmt: skip
    ],
)
def test_bad_requests_raise_the_clients_typed_errors(
    client: openai.OpenAI,
    kind: str,
    request_args: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    arguments: dict[str, Any] = {"model": NAME, "max_tokens": 4, **request_args}
    with pytest.raises(error, match=message) as raised:
        if kind == "chat":
            arguments.setdefault("messages", [{"role": "user", "content": "hi"}])
            list(client.chat.completions.create(**arguments))
        else:
            arguments.setdefault("prompt", PROMPTS[0])
            found = client.completions.create(**arguments)
            list(found) if arguments.get("stream") else None
    assert isinstance(raised.value, openai.APIStatusError)
    assert 400 <= raised.value.status_code < 500
    # And the server keeps serving.
    assert client.completions.create(model=NAME, prompt="a", max_tokens=1).choices


def test_unsupported_fields_at_their_defaults_are_accepted(client: openai.OpenAI) -> None:
    """Clients send OpenAI's defaults for fields we do not implement: those pass (an
    integral float too, as for max_tokens), and so does a temperature too small to divide
    by (greedy, as 0)."""
    defaults: dict[str, Any] = {
        "n": 1.0, "echo": False, "logprobs": None, "frequency_penalty": 0,
        "presence_penalty": 0, "best_of": 1, "user": "someone",
    }  # fmt: skip
    plain = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=5, temperature=0)
    found = client.completions.create(
        model=NAME, prompt=PROMPTS[0], max_tokens=5.0, temperature=0, **defaults
    )
    assert found.choices[0].text == plain.choices[0].text
    tiny = client.completions.create(
        model=NAME, prompt=PROMPTS[0], max_tokens=5, temperature=5e-324
    )
    assert tiny.choices[0].text == plain.choices[0].text
    # A reply's message sent back as history carries OpenAI's null fields.
    earlier = {"role": "assistant", "content": "ok", "refusal": None, "tool_calls": None}
    chat = client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": "hi"}, earlier, {"role": "user", "content": "hi"}],
        max_completion_tokens=5,
        logprobs=False,
        response_format={"type": "text"},
        tool_choice="none",
        frequency_penalty=0,
    )
    assert chat.usage is not None and chat.usage.completion_tokens == 5


def test_missing_fields_and_bad_json_are_400(server: Server) -> None:
    url = f"{server.url}/v1"
    user: dict[str, Any] = {"role": "user", "content": "hi"}
    cases = [
        ("completions", {"model": NAME}, "'prompt' is missing"),
        ("chat/completions", {"model": NAME}, "'messages' is missing"),
        ("completions", {"prompt": "a", "stream": "yes"}, "'stream' must be true or false"),
        ("chat/completions", {"messages": [{"role": "user", "content": 3}]}, "content must be"),
        # Lone surrogates (JSON's "\ud800") reach no tokenizer: a 400 naming the field.
        ("completions", {"prompt": "a\ud800"}, "prompt is not valid Unicode"),
        ("completions", {"prompt": ["a", "b\udfff"]}, "prompt[1] is not valid Unicode"),
        ("completions", {"prompt": "a", "model": "\ud800"}, "model is not valid Unicode"),
        ("completions", {"prompt": "a", "\ud800": 1}, "A key of the body is not valid"),
        (
            "chat/completions",
            {"messages": [user, {"role": "user", "content": "\ud800"}]},
            "messages[1].content is not valid Unicode",
        ),
        ("completions", {"prompt": "a", "max_tokens": 1e300}, "(301 digits)"),
    ]
    for path, body, message in cases:
        # ASCII JSON with \u escapes: what a client sends for a lone surrogate.
        answer = httpx.post(f"{url}/{path}", content=json.dumps(body), timeout=30)
        assert answer.status_code == 400, answer.text
        assert message in answer.json()["error"]["message"]
        assert len(answer.text) < 600  # 1e300 is not echoed as 301 digits
    for broken in (b"{not json", b"[" * 100_000, b'{"seed": ' + b"1" * 5000 + b"}"):
        answer = httpx.post(f"{url}/completions", content=broken, timeout=30)
        assert answer.status_code == 400, answer.text
        assert "not valid JSON" in answer.json()["error"]["message"]


def test_prompted_translation_completes_as_predict_translates(lm: Path) -> None:
    settings = ["--set", "options.source_lang=en", "--set", "options.target_lang=ro"]
    with start_server(lm, "--task", "translation", *settings) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        model = client.models.list().data[0].id
        answer = client.completions.create(
            model=model, prompt=PROMPTS[0], max_tokens=6, temperature=0
        )
        streamed = client.completions.create(
            model=model, prompt=PROMPTS[0], max_tokens=6, temperature=0, stream=True
        )
        pieces = "".join(c.choices[0].text for c in streamed)
    expected = predict(
        "translation", lm, PROMPTS[0], *settings, "--greedy", "--max-new-tokens", "6"
    )
    assert answer.choices[0].text == expected["translation"] == pieces
    assert expected["translation"]  # a random model's tokens, but some


def test_a_classifier_has_no_completions(tiny_bert: Path) -> None:
    with start_server(tiny_bert, "--task", "sentiment", "--allow-untrained-head") as running:
        answer = httpx.post(f"{running.url}/v1/completions", json={"prompt": "a film"}, timeout=30)
        assert answer.status_code == 404
        assert "/v1/predict" in answer.json()["error"]["message"]
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="/v1/predict"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_a_reader_that_leaves_stops_the_generation(lm: Path) -> None:
    """The model thread's write callback raises once the stream's reader is gone: the
    generation ends at the next piece instead of running to max_tokens."""
    import threading

    from nlptasks.recipes.schema import GenerationConfig
    from nlptasks.serving.engine import load_engine
    from nlptasks.serving.openai_api import _Service
    from nlptasks.serving.settings import ServeSettings

    engine = load_engine(str(lm), "generation", ServeSettings())
    try:
        service = _Service(engine)
        gone, sent = threading.Event(), []

        def send(index: int, text: str) -> None:
            sent.append(text)
            gone.set()  # the client leaves once it has the first piece

        settings = GenerationConfig(max_new_tokens=40)
        left = service.complete(0, PROMPTS[0], settings, (), send, gone)
        assert len(sent) == 1 and left.text == sent[0]
        assert left.completion_tokens <= 3  # not 40: it stopped at the next piece
        stayed = service.complete(0, PROMPTS[0], settings, (), None, threading.Event())
        assert stayed.completion_tokens == 40 and stayed.text.startswith(sent[0])
    finally:
        engine.close()


def test_a_client_that_leaves_frees_the_model(server: Server) -> None:
    """A list of 256 prompts, abandoned after its first event (streamed) or while waiting
    (whole): the next request is answered at once, not after the whole list. The stream's
    end sets the job's ``gone``; the waiting request polls its connection and sets it."""
    url = f"{server.url}/v1/completions"
    many: dict[str, Any] = {"model": NAME, "prompt": ["a"] * 256, "max_tokens": 100}
    started = time.monotonic()
    eight = httpx.post(url, json={**many, "prompt": ["a"] * 8}, timeout=60)
    assert eight.json()["usage"]["completion_tokens"] == 800
    whole = (time.monotonic() - started) * 32  # what the 256 prompts cost the model
    for stream in (True, False):
        if stream:
            with httpx.stream("POST", url, json={**many, "stream": True}, timeout=60) as answer:
                first = next(line for line in answer.iter_lines() if line)
                assert first.startswith("data: {")
            # Leaving the block closes the connection with the rest unread.
        else:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(url, json=many, timeout=httpx.Timeout(60, read=0.5))
        left = time.monotonic()
        next_one = httpx.post(url, json={"model": NAME, "prompt": "a", "max_tokens": 1}, timeout=60)
        waited = time.monotonic() - left
        assert next_one.status_code == 200, next_one.text
        assert waited < min(5.0, whole / 4), (stream, waited, whole)


def test_a_model_without_a_chat_template_chats_as_trained_and_sigterm_ends_streams(
    bare_lm: Path,
) -> None:
    """Chat without a template renders the ``role: content`` lines fine-tuning trained on.
    And SIGTERM during a stream longer than the grace period: after --request-timeout the
    stream ends with an error event and [DONE], never torn, and the server exits 0."""
    with start_server(bare_lm, "--task", "generation", "--request-timeout", "1") as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        greedy: dict[str, Any] = {"model": "model", "max_tokens": 8, "temperature": 0}
        reply = client.chat.completions.create(
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            **greedy,
        )
        rendered = client.completions.create(
            prompt="system: be brief\nuser: hi\nassistant: ", **greedy
        )
        assert reply.choices[0].message.content == rendered.choices[0].text
        assert rendered.choices[0].text  # a random model's words, but some

        body = {"prompt": ["a"] * 200, "max_tokens": 100, "stream": True, "temperature": 0}
        url = f"{running.url}/v1/completions"
        with httpx.stream("POST", url, json=body, timeout=30) as answer:
            lines = answer.iter_lines()
            assert next(line for line in lines if line).startswith("data: {")
            running.signal(signal.SIGTERM)
            signalled = time.monotonic()
            rest = [line for line in lines if line]
        ended = time.monotonic() - signalled
        assert rest[-1] == "data: [DONE]"
        error = json.loads(rest[-2].removeprefix("data: "))["error"]
        assert "shutting down" in error["message"], error
        # Halted after --request-timeout (1 s), before uvicorn's grace (1 + 5 s) ran out:
        # the 20,000 tokens asked for would take far longer.
        assert 0.9 <= ended < 6, ended
        assert running.wait(30) == 0
