"""Predict: nlptasks' predict path against ``transformers.pipeline`` on one task, one batch size.

The same real model for both, fp32 on CPU, greedy decoding where the task generates:

- ``sentiment``: all-MiniLM-L6-v2 with a seeded 2-label head (the same weights in every
  process), SST-2 dev sentences; pipeline ``text-classification`` (``top_k=None``);
- ``qa``: MiniLM with a seeded QA head, SQuAD v1.1 dev questions. transformers 5 has no
  ``question-answering`` pipeline, so there is nothing to compare with: run it with
  ``--contenders nlptasks`` (the ``pipeline`` contender says so and stops);
- ``generation``: SmolLM2-135M (the ``smollm2-135m`` preset's checkpoint), the start of
  WikiText-2 valid paragraphs as plain prompts; pipeline ``text-generation``;
- ``translation``: the same SmolLM2 with the ``translation/smollm2`` recipe's chat prompt
  (English -> French), newstest2016 English sentences; pipeline ``text-generation`` given the
  same request as a chat message (transformers 5 has no ``translation`` pipeline; an
  encoder-decoder recipe has nothing to compare with offline).

Both contenders load their model outside the timed part (nlptasks: ``task.build_model``, as
``nlptasks.predict`` does; pipeline: ``transformers.pipeline(...)``), make one warm-up call on
a few records, then one timed call over all records, tokenisation included. nlptasks' timed
part is exactly what ``nlptasks.predict`` runs after loading (checking records, the task's
``predict`` under ``precision.inference``). Default sizes keep one run under a minute on 2
cores: 256 sentences, 64 questions, 16 prompts at batch 1 and 64 (two full batches) at 32,
16 new tokens.

    flock /tmp/heavy.lock env HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/harness.py predict \
        --param task=sentiment --param batch_size=32 --repeats 3
"""

from __future__ import annotations

import csv
import fcntl
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import SHARED_DATA, Result, model_flops

DESCRIPTION = "nlptasks predict vs transformers.pipeline (task=..., batch_size=1|32), fp32"
PARAMS: dict[str, Any] = {
    "task": "sentiment",
    "batch_size": 32,
    "examples": None,  # None: the task's default below (one run well under a minute)
    "max_new_tokens": 16,
}
BASELINE = "pipeline"
DEFAULT_EXAMPLES = {"sentiment": 256, "qa": 64, "generation": 16, "translation": 16}
# At batch 32 the generating tasks get two full batches: 16 prompts would be one batch of 16.
DEFAULT_EXAMPLES_BATCHED = {**DEFAULT_EXAMPLES, "generation": 64, "translation": 64}
WARMUP = 4
LABELS = {0: "negative", 1: "positive"}
# The translation recipe whose prompt both contenders use (a chat template request).
TRANSLATION_RECIPE = "smollm2"
TRANSLATION_REQUEST = "Translate from English to French:\n{text}"


