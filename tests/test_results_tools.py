"""What results leaderboards read: the model card round trip, the results schema, compare,
leaderboard, verify and export, on real (tiny) sentiment runs."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard

import nlptasks
from nlptasks.runs.directory import schema_problems
from tests.conftest import SST2


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sst2")
    paths = {}
    for name, split, limit in (("train", "train", 800), ("dev", "dev", 400), ("other", "dev", 50)):
        lines = (SST2 / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        rows = lines[1 : limit + 1] if name != "other" else lines[-limit:]
        paths[name] = folder / f"{name}.tsv"
        paths[name].write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    return paths


def _run(
    folder: Path, model: Path, data: dict[str, Path], *overrides: str, eval_file: str = "dev"
) -> Path:
    result = nlptasks.run(
        "sentiment",
        "minilm",
        f"model={model}",
        f"data.train_path={data['train']}",
        f"data.eval_path={data[eval_file]}",
        "train.mixed_precision=no",
        "train.batch_size=16",
        "~expect",  # the minilm recipe's expectations are for its own data
        *overrides,
        output_dir=str(folder),
    )
    assert result.run_dir is not None
    return result.run_dir


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, data: dict[str, Path]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    trained = ("train.epochs=6", "train.learning_rate=5e-4")
    return {
        "good": _run(root / "good", tiny_bert, data, *trained, "license=apache-2.0"),
        "again": _run(root / "again", tiny_bert, data, *trained),
        "weak": _run(
            root / "weak", tiny_bert, data, "train.max_steps=1", "train.learning_rate=1e-5"
        ),
        "other": _run(root / "other", tiny_bert, data, "train.max_steps=1", eval_file="other"),
    }


# ----------------------------------------------------------------------------- card
def test_the_card_round_trips_through_huggingface_hub(
    runs: dict[str, Path], cli: Any, data: dict[str, Path]
) -> None:
    run = runs["good"]
    results = json.loads((run / "results.json").read_text())
    card = ModelCard.load(run / "README.md")
    front = card.data.to_dict()
    assert front["license"] == "apache-2.0"
    assert front["pipeline_tag"] == "text-classification" and "nlptasks" in front["tags"]
    found = {(r.dataset_split, r.metric_type): r for r in card.data.eval_results}
    accuracy = found[("dev.tsv", "accuracy")]
    assert accuracy.task_type == "text-classification" and accuracy.task_name == "sentiment"
    assert accuracy.dataset_name.endswith("/dev.tsv")  # the eval data itself
    assert accuracy.dataset_args == {"examples": 400}
    assert "datasets" not in front  # local files are no Hub dataset
    assert accuracy.metric_value == pytest.approx(results["metrics"]["eval"]["accuracy"], abs=1e-4)
    low, high = results["confidence_intervals"]["eval"]["accuracy"]
    assert accuracy.metric_args["confidence_interval_95"] == [round(low, 4), round(high, 4)]
    for section in (
        "## Results",
        "## Training",
        "## Reproduce",
        "## Intended use",
        "## Limitations",
    ):
        assert section in card.text
    assert "nlptasks run sentiment --recipe recipe.yaml" in card.text
    assert f"| {round(low, 4)} – {round(high, 4)} |" in card.text

    # nlptasks eval adds its results (other data): the card keeps both evaluations.
    copy = shutil.copytree(run, run.parent / "good-copy")
    out = cli(
        "eval", "sentiment", "--model", str(copy / "model"), f"data.eval_path={data['other']}"
    )
    assert "accuracy" in out.stdout and "[" in out.stdout  # with its interval
    again = ModelCard.load(copy / "README.md").data.eval_results
    splits = sorted({r.dataset_split for r in again})
    assert splits == ["dev.tsv", "other.tsv"]
    assert len(again) == 4  # accuracy and macro_f1 of each evaluation
    # The same evaluation again replaces its results, it does not add them twice.
    cli("eval", "sentiment", "--model", str(copy / "model"), f"data.eval_path={data['other']}")
    assert len(ModelCard.load(copy / "README.md").data.eval_results) == 4
    lines = (copy / "evaluations.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["data"]["split"] == "other.tsv"


# --------------------------------------------------------------------------- schema
def test_results_follow_the_schema_and_bad_ones_do_not(runs: dict[str, Path]) -> None:
    results = json.loads((runs["good"] / "results.json").read_text())
    assert schema_problems(results) == []
    assert results["schema_version"] == 1
    assert (
        results["data"]["eval"]["examples"] == 400 and len(results["data"]["eval"]["sha256"]) == 64
    )
    assert (
        results["throughput"]["train_tokens_per_second"]
        > results["throughput"]["train_examples_per_second"]
        > 0
    )
    broken = json.loads(json.dumps(results))
    del broken["schema_version"]
    broken["metrics"]["eval"]["accuracy"] = "high"
    problems = schema_problems(broken)
    assert any("'schema_version' is a required property" in p for p in problems)
    assert any(p.startswith("metrics/eval/accuracy: 'high' is not of type") for p in problems)


# -------------------------------------------------------------------------- compare
def test_compare_finds_a_real_difference(runs: dict[str, Path], cli: Any) -> None:
    out = cli("compare", str(runs["good"]), str(runs["weak"]), "--json")
    found = {m["metric"]: m for m in json.loads(out.stdout)["metrics"]}
    accuracy = found["accuracy"]
    assert accuracy["a"] > accuracy["b"] and accuracy["significant"] and accuracy["low"] > 0
    assert accuracy["p_value"] < 0.05
    table = cli("compare", str(runs["good"]), str(runs["weak"])).stdout
    assert "accuracy" in table and "yes" in table


def test_compare_finds_none_between_two_runs_of_one_recipe(runs: dict[str, Path], cli: Any) -> None:
    out = cli("compare", str(runs["good"]), str(runs["again"]), "--json")
    for metric in json.loads(out.stdout)["metrics"]:
        assert metric["difference"] == 0 and not metric["significant"], metric


def test_compare_refuses_runs_on_other_data(runs: dict[str, Path], cli: Any) -> None:
    result = cli("compare", str(runs["good"]), str(runs["other"]), exit_code=1)
    assert "The runs evaluated different data" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------------- leaderboard
@pytest.fixture(scope="module")
def board_folder(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("board")
    for name in ("good", "weak", "other"):
        shutil.copytree(runs[name], folder / name)
    (folder / "not-a-run").mkdir()
    (folder / "old").mkdir()
    (folder / "old" / "results.json").write_text('{"task": "sentiment", "metrics": {}}')
    (folder / "garbage").mkdir()
    (folder / "garbage" / "results.json").write_text("{not json")
    return folder


def test_leaderboard_ranks_per_data_and_metric(board_folder: Path, cli: Any) -> None:
    out = cli("leaderboard", str(board_folder), "--format", "json")
    board = json.loads(out.stdout)
    groups = {(b["task"], b["split"]): b for b in board["boards"]}
    assert set(groups) == {("sentiment", "dev.tsv"), ("sentiment", "other.tsv")}
    dev = groups[("sentiment", "dev.tsv")]
    assert dev["metric"] == "accuracy" and dev["higher_is_better"]
    assert [r["run"] for r in dev["rows"]] == ["good", "weak"]  # best first
    assert [r["rank"] for r in dev["rows"]] == [1, 2]
    values = [r["value"] for r in dev["rows"]]
    assert values == sorted(values, reverse=True)
    assert dev["rows"][0]["low"] <= values[0] <= dev["rows"][0]["high"]
    skipped = {Path(s["folder"]).name: s["why"] for s in board["skipped"]}
    assert set(skipped) == {"not-a-run", "old", "garbage"}
    assert "schema_version None" in skipped["old"] and "not valid JSON" in skipped["garbage"]

    # Lower is better for the loss: the order turns around.
    by_loss = json.loads(
        cli("leaderboard", str(board_folder), "--metric", "loss", "--format", "json").stdout
    )
    dev_loss = next(b for b in by_loss["boards"] if b["split"] == "dev.tsv")
    assert not dev_loss["higher_is_better"]
    losses = [r["value"] for r in dev_loss["rows"]]
    assert losses == sorted(losses)


def test_leaderboard_formats(board_folder: Path, cli: Any) -> None:
    markdown = cli("leaderboard", str(board_folder), "--format", "markdown").stdout
    assert markdown.startswith("### sentiment · ")
    lines = [line for line in markdown.splitlines() if line.startswith("| 1 |")]
    assert len(lines) == 2 and "| good |" in lines[0] + lines[1]
    rows = list(
        csv.DictReader(io.StringIO(cli("leaderboard", str(board_folder), "--format", "csv").stdout))
    )
    assert {r["run"] for r in rows} == {"good", "weak", "other"}
    assert {
        "task",
        "dataset",
        "split",
        "metric",
        "rank",
        "model",
        "value",
        "low",
        "high",
        "learning_rate",
        "date",
        "duration_seconds",
    } <= set(rows[0])
    table = cli("leaderboard", str(board_folder))
    assert "good" in table.stdout and "Skipped" not in table.stdout  # notes go to stderr
    assert "Skipped" in table.output
    only = json.loads(
        cli("leaderboard", str(board_folder), "--task", "qa", "--format", "json").stdout
    )
    assert only["boards"] == []
    # Nothing in a folder crashes it; a missing folder is a note too.
    missing = cli("leaderboard", str(board_folder / "nope"), "--format", "json")
    assert json.loads(missing.stdout)["skipped"][0]["why"] == "not a folder"


# --------------------------------------------------------------------------- verify
def _with_expectation(run: Path, folder: Path, expect: str) -> Path:
    copy = shutil.copytree(run, folder)
    text = (copy / "recipe.yaml").read_text()
    (copy / "recipe.yaml").write_text(text.replace("\nexpect: null", "") + expect)
    return copy


def test_verify_passes_and_fails(runs: dict[str, Path], cli: Any, tmp_path: Path) -> None:
    accuracy = json.loads((runs["good"] / "results.json").read_text())["metrics"]["eval"][
        "accuracy"
    ]
    reached = _with_expectation(
        runs["good"],
        tmp_path / "reached",
        f"expect:\n  min: {{accuracy: {accuracy - 0.01}}}\n  max: {{loss: 5.0}}\n"
        "  reference: {accuracy: 0.9}\n  data: SST-2 dev\n  source: a test\n",
    )
    out = cli("verify", str(reached)).stdout
    assert f"ok   accuracy {accuracy:.4g} >= {accuracy - 0.01:g} (reference 0.9)" in out
    assert "source: a test" in out
    short = _with_expectation(
        runs["weak"], tmp_path / "short", "expect:\n  min: {accuracy: 0.99}\n"
    )
    result = cli("verify", str(short), exit_code=1)
    assert "FAIL accuracy" in result.output
    assert "falls short of its recipe's expectations (accuracy)" in result.output
    none = cli("verify", str(runs["weak"]), exit_code=1)
    assert "has no 'expect:' section" in none.output
    unknown = _with_expectation(runs["weak"], tmp_path / "unknown", "expect:\n  min: {bleu: 1}\n")
    assert (
        "expects metric 'bleu', which the run did not report"
        in cli("verify", str(unknown), exit_code=1).output
    )


def test_verify_against_a_recipe_written_after_the_run(
    runs: dict[str, Path], cli: Any, tmp_path: Path
) -> None:
    """--recipe: the expectations of a recipe file (or name), not of the run's own copy."""
    run = runs["weak"]  # its own recipe has no expect: section
    accuracy = json.loads((run / "results.json").read_text())["metrics"]["eval"]["accuracy"]
    made_with = json.loads((run / "results.json").read_text())["model"]
    later = tmp_path / "later.yaml"
    later.write_text(
        f"task: sentiment\nmodel: {made_with}\nexpect:\n"
        f"  min: {{accuracy: {accuracy - 0.01}}}\n  reference: {{accuracy: {accuracy}}}\n"
    )
    out = cli("verify", str(run), "--recipe", str(later)).stdout
    assert f"ok   accuracy {accuracy:.4g} >= {accuracy - 0.01:g}" in out
    later.write_text(later.read_text().replace(f"{accuracy - 0.01}", "0.999"))
    assert "FAIL accuracy" in cli("verify", str(run), "--recipe", str(later), exit_code=1).output
    # The default recipe's expectations are another model's: refused, not judged.
    other = cli("verify", str(run), "--recipe", "minilm", exit_code=1).output
    assert "expects results of model 'all-minilm-l6-v2'" in other and "FAIL" not in other
    bare = tmp_path / "bare.yaml"
    bare.write_text(f"task: sentiment\nmodel: {made_with}\n")
    assert (
        "has no 'expect:' section"
        in cli("verify", str(run), "--recipe", str(bare), exit_code=1).output
    )


