"""examples/nlptasks-ner as a user gets it: a separate distribution installed into a fresh
virtualenv next to the nlptasks wheel, used from the command line, passing the conformance
kit in its own test suite, and saved in a form transformers' pipeline loads."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nlptasks.testing import make_tiny_bert
from tests.venvs import REPO, build_wheel, clean_env, fresh_venv, pip

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "nlptasks-ner"


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ner-venv")
    interpreter = fresh_venv(root / "venv", build_wheel(root / "dist"))
    # A copy: building in the source tree would leave build/ and egg-info folders there.
    source = shutil.copytree(EXAMPLE, root / "nlptasks-ner", ignore=_build_outputs)
    pip(
        "install",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "-q",
        str(source),
        python=interpreter,
    )
    return interpreter


def _build_outputs(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n in ("build", "__pycache__") or n.endswith(".egg-info")]


def nlptasks(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "nlptasks.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(NLPTASKS_CACHE=str(cwd / "cache"), NLPTASKS_STRICT_PLUGINS="1"),
        timeout=600,
    )


def test_ner_plugin_installed_beside_the_wheel(python: Path, tmp_path: Path) -> None:
    listed = nlptasks(python, tmp_path, "plugins")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if " ner " in f" {line} ")
    assert "nlptasks-ner" in row and "0.1.0" in row, listed.stdout
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import nlptasks, nlptasks_ner; print(nlptasks.__file__); print(nlptasks_ner.__file__)",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,  # not the repository, whose nlptasks/ would shadow the wheel's
        check=True,
    ).stdout.split()
    venv_root = str(python.parent.parent)
    assert all(path.startswith(venv_root) for path in where), where  # installed copies


def test_ner_run_eval_predict_and_pipeline(python: Path, tmp_path: Path) -> None:
    model = make_tiny_bert(tmp_path / "tiny", _sample_texts(python), dropout=0.0)
    run_dir = tmp_path / "run"
    ran = nlptasks(
        python,
        tmp_path,
        "run",
        "ner",
        f"model={model}",
        "train.epochs=6",
        "train.learning_rate=3e-3",
        "train.mixed_precision=no",
        "-o",
        str(run_dir),
        "-q",
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]["eval"]
    assert set(metrics) == {"loss", "precision", "recall", "f1", "accuracy"}
    assert metrics["f1"] > 0.8, metrics

    evaluated = nlptasks(
        python, tmp_path, "eval", "ner", "--model", str(run_dir / "model"), "--json"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout) == pytest.approx(metrics, rel=1e-6)

    predicted = nlptasks(
        python,
        tmp_path,
        "predict",
        "ner",
        "--model",
        str(run_dir / "model"),
        "Lucy Grant flew to Lagos .",
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    text = "Lucy Grant flew to Lagos ."
    entities = json.loads(predicted.stdout)["entities"]
    assert all(e["word"] == text[e["start"] : e["end"]] for e in entities), entities
    found = {(e["entity_group"], e["start"]) for e in entities}
    assert ("PER", 0) in found and ("LOC", text.index("Lagos")) in found, entities

    from transformers import pipeline

    tagger = pipeline(
        "token-classification", model=str(run_dir / "model"), aggregation_strategy="first"
    )
    found = {(e["entity_group"], e["word"]) for e in tagger("Lucy Grant flew to Lagos .")}
    assert ("LOC", "lagos") in {(g, w.lower()) for g, w in found}, found


def test_ner_own_suite_passes_the_conformance_kit(python: Path, tmp_path: Path) -> None:
    suite = shutil.copytree(EXAMPLE / "tests", tmp_path / "suite" / "tests")
    shutil.copy(EXAMPLE / "pyproject.toml", suite.parent)
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        capture_output=True,
        text=True,
        cwd=suite.parent,
        env=clean_env(NLPTASKS_CACHE=str(tmp_path / "cache")),
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary


def _sample_texts(python: Path) -> list[str]:
    """The generated sentences of the installed plugin (the tiny tokenizer's vocabulary)."""
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import json; from nlptasks_ner.sample import sentences; "
            "print(json.dumps([' '.join(w) for w, _ in sentences()]))",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=python.parent,
        check=True,
    ).stdout
    return list(json.loads(out))
