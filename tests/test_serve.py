"""``nlptasks serve``: real server processes on free loopback ports, real HTTP (httpx).

Served predictions equal ``nlptasks predict``'s for the four built-in tasks and the NER
example; concurrent requests are batched; bad requests get a 4xx JSON error naming the
problem and the server keeps answering; the API key is enforced; SIGTERM drains; bad command
lines are one-line errors; ``nlptasks.serve`` builds an app a TestClient mounts.

Tiny models only: the BERT-based tasks train for one or two steps in-process (seconds), the
generating ones use the tiny GPT-2 and BART as they are, 4 new tokens.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nlptasks.testing.processes import nlptasks_command, offline_env
from nlptasks.testing.tiny_datasets import tiny_dataset
from tests.serve_helpers import Server, start_server

REPO = Path(__file__).resolve().parent.parent
NER_SOURCE = REPO / "examples" / "nlptasks-ner"
KEY = "test-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
DECODING = {
    "generation": ("--set", "generation.max_new_tokens=4", "--set", "generation.do_sample=false"),
    # The untrained BART ends at once when greedy; seeded sampling writes text.
    "translation": ("--set", "generation.max_new_tokens=4", "--set", "generation.do_sample=true",
                    "--set", "generation.seed=1"),
}  # fmt: skip
"""Greedy or seeded decoding, 4 new tokens: for both the server and nlptasks predict."""

NER_RECORDS = [{"text": "Lucy Grant flew to Lagos ."}, {"text": "Acme hired Tom in Paris ."}]


# ------------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def ner_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The NER example importable here (for training and predict in this process) and as an
    installed plugin in a server's process: its source on the path and a ``.dist-info``
    with its entry point, as ``pip install`` would leave; returns that process's env."""
    info = tmp_path_factory.mktemp("ner-dist") / "nlptasks_ner-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nlptasks-ner\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[nlptasks]\nner = nlptasks_ner\n")
    sys.path.insert(0, str(NER_SOURCE))
    path = os.pathsep.join([str(NER_SOURCE), str(info.parent), *(p for p in sys.path if p)])
    yield {"PYTHONPATH": path, "NLPTASKS_LOAD_PLUGINS": "ner"}
    sys.path.remove(str(NER_SOURCE))


@pytest.fixture(scope="module")
def runs(
    tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory, ner_plugin: dict[str, str]
) -> dict[str, Path]:
    """Model folders of one- or two-step runs of the tiny BERT: sentiment, qa and ner (a head
    initialised at random would differ between two processes; a trained one is saved)."""
    import nlptasks
    from nlptasks.plugins import manager

    root = tmp_path_factory.mktemp("serve-runs")
    models = {}
    for task in ("sentiment", "qa"):
        data = tiny_dataset(task, root / f"{task}-data")
        nlptasks.run(task, None, f"model={tiny_bert}", *data.overrides, "train.max_steps=2",
                     output_dir=str(root / task))  # fmt: skip
        models[task] = root / task / "model"
    with manager.isolated(("nlptasks_ner",), builtins=True):
        nlptasks.run("ner", None, f"model={tiny_bert}", "train.max_steps=1",
                     "data.max_train_examples=16", "data.max_eval_examples=8",
                     output_dir=str(root / "ner"))  # fmt: skip
    models["ner"] = root / "ner" / "model"
    return models


@pytest.fixture(scope="module")
def sentiment(runs: dict[str, Path]) -> Iterator[Server]:
    """The sentiment model served with an API key (from the environment), 50 ms batches, in
    float32 (padding next to longer records then changes only the last digits)."""
    with start_server(
        runs["sentiment"], "--mixed-precision", "no", "--batch-timeout-ms", "50",
        "--max-records", "8", "--max-record-chars", "200", "--max-body-bytes", "4096",
        env={"NLPTASKS_API_KEY": KEY},
    ) as server:  # fmt: skip
        yield server


