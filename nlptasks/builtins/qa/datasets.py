"""The offline default QA data: the SQuAD v1.1 files of the shared data folder.

SQuAD is not on PyPI, so the offline recipe reads two local files: the official dev set
(10,570 questions) and an 11-article prefix of the official train set (3,807 questions),
``squad_v1.1/dev-v1.1.json`` and ``squad_v1.1/train-v1.1.first11-articles.json`` in a data
folder. The folder is ``$NLPTASKS_DATA`` if set, else ``../shared/data`` seen from the working
directory or from this repository's checkout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets

from nlptasks import DataError, load_file
from nlptasks.builtins.qa.data import read_examples

TRAIN_FILE = "train-v1.1.first11-articles.json"
DEV_FILE = "dev-v1.1.json"


def data_folders() -> list[Path]:
    """Where the shared data folder may be, in order."""
    folders = []
    if os.environ.get("NLPTASKS_DATA"):
        folders.append(Path(os.environ["NLPTASKS_DATA"]).expanduser())
    folders.append(Path.cwd().parent / "shared" / "data")
    # nlptasks/builtins/qa/datasets.py in a checkout: the repository's parent holds shared/data.
    folders.append(Path(__file__).resolve().parents[4] / "shared" / "data")
    return folders


def load_squad_subset(config: Any = None) -> datasets.DatasetDict:
    """``train``: the 3,807-question train prefix; ``validation``: the full dev set."""
    for folder in data_folders():
        squad = folder / "squad_v1.1"
        if (squad / TRAIN_FILE).is_file() and (squad / DEV_FILE).is_file():
            return datasets.DatasetDict(
                {
                    "train": read_examples(load_file(str(squad / TRAIN_FILE)), "train"),
                    "validation": read_examples(load_file(str(squad / DEV_FILE)), "eval"),
                }
            )
    looked = ", ".join(str(f / "squad_v1.1") for f in data_folders())
    raise DataError(
        f"Dataset 'squad-v1.1-subset' needs {TRAIN_FILE} and {DEV_FILE}; they are not in "
        f"{looked}. Set NLPTASKS_DATA to the folder that holds squad_v1.1/, or give the files "
        f"with data.train_path=FILE data.eval_path=FILE."
    )
