"""Shared fixtures: no network, isolated caches, a tiny BERT trained on real SST-2 text."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports huggingface_hub: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["NLPTASKS_LOAD_PLUGINS"] = ""  # entry points are off unless a test turns them on

# The suite uses the fixtures nlptasks ships for plugin authors (tiny_bert, offline) and
# overrides only the texts its tiny BERT's vocabulary is trained on (tiny_texts below).
pytest_plugins = ["nlptasks.testing"]

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SST2 = SHARED_DATA / "sst2"


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    cache = tmp_path_factory.mktemp("cache")
    old = {k: os.environ.get(k) for k in ("NLPTASKS_CACHE", "HF_DATASETS_CACHE")}
    os.environ["NLPTASKS_CACHE"] = str(cache / "nlptasks")
    os.environ["HF_DATASETS_CACHE"] = str(cache / "datasets")
    import datasets

    # datasets reads HF_DATASETS_CACHE at import; point its config there too.
    datasets.config.HF_DATASETS_CACHE = Path(os.environ["HF_DATASETS_CACHE"])
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    from nlptasks.plugins import manager as plugins

    plugins.reset()
    yield
    plugins.reset()


def _torch_state() -> dict[str, object]:
    """What a test must leave as it found it: torch's process-wide settings."""
    import torch

    return {
        "autocast cpu": torch.is_autocast_enabled("cpu"),
        "autocast dtype": torch.get_autocast_dtype("cpu"),
        "grad enabled": torch.is_grad_enabled(),
        "default dtype": torch.get_default_dtype(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


@pytest.fixture(autouse=True)
def _torch_state_unchanged() -> Iterator[None]:
    """A test that leaves autocast on (or grad off) changes what later tests compute; fail
    the test that leaked it, not a later one."""
    before = _torch_state()
    yield
    after = _torch_state()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the test changed torch's global state (before, after): {changed}"


def sst2_rows(split: str, limit: int | None = None) -> list[tuple[str, int]]:
    with open(SST2 / f"{split}.tsv", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        rows = [(sentence.strip(), int(label)) for sentence, label in reader]
    return rows[:limit] if limit else rows


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    """The shipped ``tiny_bert`` fixture's vocabulary, trained here on real SST-2 sentences."""
    return [text for text, _ in sst2_rows("train", 5000)]


@pytest.fixture
def sst2_small(tmp_path: Path) -> tuple[Path, Path]:
    """400 SST-2 training rows and 200 dev rows as TSV files in the GLUE format."""
    paths = []
    for split, limit in (("train", 400), ("dev", 200)):
        path = tmp_path / f"{split}.tsv"
        lines = (SST2 / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[: limit + 1]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]