def _cli_predict(task: str, model: Path, records: Sequence[Any], *args: str) -> list[Any]:
    """What ``nlptasks predict TASK --model MODEL --input records.jsonl ARGS`` prints, parsed
    (in this process: the same click command as the shell's)."""
    import torch
    from click.testing import CliRunner

    from nlptasks.cli import cli

    threads = torch.get_num_threads()
    # One thread, as the servers (offline_env): another split of the sums may change the
    # last bits of a float.
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as folder:
            given = Path(folder) / "in.jsonl"
            given.write_text("".join(json.dumps(r) + "\n" for r in records))
            result = CliRunner().invoke(
                cli, ["predict", task, "--model", str(model), "--input", str(given), *args]
            )
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _predict(server: Server, body: Any, headers: dict[str, str] | None = None) -> Any:
    answer = httpx.post(f"{server.url}/v1/predict", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


# ----------------------------------------------------------------- the same as predict
def test_sentiment_predictions_equal_nlptasks_predict(
    sentiment: Server, runs: dict[str, Path]
) -> None:
    records = [{"text": "a gripping , funny and tender film"}, {"text": "a dull cast"}]
    served = _predict(sentiment, {"records": records}, AUTH)
    assert served["model"] == "sentiment"  # the run folder's name
    expected = _cli_predict("sentiment", runs["sentiment"], records, "--mixed-precision", "no")
    assert served["predictions"] == expected
    # A plain string is a record of a one-field task; "record" sends one.
    assert _predict(sentiment, {"records": ["a dull cast"]}, AUTH)["predictions"] == [
        served["predictions"][1]
    ]
    one = _predict(sentiment, {"record": {"text": "a dull cast"}, "model": "sentiment"}, AUTH)
    assert one["predictions"] == [served["predictions"][1]]


@pytest.mark.parametrize("task", ["qa", "ner", "generation", "translation"])
def test_predictions_equal_nlptasks_predict(
    task: str,
    runs: dict[str, Path],
    tiny_gpt2: Path,
    tiny_bart: Path,
    tmp_path: Path,
    ner_plugin: dict[str, str],
) -> None:
    if task in ("qa", "ner"):
        model, args, env = runs[task], (), (ner_plugin if task == "ner" else None)
    else:
        model, env = (tiny_gpt2 if task == "generation" else tiny_bart), None
        args = DECODING[task]
    records = NER_RECORDS if task == "ner" else tiny_dataset(task, tmp_path).records
    with start_server(model, "--task", task, *args, env=env) as server:
        served = _predict(server, {"records": records})
        info = httpx.get(f"{server.url}/v1/info").json()
        assert "Warning: no API key" in server.stderr  # none given: the server says it is open
    if task == "ner":
        from nlptasks.plugins import manager

        with manager.isolated(("nlptasks_ner",), builtins=True):
            expected = _cli_predict(task, model, records, *args)
    else:
        expected = _cli_predict(task, model, records, *args)
    assert served["predictions"] == expected
    assert len(expected) == len(records)
    key = {"qa": "answer", "ner": "entities"}.get(task, "generated_text")
    key = "translation" if task == "translation" else key
    assert all(key in p for p in expected), expected
    if task in ("generation", "translation"):  # text was written, so equality says something
        assert all(p[key] for p in expected), expected
    assert info["task"] == task and info["generates"] == (task in ("generation", "translation"))
    assert info["input_fields"] == list(records[0])
    assert info["recipe"]["task"] == task


# ------------------------------------------------------------------------------ batching
def _batch_sizes(server: Server) -> tuple[float, float]:
    """(model calls, model calls of one record) so far, from /metrics."""
    text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
    count = re.search(r"^nlptasks_batch_records_count (\S+)$", text, re.M)
    ones = re.search(r'^nlptasks_batch_records_bucket\{le="1\.0"\} (\S+)$', text, re.M)
    assert count and ones, text
    return float(count.group(1)), float(ones.group(1))


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(sentiment: Server) -> None:
    texts = [f"a {w} film" for w in ("gripping", "dull", "witty", "messy")] * 4
    texts = [f"{t} {'and a cast ' * (i % 5)}" for i, t in enumerate(texts)]
    alone = [_predict(sentiment, {"records": [t]}, AUTH)["predictions"][0] for t in texts]
    calls, ones = _batch_sizes(sentiment)
    barrier = threading.Barrier(len(texts))

    def send(text: str) -> Any:
        barrier.wait()  # all 16 at once
        return _predict(sentiment, {"records": [text]}, AUTH)["predictions"][0]

    with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
        together = list(pool.map(send, texts))
    calls_after, ones_after = _batch_sizes(sentiment)
    # Fewer model calls than requests: some carried several records.
    assert calls_after - calls < len(texts)
    assert (calls_after - calls) - (ones_after - ones) >= 1
    for single, joined in zip(alone, together, strict=True):
        assert joined["text"] == single["text"] and joined["label"] == single["label"]
        for label, p in single["probabilities"].items():
            assert joined["probabilities"][label] == pytest.approx(p, abs=1e-5)


# -------------------------------------------------------------------------- bad requests
@dataclass(frozen=True)
class Bad:
    """A bad request and its answer: the status and words its message must hold."""

    what: str
    status: int
    words: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] | None = None  # None: the key, and JSON's content type
    method: str = "POST"
    path: str = "/v1/predict"


