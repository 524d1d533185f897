"""WMT16 English-Romanian from the shared data folder (the Hub's ``wmt16`` ``ro-en``, offline).

``wmt16_en_ro/`` holds newstest2016 (the official test set, 1,999 pairs), newsdev2016 (the
dev set, 1,999) and the first 10,000 Europarl v7 training pairs, as line-aligned ``.en`` /
``.ro`` files. The folder is found as the qa plugin finds SQuAD: ``$NLPTASKS_DATA``, else
``../shared/data``.
"""

from __future__ import annotations

from typing import Any

import datasets

from nlptasks import DataError
from nlptasks.builtins.qa.datasets import data_folders
from nlptasks.builtins.translation.data import read_parallel

SPLITS = {
    "train": "train.europarl-v7.first10k",
    "validation": "newsdev2016",
    "test": "newstest2016",
}


def load_wmt16_en_ro(config: Any = None) -> datasets.DatasetDict:
    """``train`` (10,000 Europarl pairs), ``validation`` (newsdev2016), ``test``
    (newstest2016), as ``translation: {en, ro}`` rows (the Hub's layout)."""
    for folder in data_folders():
        wmt = folder / "wmt16_en_ro"
        if all(
            (wmt / f"{stem}.{lang}").is_file() for stem in SPLITS.values() for lang in ("en", "ro")
        ):
            splits = {}
            for split, stem in SPLITS.items():
                pairs = read_parallel(str(wmt / f"{stem}.en"), str(wmt / f"{stem}.ro"))
                splits[split] = pairs.map(
                    lambda row: {"translation": {"en": row["source"], "ro": row["target"]}},
                    remove_columns=["source", "target"],
                )
            return datasets.DatasetDict(splits)
    looked = ", ".join(str(f / "wmt16_en_ro") for f in data_folders())
    raise DataError(
        f"Dataset 'wmt16-en-ro-subset' needs the newstest2016, newsdev2016 and Europarl files; "
        f"they are not in {looked}. Set NLPTASKS_DATA to the folder that holds wmt16_en_ro/, "
        f"or give files with options.source_path / options.target_path."
    )