# ---------------------------------------------------------------------------------- data
def records(task: str, count: int) -> list[dict[str, str]]:
    """The task's first ``count`` (+ warm-up) input records from the shared data."""
    wanted = count + WARMUP
    if task == "sentiment":
        with (SHARED_DATA / "sst2" / "dev.tsv").open(encoding="utf-8", newline="") as f:
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            return [{"text": row["sentence"]} for row in itertools.islice(rows, wanted)]
    if task == "qa":
        squad = json.loads((SHARED_DATA / "squad_v1.1" / "dev-v1.1.json").read_text("utf-8"))
        found = [
            {"question": qa["question"], "context": paragraph["context"]}
            for article in squad["data"]
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
        return found[:wanted]
    if task == "generation":
        lines = (SHARED_DATA / "wikitext2_raw" / "wiki.valid.raw").read_text("utf-8").splitlines()
        paragraphs = [x.strip() for x in lines if len(x.split()) > 20 and not x.startswith(" =")]
        return [{"prompt": " ".join(p.split()[:12])} for p in paragraphs[:wanted]]
    if task == "translation":
        lines = (SHARED_DATA / "wmt16_en_ro" / "newstest2016.en").read_text("utf-8").splitlines()
        return [{"text": x.strip()} for x in lines if x.strip()][:wanted]
    raise SystemExit(f"task={task!r}: choose sentiment, qa, generation or translation")


def split(params: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(warm-up records, timed records)."""
    task = params["task"]
    defaults = DEFAULT_EXAMPLES if int(params["batch_size"]) == 1 else DEFAULT_EXAMPLES_BATCHED
    count = int(params["examples"] or defaults[task])
    found = records(task, count)
    return found[count:], found[:count]


# -------------------------------------------------------------------------------- models
def model_dir(task: str) -> str:
    """The model both contenders load: SmolLM2 for the generating tasks, else MiniLM with a
    head seeded the same way, saved once (under a lock: contenders may race to make it)."""
    if task in ("generation", "translation"):
        from nlptasks.builtins.generation.smollm2 import smollm2_path

        return smollm2_path()
    target = Path(tempfile.gettempdir()) / "nlptasks-benchmarks" / f"minilm-{task}-seed0"
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            _make_minilm(task, target)
    return str(target)


def _make_minilm(task: str, target: Path) -> None:
    import torch
    import transformers
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from nlptasks.builtins.sentiment import minilm_path

    transformers.logging.set_verbosity_error()  # "newly initialized weights" is expected
    torch.manual_seed(0)
    path = minilm_path()
    if task == "sentiment":
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=2,
            id2label=LABELS,
            label2id={name: i for i, name in LABELS.items()},
            dtype=torch.float32,
        )
    else:
        model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32)
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(path).save_pretrained(tmp)
    tmp.rename(target)  # whole or absent


# ---------------------------------------------------------------------------- contenders
def run_nlptasks(params: dict[str, Any]) -> Result:
    from nlptasks.runner import check_records, load_task, model_recipe
    from nlptasks.training import precision

    task_name = params["task"]
    warmup, timed = split(params)
    path = model_dir(task_name)
    overrides = []
    if task_name == "generation":
        overrides = [f"generation.max_new_tokens={params['max_new_tokens']}"]
    if task_name == "translation":
        overrides = [f"options.max_target_length={params['max_new_tokens']}"]
    recipe = TRANSLATION_RECIPE if task_name == "translation" else None
    task = load_task(task_name)
    resolved = model_recipe(task_name, path, recipe, overrides)
    resolved.train.eval_batch_size = int(params["batch_size"])
    model, tokenizer = task.build_model(path, resolved, trained=True)
    model.eval()

    def predict(chunk: list[dict[str, str]]) -> list[dict[str, Any]]:
        checked = check_records(task, chunk)
        with precision.inference("no", model):
            return list(task.predict(model, tokenizer, checked, resolved, None))

    predict(warmup)
    start = time.perf_counter()
    found = predict(timed)
    seconds = time.perf_counter() - start
    if task_name == "sentiment":
        outputs: list[Any] = [p["probabilities"] for p in found]
    else:
        key = {"qa": "answer", "generation": "generated_text", "translation": "translation"}
        outputs = [p[key[task_name]] for p in found]
    return _result(params, model, tokenizer, timed, outputs, seconds)


def run_pipeline(params: dict[str, Any]) -> Result:
    import torch
    import transformers

    task_name = params["task"]
    if task_name == "qa":
        raise SystemExit(
            "transformers 5 has no question-answering pipeline: run qa with --contenders nlptasks"
        )
    transformers.logging.set_verbosity_error()
    warmup, timed = split(params)
    path = model_dir(task_name)
    size = int(params["batch_size"])
    call: Callable[[list[dict[str, str]]], list[Any]]
    if task_name == "sentiment":
        pipe = transformers.pipeline("text-classification", model=path, top_k=None)

        def call(chunk: list[dict[str, str]]) -> list[Any]:
            found = pipe([r["text"] for r in chunk], batch_size=size)
            return [{d["label"]: d["score"] for d in scores} for scores in found]

    else:
        pipe = transformers.pipeline("text-generation", model=path, dtype=torch.float32)
        if pipe.tokenizer.pad_token_id is None:  # as nlptasks does: padding is masked anyway
            pipe.tokenizer.pad_token = pipe.tokenizer.eos_token
        kwargs = {
            "batch_size": size,
            "max_new_tokens": int(params["max_new_tokens"]),
            "do_sample": False,
        }
        if task_name == "generation":

            def call(chunk: list[dict[str, str]]) -> list[Any]:
                found = pipe([r["prompt"] for r in chunk], return_full_text=False, **kwargs)
                return [rows[0]["generated_text"] for rows in found]

        else:

            def call(chunk: list[dict[str, str]]) -> list[Any]:
                chats = [
                    [{"role": "user", "content": TRANSLATION_REQUEST.format(text=r["text"])}]
                    for r in chunk
                ]
                found = pipe(chats, **kwargs)
                # The first line of the reply, as nlptasks' translation keeps.
                replies = [rows[0]["generated_text"][-1]["content"] for rows in found]
                return [reply.strip().split("\n", 1)[0].strip() for reply in replies]

    call(warmup)
    start = time.perf_counter()
    outputs = call(timed)
    seconds = time.perf_counter() - start
    return _result(params, pipe.model, pipe.tokenizer, timed, outputs, seconds)


def _result(
    params: dict[str, Any],
    model: Any,
    tokenizer: Any,
    timed: Sequence[dict[str, str]],
    outputs: list[Any],
    seconds: float,
) -> Result:
    """Seconds, examples, real input tokens (counted after the timed part), model FLOPs."""
    task = params["task"]
    if task == "qa":
        encoded = tokenizer([r["question"] for r in timed], [r["context"] for r in timed])
    else:
        texts = [r.get("text") or r.get("prompt") or "" for r in timed]
        encoded = tokenizer(texts)
    tokens = sum(len(ids) for ids in encoded["input_ids"])
    length = tokens / max(1, len(timed))
    result: Result = {
        "seconds": seconds,
        "examples": len(timed),
        "tokens": tokens,
        "precision": "fp32",
        "outputs": outputs,
    }
    if task in ("generation", "translation"):
        # Each new token is one more forward position: count them in the FLOPs.
        new = sum(len(tokenizer(str(o), add_special_tokens=False)["input_ids"]) for o in outputs)
        result["new_tokens"] = new
        result["flops"] = model_flops(
            model, tokens + new, length + new / max(1, len(timed)), training=False, causal=True
        )
    else:
        result["flops"] = model_flops(model, tokens, length, training=False)
    return result


CONTENDERS: dict[str, Callable[[dict[str, Any]], Result]] = {
    "nlptasks": run_nlptasks,
    "pipeline": run_pipeline,
}


# ------------------------------------------------------------------------------- outputs
def same_outputs(a: list[Any] | None, b: list[Any] | None) -> str:
    """How many outputs differ (labels by the most probable one, with the largest probability
    difference; texts exactly), and the first that differs."""
    if a is None or b is None:
        return "no outputs to compare"
    if len(a) != len(b):
        return f"{len(a)} outputs vs {len(b)}"
    if a and isinstance(a[0], dict):
        differ, largest = 0, 0.0
        for x, y in zip(a, b, strict=True):
            if set(x) != set(y):
                return f"label sets differ: {sorted(x)} vs {sorted(y)}"
            differ += max(x, key=x.__getitem__) != max(y, key=y.__getitem__)
            largest = max(largest, *(abs(x[k] - y[k]) for k in x))
        return f"{differ} of {len(a)} labels differ; max |prob diff| {largest:.1e}"
    differing = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    text = f"{len(differing)} of {len(a)} differ"
    if differing:
        i = differing[0]
        text += f"; first, #{i}: {a[i]!r} vs {b[i]!r}"
    return text