BAD_REQUESTS = [
    Bad("not JSON", 400, "The body is not valid JSON", content=b"{'records'"),
    Bad("JSON not an object", 422, "a JSON array, not an object", json=["a film"]),
    Bad("no records", 422, "The body has no 'records'", json={}),
    Bad("records not a list", 422, "'records': Input should be a valid list",
        json={"records": "a"}),
    Bad("empty list", 422, "records is empty", json={"records": []}),
    Bad("record missing a field", 422, "records[1] has no 'text' field",
        json={"records": ["a film", {"txt": "a"}]}),
    Bad("field not a string", 422, "records[0] has a 'text' that is int",
        json={"records": [{"text": 3}]}),
    Bad("empty field", 422, "records[0] has an empty 'text'", json={"records": [" "]}),
    Bad("field too long", 422, "records[1].text has 201 characters; this server takes at most 200",
        json={"records": ["a", "b" * 201]}),
    Bad("too many records", 413, "9 records; this server takes at most 8",
        json={"records": ["a"] * 9}),
    Bad("body too large", 413, "this server takes at most 4096 bytes",
        json={"records": ["a " * 3000]}),
    Bad("unknown route", 404, "No route GET /v1/predictions", method="GET", path="/v1/predictions"),
    Bad("wrong method", 405, "GET /v1/predict is not allowed; use POST", method="GET"),
    Bad("wrong content type", 415, "Content-Type: application/json", content=b"text=a",
        headers={**AUTH, "content-type": "application/x-www-form-urlencoded"}),
    Bad("unknown top-level key", 422, "Unknown key 'texts' in the body",
        json={"records": ["a"], "texts": 1}),
    Bad("unknown model name", 404, "'gpt-4' is not served here; this server serves 'sentiment'",
        json={"records": ["a"], "model": "gpt-4"}),
    Bad("record and records", 422, "not both", json={"records": ["a"], "record": "b"}),
    Bad("a record that is a number", 422, "record is int, not an object", json={"record": 7}),
    Bad("no API key", 401, "needs an API key", json={"records": ["a"]}, headers={}),
    Bad("wrong API key", 401, "The API key is wrong", method="GET", path="/v1/info",
        headers={"Authorization": "Bearer nope"}),
    Bad("not a bearer key", 401, "must be 'Bearer KEY'", method="GET", path="/metrics",
        headers={"Authorization": f"Basic {KEY}"}),
    # JSON's \ud800 escape is a lone surrogate: no tokenizer (nor UTF-8) can take it.
    Bad("lone surrogate in a record", 422, "records[1] has a 'text' that is not valid Unicode",
        content=b'{"records": ["a film", "a \\ud800 film"]}'),
    Bad("lone surrogate as the model", 422, "'model' is not valid Unicode",
        content=b'{"records": ["a film"], "model": "\\udc00"}'),
    Bad("lone surrogate as a key", 422, "A key of the body is not valid Unicode",
        content=b'{"records": ["a film"], "\\ud800": 1}'),
    Bad("JSON nested too deeply", 400, "The body is not valid JSON (nested too deeply)",
        content=b'{"records": ' + b"[" * 1500 + b"]" * 1500 + b"}"),
]  # fmt: skip


