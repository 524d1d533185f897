"""The kit for testing nlptasks plugins: tiny real models, tiny datasets, an isolated plugin
manager, a CLI runner and the conformance test class.

Opt in from a test suite with ``pytest_plugins = ["nlptasks.testing"]`` to get the fixtures:

- ``isolated_plugins``: ``isolated_plugins(*plugins, builtins=False)`` loads only the plugins
  under test (entry-point names, module paths or modules) for the rest of the test;
- ``cli``: ``cli("run", "sentiment", ..., exit_code=0)`` invokes the ``nlptasks`` command
  in-process and checks its exit code;
- ``tiny_model``: ``tiny_model("encoder" | "causal" | "seq2seq", texts)`` builds a tiny random
  model whose tokenizer is trained on ``texts``, in about a second;
- ``tiny_data``: ``tiny_data("sentiment" | "qa" | "generation" | "translation")`` writes
  that built-in task's tiny dataset (:mod:`nlptasks.testing.tiny_datasets`);
- ``tiny_bert`` / ``tiny_gpt2`` / ``tiny_bart``: one tiny model of each shape per session,
  trained on ``tiny_texts`` (a few SST-2-like sentences; override it to use your own);
- ``offline``: no Hub access and no third-party entry points.

``run_nlptasks("eval", TASK, "--model", DIR, processes=2)`` runs the command in fresh
processes, under ``torchrun`` when ``processes`` > 1, offline, and fails the test with the end
of stderr when it exits non-zero.

:class:`TaskConformance` (from :mod:`nlptasks.testing.conformance`) is the test class a task plugin
subclasses to check that it keeps the Task contract.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# The kit's asserts explain themselves only if pytest rewrites them; it rewrites this module
# (a pytest plugin) on its own, and conformance only when asked before the import.
pytest.register_assert_rewrite("nlptasks.testing.conformance")

# The conformance kit is importable from here, beside the fixtures it needs.
from nlptasks.testing.conformance import (  # noqa: E402
    ConformanceRun,
    TaskConformance,
    make_tiny_model,
)
from nlptasks.testing.processes import nlptasks_command, offline_env, run_nlptasks  # noqa: E402
from nlptasks.testing.tiny_datasets import TinyData, tiny_dataset  # noqa: E402
from nlptasks.testing.tiny_models import (  # noqa: E402
    DEFAULT_TEXTS,
    make_tiny_bart,
    make_tiny_bert,
    make_tiny_gpt2,
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No Hub and no third-party entry points for the duration of a test."""
    from nlptasks.plugins import manager as plugins

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NLPTASKS_LOAD_PLUGINS", "")
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def isolated_plugins() -> Iterator[Callable[..., Any]]:
    """``isolated_plugins(*plugins, builtins=False)``: from then until the test ends, only
    these plugins are loaded (plus the built-ins when asked), whatever else is installed.
    Returns the plugin manager. A plugin is an entry-point name, a module path or a module."""
    from nlptasks.plugins import manager as plugins

    with contextlib.ExitStack() as stack:

        def load(*under_test: object, builtins: bool = False) -> Any:
            stack.close()  # a second call replaces the first
            return stack.enter_context(plugins.isolated(under_test, builtins=builtins))

        yield load


@pytest.fixture
def cli() -> Iterator[Callable[..., Any]]:
    """``cli(*args, exit_code=0, input=None)``: run the ``nlptasks`` command in-process, with
    the commands of the plugins loaded at that moment (``register_commands``); fails the test,
    showing the output, when it exits with another code. Returns click's Result
    (``result.stdout`` is stdout alone, ``result.output`` stdout and stderr)."""
    from click.testing import CliRunner

    from nlptasks.cli import cli as command
    from nlptasks.plugins.manager import call_hook

    builtin = dict(command.commands)

    def invoke(*args: str, exit_code: int = 0, input: str | None = None) -> Any:
        # The plugins of this moment: those of an earlier call (or test) are gone.
        command.commands = dict(builtin)
        call_hook("register_commands", cli=command)
        result = CliRunner().invoke(command, list(args), input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a crash, not a handled error: show its traceback
        assert result.exit_code == exit_code, (
            f"nlptasks {' '.join(args)} exited {result.exit_code}, not {exit_code}:\n"
            f"{result.output}"
        )
        return result

    yield invoke
    command.commands = builtin


@pytest.fixture
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_model(shape, texts=DEFAULT_TEXTS, seed=0)``: a tiny random model directory of a
    task shape (``encoder``: BERT, ``causal``: GPT-2, ``seq2seq``: BART), no dropout."""

    def make(shape: str, texts: Sequence[str] = DEFAULT_TEXTS, seed: int = 0) -> Path:
        return make_tiny_model(shape, tmp_path_factory.mktemp(f"tiny-{shape}"), texts, seed)

    return make


@pytest.fixture
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """``tiny_data(task)``: the tiny dataset of a built-in task written to a fresh folder, as
    a :class:`TinyData` (recipe overrides, texts for a tokenizer, predict records)."""

    def make(task: str) -> TinyData:
        return tiny_dataset(task, tmp_path_factory.mktemp(f"tiny-{task}-data"))

    return make


@pytest.fixture(scope="session")
def tiny_texts() -> Sequence[str]:
    """The texts the ``tiny_bert`` tokenizer is trained on: :data:`DEFAULT_TEXTS`.

    Override this session-scoped fixture in a ``conftest.py`` to train the vocabulary on the
    suite's own data (say, a few thousand sentences of its dataset).
    """
    return DEFAULT_TEXTS


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, tiny_texts: Sequence[str]) -> Path:
    """A tiny random BERT checkpoint directory (see :func:`make_tiny_bert`) whose WordPiece
    vocabulary is trained on ``tiny_texts``; built once per test session."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tiny_texts)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory, tiny_texts: Sequence[str]) -> Path:
    """A tiny random GPT-2 checkpoint directory (see :func:`make_tiny_gpt2`)."""
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), tiny_texts)


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory: pytest.TempPathFactory, tiny_texts: Sequence[str]) -> Path:
    """A tiny random BART checkpoint directory (see :func:`make_tiny_bart`)."""
    return make_tiny_bart(tmp_path_factory.mktemp("tiny-bart"), tiny_texts)


__all__ = [
    "DEFAULT_TEXTS",
    "ConformanceRun",
    "TaskConformance",
    "TinyData",
    "make_tiny_bart",
    "make_tiny_bert",
    "make_tiny_gpt2",
    "make_tiny_model",
    "nlptasks_command",
    "offline_env",
    "run_nlptasks",
    "tiny_dataset",
]
