"""Two task shapes the core must hold with no special cases: token classification (outputs of
different lengths, metrics from the raw examples) and generate-and-score (generation-based
evaluation on its own schedule, string references from the context). Both are fixture plugins
written against the public API only (tests/plugins/token_task.py, generate_task.py), run
through ``nlptasks run``, ``eval`` and ``predict``, and under 2-process torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

from nlptasks import EvalContext, MetricSpec, Scores, Step
from nlptasks.cli import cli
from nlptasks.plugins import manager as plugins
from nlptasks.testing import run_nlptasks
from tests.plugins import generate_task, token_task

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def shape_plugins() -> Iterator[None]:
    plugins.register_plugin(token_task, "toy-tokens")
    plugins.register_plugin(generate_task, "toy-generate")
    try:
        yield
    finally:
        plugins.unregister_plugin("toy-tokens")
        plugins.unregister_plugin("toy-generate")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _gold_words() -> int:
    return sum(len(tags) for tags in token_task.load_words(None)["validation"]["tags"])


def test_token_classification_runs_evaluates_and_predicts(
    shape_plugins: None, tiny_bert: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    invoke("run", "toy-tokens", f"model={tiny_bert}", "--output-dir", str(run_dir), "--quiet")
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]["eval"]
    assert set(metrics) == {"loss", "word_accuracy", "words"}
    # Every gold word of every eval example is scored exactly once, whatever the padding.
    assert metrics["words"] == _gold_words() > 500
    # Half the words are long: a model that learned nothing scores about 0.5.
    assert metrics["word_accuracy"] > 0.7, metrics
    evals = [e for e in _events(run_dir) if e["type"] == "eval"]
    assert len(evals) == 2  # once per epoch

    # `nlptasks eval` finds the run's recipe and gives exactly the run's metrics.
    output = invoke("eval", "toy-tokens", "--model", str(run_dir / "model"), "--json")
    assert json.loads(output) == pytest.approx(metrics, abs=1e-9)

    # predict: one record per positional TEXT, answers in input order.
    texts = ["a remarkably entertaining picture", "so bad"]
    output = invoke("predict", "toy-tokens", "--model", str(run_dir / "model"), *texts)
    predictions = [json.loads(line) for line in output.splitlines()]
    assert [p["words"] for p in predictions] == [t.split() for t in texts]
    assert all(len(p["tags"]) == len(p["words"]) for p in predictions)

    # The task adds card front matter; the core keeps its own keys.
    front = yaml.safe_load((run_dir / "README.md").read_text().split("---")[1])
    assert front["language"] == ["en"] and front["pipeline_tag"] == "token-classification"
    assert "base_model" not in front  # a local directory is no Hub id


def test_generation_metrics_run_on_their_own_schedule(
    shape_plugins: None, tiny_gpt2: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    invoke("run", "toy-generate", f"model={tiny_gpt2}", "--output-dir", str(run_dir), "--quiet")
    evals = [e for e in _events(run_dir) if e["type"] == "eval"]
    # eval_every=3 over 6 steps, generation.every=2: the first evaluation is a loss pass only,
    # the second (also the final one) generates.
    assert [e["step"] for e in evals] == [3, 6]
    assert set(evals[0]["metrics"]) == {"loss"}
    assert set(evals[1]["metrics"]) == {"loss", "exact_match", "generated_chars"}
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]["eval"]
    assert metrics == pytest.approx(evals[1]["metrics"])
    assert metrics["generated_chars"] > 0

    output = invoke("eval", "toy-generate", "--model", str(run_dir / "model"), "--json")
    assert json.loads(output) == pytest.approx(metrics, abs=1e-9)

    records = tmp_path / "prompts.jsonl"
    prompts = ["copy : a gripping film =", "copy : dull =", "copy : one of the best ="]
    records.write_text("\n".join(json.dumps({"prompt": p}) for p in prompts) + "\n")
    output = invoke(
        "predict", "toy-generate", "--model", str(run_dir / "model"), "-i", str(records)
    )
    assert [json.loads(line)["prompt"] for line in output.splitlines()] == prompts

    # With a writer (a terminal), each completion is written as it is made, in input order,
    # one line each; what is written is what is returned.
    from nlptasks.runner import predict

    written: list[str] = []
    inputs = [{"prompt": p} for p in prompts]
    results = predict("toy-generate", str(run_dir / "model"), inputs, stream=written.append)
    assert [r["prompt"] for r in results] == prompts
    assert "".join(written) == "".join(f"{r['completion']}\n" for r in results)


def test_a_missing_input_field_is_one_line(
    shape_plugins: None, tiny_gpt2: Path, tmp_path: Path
) -> None:
    records = tmp_path / "bad.jsonl"
    records.write_text('{"prompt": "copy : a ="}\n{"text": "copy : b ="}\n')
    result = CliRunner().invoke(
        cli, ["predict", "toy-generate", "--model", str(tiny_gpt2), "-i", str(records)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {records} line 2 has no 'prompt' field (task 'toy-generate' needs prompt). Add it."
    ]


@pytest.fixture
def prepared_tokens(shape_plugins: None, tiny_bert: Path) -> Any:
    """The toy-tokens run, prepared (model, data, evaluator) but not trained."""
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import prepare_run

    return prepare_run(load_recipe("toy-tokens", "tiny", [f"model={tiny_bert}"]))


def _one_line_error(prepared: Any, match: str) -> None:
    """Evaluation stops with one line that names the task and the broken rule."""
    from nlptasks.errors import PluginError

    with pytest.raises(PluginError, match=match) as caught:
        prepared.evaluator.evaluate(prepared.model)
    message = str(caught.value)
    assert "Task 'toy-tokens'" in message and "\n" not in message, message


def test_undeclared_metrics_are_refused(prepared_tokens: Any) -> None:
    info = prepared_tokens.task.info
    # 'words' is reported but not declared (a task may narrow info on its instance).
    prepared_tokens.task.info = dataclasses.replace(info, metrics=info.metrics[:1])
    _one_line_error(prepared_tokens, "undeclared: words")
    # Declared but not reported.
    more = (*info.metrics, MetricSpec("recall", True))
    prepared_tokens.task.info = dataclasses.replace(info, metrics=more)
    _one_line_error(prepared_tokens, "missing: recall")


def test_metrics_outside_their_range_or_named_loss_are_refused(
    prepared_tokens: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = prepared_tokens.task.info
    narrow = (info.metrics[0], MetricSpec("words", True, high=10.0))
    prepared_tokens.task.info = dataclasses.replace(info, metrics=narrow)
    _one_line_error(prepared_tokens, r"words=\d+\.0 outside \[-inf, 10.0\]")
    prepared_tokens.task.info = info
    real = token_task.TokenTask.aggregate
    monkeypatch.setattr(
        token_task.TokenTask, "aggregate", lambda self, sums: {**real(self, sums), "loss": 0.0}
    )
    _one_line_error(prepared_tokens, "computed a metric named 'loss'")


def test_aggregate_must_return_a_dict(
    prepared_tokens: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_task.TokenTask, "aggregate", lambda self, sums: 0.5)
    _one_line_error(
        prepared_tokens, r"aggregate\(\) must return a dict of metric values, not float"
    )


def test_score_gives_one_record_and_statistics_per_example(
    prepared_tokens: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = token_task.TokenTask.score

    def short(self: Any, outputs: Any, context: EvalContext) -> Scores:
        scores = real(self, outputs, context)
        return Scores(scores.records, scores.statistics[:-1])

    monkeypatch.setattr(token_task.TokenTask, "score", short)
    _one_line_error(prepared_tokens, r"score\(\) gave 70 records but 69 statistics")
    monkeypatch.setattr(token_task.TokenTask, "score", lambda self, outputs, context: {})
    _one_line_error(prepared_tokens, r"score\(\) must return nlptasks.Scores, not dict")


def test_broken_forward_contract_is_one_line(
    prepared_tokens: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = token_task.TokenTask.forward

    def outputs(step: Step, **extra: Any) -> Step:
        return Step(step.loss, step.count, {**step.outputs, **extra})

    broken: dict[str, tuple[Callable[[Step], Any], str]] = {
        "not a Step": (lambda step: {"loss": step.loss}, r"forward\(\) must return nlptasks.Step"),
        "a batch loss": (
            lambda step: Step(step.loss.mean(), step.count, step.outputs),
            r"forward's loss must hold one number per example, shape \(16,\), got \(\)",
        ),
        "a batch count": (
            lambda step: Step(step.loss, torch.tensor(16), step.outputs),
            r"forward's count must hold one number per example, shape \(16,\), got \(\)",
        ),
        "a list": (lambda step: outputs(step, x=[1, 2]), "output 'x' must be a tensor"),
        "wrong rows": (
            lambda step: outputs(step, x=torch.zeros(3)),
            r"one row per example \(16\), got shape \(3,\)",
        ),
        "reserved": (lambda step: outputs(step, index=step.loss), "a name evaluation sets"),
        "loss in outputs": (
            lambda step: outputs(step, loss=step.loss),
            "forward's outputs hold 'loss'",
        ),
    }
    for change, message in broken.values():
        monkeypatch.setattr(
            token_task.TokenTask,
            "forward",
            lambda self, model, batch, change=change: change(real(self, model, batch)),
        )
        _one_line_error(prepared_tokens, message)


def test_training_checks_forward_too(
    shape_plugins: None, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loss averaged over the batch stops training at once, with the same one line."""
    real = token_task.TokenTask.forward
    monkeypatch.setattr(
        token_task.TokenTask,
        "forward",
        lambda self, model, batch: Step(real(self, model, batch).loss.mean()),
    )
    args = ["run", "toy-tokens", f"model={tiny_bert}", "-o", str(tmp_path / "run"), "-q"]
    result = CliRunner().invoke(cli, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: Task 'toy-tokens': forward's loss must hold one number")


def test_python_api_evaluate_and_predict(
    shape_plugins: None, tiny_bert: Path, tmp_path: Path
) -> None:
    import nlptasks

    run = nlptasks.run("toy-tokens", None, f"model={tiny_bert}", output_dir=str(tmp_path / "r"))
    assert run.run_dir is not None
    result = nlptasks.evaluate("toy-tokens", str(run.run_dir / "model"))
    assert result.metrics == pytest.approx(run.metrics, abs=1e-9)
    assert result.num_examples == 70 and result.recipe.task == "toy-tokens"
    assert result.mixed_precision == "no"  # the run's recipe says so
    out = nlptasks.predict("toy-tokens", str(run.run_dir / "model"), ["tiny words", {"text": "b"}])
    assert [p["words"] for p in out] == [["tiny", "words"], ["b"]]
    from nlptasks.errors import NlpTasksError

    with pytest.raises(NlpTasksError, match="Input 1 has no 'text' field"):
        nlptasks.predict("toy-tokens", str(run.run_dir / "model"), [{"txt": "x"}])


def test_evaluation_runs_in_inference_mode_and_the_recipes_precision(
    shape_plugins: None, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import prepare_run

    seen: list[tuple[bool, torch.dtype]] = []
    real_forward = token_task.TokenTask.forward

    def spy(self: token_task.TokenTask, model: torch.nn.Module, batch: dict) -> Step:
        probe = torch.nn.functional.linear(torch.ones(1, 2), torch.ones(2, 2))
        seen.append((torch.is_inference_mode_enabled(), probe.dtype))
        return real_forward(self, model, batch)

    monkeypatch.setattr(token_task.TokenTask, "forward", spy)
    for precision, dtype in (("no", torch.float32), ("bf16", torch.bfloat16)):
        seen.clear()
        overrides = [f"model={tiny_bert}", f"train.mixed_precision={precision}"]
        prepared = prepare_run(load_recipe("toy-tokens", "tiny", overrides))
        prepared.evaluator.evaluate(prepared.model)
        assert seen and set(seen) == {(True, dtype)}


def test_eval_uses_the_runs_own_files_from_any_directory(
    shape_plugins: None, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import SST2

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    lines = (SST2 / "dev.tsv").read_text().splitlines()
    (work / "dev.tsv").write_text("\n".join(lines[:41]) + "\n")
    (work / "train.tsv").write_text("\n".join(lines[:81]) + "\n")
    # A different file of the same name where eval is started: it must not be read.
    (elsewhere / "dev.tsv").write_text("\n".join(lines[:1] + lines[41:61]) + "\n")
    monkeypatch.chdir(work)
    invoke(
        "run", "sentiment", f"model={tiny_bert}", "data.train_path=train.tsv",
        "data.eval_path=dev.tsv", "train.max_steps=2", "--output-dir", "run", "--quiet",
    )  # fmt: skip
    saved = yaml.safe_load((work / "run/recipe.yaml").read_text())
    assert saved["data"]["eval_path"] == str(work / "dev.tsv")
    monkeypatch.chdir(elsewhere)
    result = json.loads(invoke("eval", "sentiment", "--model", str(work / "run/model"), "--json"))
    assert result == pytest.approx(
        json.loads((work / "run/results.json").read_text())["metrics"]["eval"], abs=1e-9
    )


def test_a_model_of_another_task_is_named(
    shape_plugins: None, tiny_bert: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    invoke("run", "toy-tokens", f"model={tiny_bert}", "train.max_steps=1", "-o", str(run_dir), "-q")
    result = CliRunner().invoke(cli, ["eval", "sentiment", "--model", str(run_dir / "model")])
    assert result.exit_code == 1
    assert "was trained for task 'toy-tokens'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_predict_arguments_are_checked(
    shape_plugins: None, tiny_bert: Path, tmp_path: Path
) -> None:
    import nlptasks
    from nlptasks.errors import NlpTasksError

    model = str(tmp_path / "model")
    invoke(
        "run", "toy-tokens", f"model={tiny_bert}", "train.max_steps=1", "-o", str(tmp_path / "r")
    )
    model = str(tmp_path / "r" / "model")
    assert nlptasks.predict("toy-tokens", model, []) == []
    with pytest.raises(NlpTasksError, match="not one string"):
        nlptasks.predict("toy-tokens", model, "great film")
    with pytest.raises(NlpTasksError, match="must be one of auto, no, bf16, fp16"):
        nlptasks.predict("toy-tokens", model, ["x"], mixed_precision="fp32")
    output = invoke(
        "predict", "toy-tokens", "--model", model, "--set", "data.max_length=3", "a b c d"
    )
    assert len(json.loads(output)["tags"]) == 4  # the words, whatever the truncation
    result = CliRunner().invoke(
        cli, ["predict", "toy-tokens", "--model", model, "--set", "x=1", "a"]
    )
    assert result.exit_code == 1 and "override 'x=1' sets unknown key 'x'" in result.output


# ------------------------------------------------------------------------ two processes
def _plugin_site(root: Path) -> dict[str, str]:
    """An installed distribution whose entry points are the two fixture plugins, so that
    torchrun's processes load them as a user's installed plugins would be loaded."""
    info = root / "nlptasks_shapes-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nlptasks_shapes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[nlptasks]\ntoy-tokens = tests.plugins.token_task\n"
        "toy-generate = tests.plugins.generate_task\n"
    )
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
        "NLPTASKS_LOAD_PLUGINS": "toy-tokens,toy-generate",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def _cli(env: dict[str, str], processes: int, *args: str) -> str:
    return run_nlptasks(*args, processes=processes, env=env).stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "model_fixture"), [("toy-tokens", "tiny_bert"), ("toy-generate", "tiny_gpt2")]
)
def test_two_processes_give_the_metrics_of_one(
    task: str, model_fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    model = request.getfixturevalue(model_fixture)
    env = _plugin_site(tmp_path / "site")
    run_dir = tmp_path / "run"
    # Training on two processes works for this task shape ...
    _cli(env, 2, "run", task, f"model={model}", "--output-dir", str(run_dir), "--quiet")
    trained = json.loads((run_dir / "results.json").read_text())["metrics"]["eval"]
    # ... and evaluating its model on two processes (uneven shards, outputs of different
    # lengths per process) gives what one process gives, which is what the run reported.
    one = json.loads(_cli(env, 1, "eval", task, "--model", str(run_dir / "model"), "--json"))
    two_lines = _cli(env, 2, "eval", task, "--model", str(run_dir / "model"), "--json")
    assert len(two_lines.splitlines()) == 1  # only the main process prints
    two = json.loads(two_lines)
    assert two == pytest.approx(one, rel=1e-6)
    assert one == pytest.approx(trained, rel=1e-6)
    if task == "toy-tokens":
        assert two["words"] == _gold_words()