def _send_bad(server: Server, bad: Bad) -> httpx.Response:
    headers = bad.headers
    if headers is None:
        headers = {**AUTH, "content-type": "application/json"}
    return httpx.request(
        bad.method, f"{server.url}{bad.path}", headers=headers, json=bad.json, content=bad.content
    )


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.what for bad in BAD_REQUESTS])
def test_a_bad_request_gets_a_json_4xx_naming_the_problem(sentiment: Server, bad: Bad) -> None:
    answer = _send_bad(sentiment, bad)
    assert answer.status_code == bad.status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert bad.words in error["message"], error
    assert "Traceback" not in answer.text and "\n" not in error["message"]


def test_the_server_keeps_serving_after_bad_requests(sentiment: Server) -> None:
    for _ in range(2):  # every kind twice more, then good requests still answer
        for bad in BAD_REQUESTS:
            assert _send_bad(sentiment, bad).status_code == bad.status, bad.what
    assert httpx.get(f"{sentiment.url}/health").json() == {"status": "ok"}
    found = _predict(sentiment, {"records": ["a witty film"]}, AUTH)["predictions"]
    assert found[0]["text"] == "a witty film"
    metrics = httpx.get(f"{sentiment.url}/metrics", headers=AUTH).text
    assert 'nlptasks_requests_total{route="/v1/predict",status="422"}' in metrics
    assert 'nlptasks_requests_total{route="other",status="404"}' in metrics
    assert 'status="500"' not in metrics and sentiment.process.poll() is None


def test_a_chunked_body_is_cut_off_at_the_limit(sentiment: Server) -> None:
    """No Content-Length to refuse it by: the limit holds while the body is read."""
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b'{"records": ["'
        for _ in range(64):  # 64 KiB, the limit is 4 KiB
            sent.append(1024)
            yield b"a" * 1024
        yield b'"]}'

    answer = httpx.post(
        f"{sentiment.url}/v1/predict",
        content=chunks(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert answer.status_code == 413, answer.text
    assert "over 4096 bytes" in answer.json()["error"]["message"]
    assert "content-length" not in answer.request.headers  # it was sent chunked
    assert _predict(sentiment, {"records": ["a film"]}, AUTH)["predictions"]


def test_a_client_gone_mid_body_is_counted_as_499(sentiment: Server) -> None:
    """nginx's 499 (the client closed the connection), not a 500 (the server's fault)."""
    host, port = sentiment.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 900\r\n\r\n"
            b'{"records": ["a'
        )
    deadline = time.monotonic() + 10
    pattern = 'nlptasks_requests_total{route="/v1/predict",status="499"} 1.0'
    while pattern not in (metrics := httpx.get(f"{sentiment.url}/metrics", headers=AUTH).text):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.01)
    assert 'status="500"' not in metrics


# ------------------------------------------------------------------------------- API key
def test_the_api_key_is_required_except_for_health(sentiment: Server) -> None:
    url = sentiment.url
    assert httpx.get(f"{url}/health").status_code == 200  # a load balancer has no key
    for route in ("/v1/info", "/metrics"):
        assert httpx.get(f"{url}{route}").status_code == 401
        assert httpx.get(f"{url}{route}", headers={"Authorization": "Bearer x"}).status_code == 401
        assert httpx.get(f"{url}{route}", headers=AUTH).status_code == 200
    answer = httpx.post(f"{url}/v1/predict", json={"records": ["a film"]})
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert _predict(sentiment, {"records": ["a film"]}, AUTH)["predictions"]
    info = httpx.get(f"{url}/v1/info", headers=AUTH).json()
    assert info["settings"]["api_key_required"] is True and KEY not in json.dumps(info)
    assert "Warning: no API key" not in sentiment.stderr