# --------------------------------------------------------------------------- export
def test_export_writes_the_hub_folder_that_pipeline_loads(
    runs: dict[str, Path], cli: Any, tmp_path: Path
) -> None:
    from transformers import pipeline

    dest = tmp_path / "hub" / "my-model"
    cli("export", str(runs["good"]), str(dest))
    names = sorted(p.name for p in dest.iterdir())
    # No eval texts (predictions.jsonl) and no local paths (recipe.yaml): a hub may be public.
    assert names == sorted(
        [
            "README.md",
            "config.json",
            "model.safetensors",
            "results.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    )
    assert ModelCard.load(dest / "README.md").data.eval_results
    texts = ["a gripping , funny and moving film", "the plot is dull and the acting is worse"]
    ours = nlptasks.predict("sentiment", str(runs["good"] / "model"), texts, mixed_precision="no")
    theirs = pipeline("text-classification", model=str(dest))(texts)
    assert [p["label"] for p in ours] == [p["label"] for p in theirs]
    # Never over an existing folder.
    again = cli("export", str(runs["good"]), str(dest), exit_code=1)
    assert "exists already" in again.output
    assert sorted(p.name for p in dest.iterdir()) == names


def test_intervals_survive_a_best_checkpoint_from_long_ago(
    tiny_bert: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    """The best evaluation is the first of several: its statistics must still reach
    results.json and predictions.jsonl (the final model is evaluated again if needed)."""
    run = _run(
        tmp_path / "r",
        tiny_bert,
        data,
        "train.max_steps=14",
        "train.eval_every=1",
        "train.learning_rate=3.0",
        "train.metric_for_best=loss",
        "train.bootstrap_resamples=200",
    )
    results = json.loads((run / "results.json").read_text())
    assert set(results["confidence_intervals"]["eval"]) == {"loss", "accuracy", "macro_f1"}
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 400
    assert results["confidence_intervals"]["resamples"] == 200


def test_eval_writes_only_into_runs(
    runs: dict[str, Path], cli: Any, tmp_path: Path, data: dict[str, Path]
) -> None:
    exported = tmp_path / "exported"
    cli("export", str(runs["weak"]), str(exported))
    before = sorted(p.name for p in exported.iterdir())
    card = (exported / "README.md").read_text()
    cli("eval", "sentiment", "--model", str(exported), f"data.eval_path={data['other']}")
    assert sorted(p.name for p in exported.iterdir()) == before  # no evaluations.jsonl
    assert (exported / "README.md").read_text() == card
    # A folder of someone else's that happens to hold a README and a results.json.
    theirs = tmp_path / "theirs"
    shutil.copytree(runs["weak"] / "model", theirs / "model")
    (theirs / "README.md").write_text("# my notes\n")
    (theirs / "results.json").write_text("{}")
    cli("eval", "sentiment", "--model", str(theirs / "model"), f"data.eval_path={data['other']}")
    assert (theirs / "README.md").read_text() == "# my notes\n"
    assert not (theirs / "evaluations.jsonl").exists()


def test_bad_inputs_are_one_line(runs: dict[str, Path], cli: Any, tmp_path: Path) -> None:
    empty = shutil.copytree(runs["weak"], tmp_path / "empty")
    (empty / "predictions.jsonl").write_text("")
    result = cli("compare", str(runs["weak"]), str(empty), exit_code=1)
    assert "predictions.jsonl is empty" in result.output
    broken = shutil.copytree(runs["weak"], tmp_path / "broken")
    (broken / "predictions.jsonl").write_text('{"index": 0}\n')
    assert (
        "line 1, has no 'statistics' object"
        in cli("compare", str(runs["weak"]), str(broken), exit_code=1).output
    )
    nothing = _with_expectation(
        runs["weak"], tmp_path / "nothing", "expect:\n  reference: {accuracy: 0.9}\n"
    )
    assert "'expect' needs bounds" in cli("verify", str(nothing), exit_code=1).output
    odd = shutil.copytree(runs["weak"], tmp_path / "board" / "odd")
    results = json.loads((odd / "results.json").read_text())
    results["provenance"]["duration_seconds"] = 1e999  # inf once read back
    (odd / "results.json").write_text(json.dumps(results).replace("Infinity", "1e999"))
    out = cli("leaderboard", str(tmp_path / "board"), "--format", "json").stdout
    assert "NaN" not in out and "Infinity" not in out
    json.loads(out)
    cli("leaderboard", str(tmp_path / "board"))  # the table too


@pytest.mark.parametrize("name", ["smollm2", "smollm2-lora"])
def test_a_generation_recipe_expects_the_size_of_its_eval_set(name: str) -> None:
    """verify refuses a run on another eval set only when expect names its size: the size is
    counted here through nlptasks.data, as a run reads it (gpt2's WikiText needs the Hub)."""
    from nlptasks import data as loading
    from nlptasks.plugins.registry import load_task
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import source_reader

    recipe = load_recipe("generation", name, [])
    task = load_task("generation")
    splits = loading.load_splits(
        recipe.data, need_train=False, read_source=source_reader(task, recipe)
    )
    splits = task.prepare_data(splits, recipe)
    assert recipe.expect is not None and recipe.expect.examples == len(splits["eval"]) == 22
