"""Run by tests/test_fsdp.py under ``torchrun --nproc_per_node 2``: prepares a run (data,
model, features) with every tokenizer call counted, and prints one JSON line per process:
its rank, its tokenizer calls and the sizes of the features it ended up with."""

from __future__ import annotations

import json
import sys
from typing import Any

from transformers import PreTrainedTokenizerBase

from nlptasks.recipes import load_recipe
from nlptasks.runner import prepare_run

calls = 0
original = PreTrainedTokenizerBase.__call__


def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
    global calls
    calls += 1
    return original(self, *args, **kwargs)


PreTrainedTokenizerBase.__call__ = counted  # type: ignore[method-assign]

if __name__ == "__main__":
    recipe = load_recipe("sentiment", None, sys.argv[1:])
    prepared = prepare_run(recipe)
    features = {name: len(split) for name, split in prepared.features.items()}
    first = prepared.features["train"][0]["input_ids"]
    rank = prepared.accelerator.process_index
    print(json.dumps({"rank": rank, "calls": calls, "features": features, "first": first}))