# ------------------------------------------------------------------------------- SIGTERM
def _health(server: Server) -> int | None:
    """/health's status, or None when the server no longer takes connections; a 503 must
    say it is draining."""
    try:
        answer = httpx.get(f"{server.url}/health", timeout=5)
    except httpx.TransportError:
        return None
    if answer.status_code == 503:
        assert answer.json() == {"status": "draining"}, answer.text
    return answer.status_code


def _start_slow_request(server: Server, records: list[str]) -> tuple[threading.Thread, dict]:
    """POST ``records`` from a thread; returns once the model has started on them. The
    answer (status, body, when) lands in the dict."""
    answer: dict[str, Any] = {}

    def send() -> None:
        try:
            response = httpx.post(
                f"{server.url}/v1/predict", json={"records": records}, timeout=120
            )
        except httpx.TransportError as exc:
            answer.update(error=exc, at=time.monotonic())
            return
        answer.update(status=response.status_code, body=response.json(), at=time.monotonic())

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 30
    while _batch_sizes(server)[0] == 0:  # the model has started on it
        assert time.monotonic() < deadline, server.stderr
        time.sleep(0.005)
    return sender, answer


def test_sigterm_answers_the_request_in_flight_then_exits_0(tiny_gpt2: Path) -> None:
    # 32 prompts, one per forward batch, 64 new tokens each: about a second of model work.
    records = [f"The cat {i}" for i in range(32)]
    decoding = ("--set", "generation.max_new_tokens=64", "--set", "generation.do_sample=false",
                "--set", "train.eval_batch_size=1")  # fmt: skip
    with start_server(
        tiny_gpt2, "--task", "generation", "--max-batch-size", "1", *decoding
    ) as server:
        sender, answer = _start_slow_request(server, records)
        server.signal(signal.SIGTERM)
        signalled = time.monotonic()
        # Draining: while the request runs, /health says 503 "draining" (a load balancer
        # takes the replica out) and new work gets 503; the socket closes once it is answered.
        assert _health(server) == 503
        refused = httpx.post(f"{server.url}/v1/predict", json={"records": ["The dog"]})
        assert refused.status_code == 503, refused.text
        assert "shutting down" in refused.json()["error"]["message"]
        assert "at" not in answer, "the request ended before the drain was seen: make it longer"
        while _health(server) is not None:
            assert time.monotonic() < signalled + 60, "still taking connections after SIGTERM"
            time.sleep(0.01)
        sender.join(timeout=120)
        assert server.wait(timeout=60) == 0, server.stderr
    assert answer["status"] == 200, answer
    assert answer["at"] > signalled
    assert [p["prompt"] for p in answer["body"]["predictions"]] == records
    assert all(p["generated_text"] for p in answer["body"]["predictions"])
    assert "Traceback" not in server.stderr and "Error" not in server.stderr, server.stderr


def test_a_second_sigterm_stops_at_once_and_exits_143(tiny_gpt2: Path) -> None:
    records = [f"The cat {i}" for i in range(32)]
    decoding = ("--set", "generation.max_new_tokens=64", "--set", "generation.do_sample=false",
                "--set", "train.eval_batch_size=1")  # fmt: skip
    with start_server(
        tiny_gpt2, "--task", "generation", "--max-batch-size", "1", *decoding
    ) as server:
        sender, answer = _start_slow_request(server, records)
        server.signal(signal.SIGTERM)
        time.sleep(0.3)  # uvicorn's shutdown has begun (it ticks every 0.1 s)
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 143, server.stderr
        sender.join(timeout=30)
    lines = [line for line in server.stderr.splitlines() if line.strip()]
    assert lines[-1] == "Stopped before 1 request was answered (a second signal).", lines
    assert "Traceback" not in server.stderr, server.stderr
    # The request in flight gets a JSON 503 when its connection still takes it.
    if "status" in answer:
        assert answer["status"] == 503, answer
        assert answer["body"]["error"]["code"] == "stopped", answer


