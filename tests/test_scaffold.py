"""``nlptasks plugins new``: the scaffolded package is clean, installable, and its own tests
(the conformance kit) pass as generated, for every task shape."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nlptasks.plugins.scaffold import SHAPES
from nlptasks.testing import TaskConformance
from tests.venvs import REPO, build_wheel, clean_env, fresh_venv, pip

RUFF = Path(sys.executable).with_name("ruff")


def test_new_writes_an_installable_package(cli: Any, tmp_path: Path) -> None:
    result = cli("plugins", "new", "doc-tags", "--task-shape", "tokens", "-d", str(tmp_path))
    root = tmp_path / "nlptasks-doc-tags"
    assert f"Created {root}" in result.stdout
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == [
        "README.md",
        "nlptasks_doc_tags/__init__.py",
        "nlptasks_doc_tags/recipes/default.yaml",
        "nlptasks_doc_tags/sample.py",
        "nlptasks_doc_tags/task.py",
        "pyproject.toml",
        "tests/conftest.py",
        "tests/test_doc_tags.py",
    ]
    for path in root.rglob("*"):
        if path.is_file():
            assert not re.search(r"\{\{\w+\}\}", path.read_text()), f"placeholder left in {path}"
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.nlptasks]\ndoc-tags = "nlptasks_doc_tags"' in pyproject
    task = (root / "nlptasks_doc_tags/task.py").read_text()
    assert "class DocTagsTask:" in task
    assert 'pipeline_tag="token-classification"' in task


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["ab", "a-rather-long-task-name-x"])
def test_scaffold_is_lint_clean(cli: Any, tmp_path: Path, shape: str, name: str) -> None:
    cli("plugins", "new", name, "--task-shape", shape, "-d", str(tmp_path))
    root = tmp_path / f"nlptasks-{name}"
    for args in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        done = subprocess.run([str(RUFF), *args], cwd=root, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module: the first run reads torch's and transformers' types
    (about a minute), the others reuse them."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.parametrize("shape", SHAPES)
def test_scaffold_type_checks(cli: Any, tmp_path: Path, shape: str, mypy_cache: Path) -> None:
    """mypy, with the generated pyproject's settings, finds no error in the package or its
    tests, against this nlptasks (the API the templates use: TaskInfo, Step, Scores, ...)."""
    cli("plugins", "new", "my-task", "--task-shape", shape, "-d", str(tmp_path))
    root = tmp_path / "nlptasks-my-task"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--cache-dir", str(mypy_cache)]
        + ["nlptasks_my_task", "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Emotion", "'Emotion' is not a task name"),
        ("2fast", "'2fast' is not a task name"),
        ("a--b", "'a--b' is not a task name"),
    ],
)
def test_bad_names_are_one_line(cli: Any, tmp_path: Path, name: str, problem: str) -> None:
    result = cli("plugins", "new", name, "-d", str(tmp_path), exit_code=1)
    assert problem in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("shape", "model_shape", "description"),
    [
        ("classification", "encoder", "Text classification."),
        ("tokens", "encoder", "Token classification (one tag per word)."),
        ("generation", "causal", "Causal language modelling: perplexity and continuations."),
    ],
)
def test_each_shape_gets_its_own_model_and_description(
    cli: Any, tmp_path: Path, shape: str, model_shape: str, description: str
) -> None:
    cli("plugins", "new", "x", "--task-shape", shape, "-d", str(tmp_path))
    root = tmp_path / "nlptasks-x"
    assert f'model_shape = "{model_shape}"' in (root / "tests/test_x.py").read_text()
    assert f'description="{description}"' in (root / "nlptasks_x/__init__.py").read_text()
    assert f'description = "{description}"' in (root / "pyproject.toml").read_text()


def test_every_value_reaches_the_templates() -> None:
    """A value the scaffold computes but no template uses is a template that hard-codes it."""
    from importlib.resources import files

    templates = files("nlptasks") / "templates" / "plugin"
    text = "".join(
        (templates / shape / name).read_text()
        for shape in ("common", *SHAPES)
        for name in [p.name for p in (templates / shape).iterdir()]
    )
    used = set(re.findall(r"\{\{(\w+)\}\}", text))
    assert used == {
        "task",
        "module",
        "package",
        "dist",
        "Class",
        "description",
        "shape",
        "model_shape",
        "predict_example",
        "nlptasks_version",
    }


@pytest.mark.parametrize("name", ["sentiment", "qa", "generation", "translation"])
def test_builtin_task_names_are_refused(cli: Any, tmp_path: Path, name: str) -> None:
    result = cli("plugins", "new", name, "-d", str(tmp_path), exit_code=1)
    assert f"'{name}' is the name of a built-in nlptasks task" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_file_as_directory_is_one_line(cli: Any, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    result = cli("plugins", "new", "x", "-d", str(afile), exit_code=1)
    assert f"'{afile}' is a file, not a folder" in result.output


def test_an_existing_folder_is_never_overwritten(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "nlptasks-emotion").mkdir()
    (tmp_path / "nlptasks-emotion" / "mine.txt").write_text("keep")
    result = cli("plugins", "new", "emotion", "-d", str(tmp_path), exit_code=1)
    assert "exists already" in result.output
    assert [p.name for p in (tmp_path / "nlptasks-emotion").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nlptasks-emotion"]  # no staging left


def test_unknown_shape_is_refused(cli: Any, tmp_path: Path) -> None:
    result = cli("plugins", "new", "x", "--task-shape", "ranking", "-d", str(tmp_path), exit_code=2)
    assert "'ranking' is not one of 'classification', 'tokens', 'generation'" in result.output


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scaffold-venv")
    return fresh_venv(root / "venv", build_wheel(root / "dist"))


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_scaffold_tests_pass_as_generated(python: Path, tmp_path: Path, shape: str) -> None:
    name = f"my-{shape}"
    made = subprocess.run(
        [str(python), "-m", "nlptasks.cli", "plugins", "new", name, "--task-shape", shape],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert made.returncode == 0, made.stderr
    root = tmp_path / f"nlptasks-{name}"
    pip(
        "install", "--no-deps", "--no-index", "--no-build-isolation", "-q", str(root), python=python
    )
    shutil.rmtree(root / "build", ignore_errors=True)
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        env=clean_env(NLPTASKS_CACHE=str(tmp_path / "cache")),
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    # Every check of the kit and the sample test ran; none was skipped.
    checks = [name for name in dir(TaskConformance) if name.startswith("test_")]
    assert re.match(rf"{len(checks) + 1} passed", summary), summary


def test_the_classification_template_reads_text_pairs(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``text_pair`` column is tokenized as a pair, and its ``token_type_ids`` reach the
    model through the padding (training and predict): the second text changes the answer."""
    import datasets
    import torch

    from nlptasks.batching import collate_for
    from nlptasks.plugins.scaffold import new_plugin
    from nlptasks.recipes import load_recipe

    root = new_plugin("nli", "classification", tmp_path)
    monkeypatch.syspath_prepend(str(root))
    from nlptasks_nli.task import NliTask  # type: ignore[import-not-found]

    task = NliTask()
    rows = {"text": ["a film", "a dull film"], "text_pair": ["it is good", "no"]}
    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({**rows, "label": ["yes", "no"]})}
    )
    prepared = task.prepare_data(splits, None)
    model, tokenizer = task.build_model(str(tiny_bert), None)
    recipe = load_recipe("sentiment", None, [f"model={tiny_bert}"])
    features = task.preprocess(prepared["train"], tokenizer, recipe)
    batch = collate_for(task, tokenizer)([dict(f) for f in features])
    assert batch["token_type_ids"].max() == 1  # the pair's second text
    assert "text_pair" not in batch
    model.eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.bert.embeddings.token_type_embeddings.weight, std=1.0)
    alone = task.predict(model, tokenizer, [{"text": "a film"}], recipe)
    paired = task.predict(model, tokenizer, [{"text": "a film", "text_pair": "it is good"}], recipe)
    assert alone[0]["score"] != paired[0]["score"]


def test_a_card_says_how_a_task_is_used() -> None:
    """The card's "Use" section: the task's own snippet (usage_snippet), else a record of its
    input fields and, for a pair, the pipeline's {"text", "text_pair"} call."""
    from nlptasks.errors import PluginError
    from nlptasks.runs.card import task_usage, usage
    from nlptasks.task import MetricSpec, TaskInfo

    paired = usage("nli", "text-classification", ("premise", "hypothesis"))
    assert '{"premise": "<premise>", "hypothesis": "<hypothesis>"}' in paired
    assert 'pipe({"text": "<premise>", "text_pair": "<hypothesis>"})' in paired
    assert 'pipe("<text>")' in usage("sentiment", "text-classification")

    class Described:
        info = TaskInfo("ranker", "text-classification", (MetricSpec("accuracy", True),))

        def __init__(self, snippet: object) -> None:
            self.snippet = snippet

        def usage_snippet(self, model_path: str) -> object:
            return self.snippet if self.snippet is None else f"{self.snippet} {model_path}"

    assert task_usage(Described("```bash\nrank")).startswith("```bash\nrank PATH/TO/model")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="usage_snippet\\(\\) must return Markdown text"):
        task_usage(Described(None))  # type: ignore[arg-type]