# ---------------------------------------------------------------------------- Python API
def test_the_python_api_builds_an_app_a_test_client_mounts(runs: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    import nlptasks
    from nlptasks.serving import ServeSettings

    model = str(runs["sentiment"])
    records = ["a gripping film", {"text": "a dull , tedious cast"}]
    # Two apps in one process: each has its own metrics registry.
    apps = [nlptasks.serve(model, settings=ServeSettings(model_name=f"m{i}")) for i in (1, 2)]
    for number, app in enumerate(apps, 1):
        with TestClient(app) as client:
            answer = client.post("/v1/predict", json={"records": records})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "model": f"m{number}",
                "predictions": nlptasks.predict("sentiment", model, records),
            }
            metrics = client.get("/metrics").text
            assert 'nlptasks_requests_total{route="/v1/predict",status="200"} 1.0' in metrics
            assert client.get("/nowhere").status_code == 404
    # A request not answered in time: 504 JSON (it waits 5 ms for a batch alone).
    hurried = nlptasks.serve(model, settings=ServeSettings(request_timeout_s=0.001))
    with TestClient(hurried) as client:
        answer = client.post("/v1/predict", json={"records": records})
        assert answer.status_code == 504, answer.text
        assert "not answered within 0.001 s" in answer.json()["error"]["message"]
        assert client.get("/health").json() == {"status": "ok"}


# ------------------------------------------------------------------------ bad command lines
def test_bad_command_lines_are_one_line_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    model = str(runs["sentiment"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = {
            "missing model": (["/no/such/model"], "Model directory '/no/such/model' does not"),
            "port in use": ([model, "--port", port], f"Port {port} on 127.0.0.1 is already in use"),
            "batch size": ([model, "--max-batch-size", "0"], "--max-batch-size must be at least 1"),
            "not a model": ([str(tmp_path), "--task", "sentiment"], ""),
            "no task": ([str(tmp_path)], "so its task is unknown. Give it: --task"),
        }
        started = {
            name: subprocess.Popen(
                [*nlptasks_command(), "serve", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=offline_env(),
            )
            for name, (args, _) in cases.items()
        }
        for name, process in started.items():
            out, err = process.communicate(timeout=120)
            lines = [line for line in err.splitlines() if line.strip()]
            assert process.returncode == 1, (name, err)
            assert len(lines) == 1 and lines[0].startswith("Error: "), (name, err)
            assert cases[name][1] in lines[0], (name, err)
            assert "Serving" not in err and not out


# ------------------------------------------------------------------ in-process: batching
def _sentiment_app(model: Path, settings: Any, task: Any = None) -> Any:
    """The app of ``nlptasks.serve`` for ``model``, its task replaced by ``task`` if given."""
    import dataclasses

    from nlptasks.runner import load_predictor
    from nlptasks.serving.app import build_app
    from nlptasks.serving.engine import Engine

    predictor = load_predictor("sentiment", str(model), None, "no")
    if task is not None:
        predictor = dataclasses.replace(predictor, task=task(predictor.task))
    return build_app(Engine(predictor, settings, "sentiment"))


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def test_a_record_that_fails_a_joined_batch_fails_only_its_own_request(
    runs: dict[str, Path],
) -> None:
    """The task's predict fails on 'explode'; joined with good requests, the batch fails, is
    run again one request at a time, and only the request that sent it gets the error."""
    from fastapi.testclient import TestClient

    from nlptasks.serving import ServeSettings
    from tests.plugins.exploding import BAD_TEXT, ExplodingTask

    settings = ServeSettings(batch_timeout_ms=300, max_batch_size=16)
    app = _sentiment_app(runs["sentiment"], settings, ExplodingTask)
    texts = ["a gripping film", "a dull cast", BAD_TEXT, "a witty , tender film"]
    with TestClient(app) as client:
        alone = {t: client.post("/v1/predict", json={"records": [t]}).json() for t in texts[::3]}
        task = app.state.engine.task
        task.calls.clear()
        barrier = threading.Barrier(len(texts))

        def send(text: str) -> httpx.Response:
            barrier.wait()
            return client.post("/v1/predict", json={"records": [text]})

        with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
            answers = dict(zip(texts, pool.map(send, texts), strict=True))
        metrics = client.get("/metrics").text
    bad = answers.pop(BAD_TEXT)
    assert bad.status_code == 422, bad.text
    assert f"The text '{BAD_TEXT}' cannot be predicted" in bad.json()["error"]["message"]
    for text, answer in answers.items():
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["text"] == text
        if text in alone:
            assert answer.json() == alone[text]
    # One joined call of all four failed, then each request ran alone.
    assert task.calls[0] == len(texts) and sorted(task.calls[1:]) == [1] * len(texts), task.calls
    assert _metric(metrics, "nlptasks_batch_retries_total") == 1.0
    assert 'nlptasks_requests_total{route="/v1/predict",status="422"} 1.0' in metrics


def test_a_full_queue_answers_503_with_retry_after(runs: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    from nlptasks.serving import ServeSettings

    # A request of 2 records waits 1 s for company; the queue takes 2 records at most.
    settings = ServeSettings(batch_timeout_ms=1000, max_batch_size=8, max_queue_records=2)
    app = _sentiment_app(runs["sentiment"], settings)
    with TestClient(app) as client:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/v1/predict", json={"records": ["a", "b"]})
            deadline = time.monotonic() + 10
            while _metric(client.get("/metrics").text, "nlptasks_queue_depth") < 1:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            busy = client.post("/v1/predict", json={"records": ["c"]})
            assert first.result().status_code == 200
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1"
        assert "The server is busy" in busy.json()["error"]["message"]
        assert client.post("/v1/predict", json={"records": ["c"]}).status_code == 200
        assert client.get("/v1/info").json()["settings"]["max_queue_records"] == 2


def test_a_mounted_app_keeps_its_key_open_health_and_route_metrics(
    runs: dict[str, Path],
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    import nlptasks
    from nlptasks.serving import ServeSettings

    host = FastAPI()
    host.mount("/sentiment", nlptasks.serve(str(runs["sentiment"]), settings=ServeSettings(
        api_key=KEY)))  # fmt: skip
    with TestClient(host) as client:  # the mounted app's lifespan does not run
        assert client.get("/sentiment/health").json() == {"status": "ok"}
        refused = client.post("/sentiment/v1/predict", json={"records": ["a film"]})
        assert refused.status_code == 401, refused.text
        answer = client.post("/sentiment/v1/predict", json={"records": ["a film"]}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["text"] == "a film"
        metrics = client.get("/sentiment/metrics", headers=AUTH).text
    assert 'nlptasks_requests_total{route="/health",status="200"} 1.0' in metrics
    assert 'nlptasks_requests_total{route="/v1/predict",status="401"} 1.0' in metrics
    assert 'nlptasks_requests_total{route="/v1/predict",status="200"} 1.0' in metrics


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (" secret", "starts or ends with whitespace"),
        ("secret\n", "starts or ends with whitespace"),
        ("sécret", "other than printable ASCII"),
        ("   ", "the API key is empty"),
    ],
)
def test_an_api_key_no_header_can_carry_is_refused(key: str, problem: str) -> None:
    from nlptasks.serving import ServeSettings

    assert [problem in line for line in ServeSettings(api_key=key).problems()] == [True]
    assert ServeSettings(api_key="a b~!").problems() == []  # inner spaces, punctuation: fine
