"""``nlptasks estimate`` / ``nlptasks run --dry-run``: the estimate against a real short run
of the same recipe (peak memory within ±30%), LoRA counts against peft's, every built-in
task through the task contract, the JSON keys, and one-line refusals.

The step-time comparison (within 2x) is timing, which tests do not assert: it is checked by
``benchmarks/estimate_check.py``. Here the wall time is only checked for its arithmetic.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nlptasks.testing import offline_env

# A BERT of 21M parameters (hidden 512, 6 layers): its weights, gradients and AdamW states
# (~330 MB) outweigh what varies in a process's resident set from run to run.
BERT_21M = {
    "hidden_size": 512,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "intermediate_size": 2048,
    "max_position_embeddings": 128,
}
STEPS = 8


@pytest.fixture(scope="module")
def sst2_recipe(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Arguments of `nlptasks run` for the 21M BERT on 600 real SST-2 sentences."""
    from nlptasks.testing import make_tiny_bert
    from tests.conftest import SST2

    work = tmp_path_factory.mktemp("estimate")
    train, dev = work / "train.tsv", work / "dev.tsv"
    lines = (SST2 / "train.tsv").read_text().splitlines()
    train.write_text("\n".join(lines[:601]) + "\n")
    dev.write_text("\n".join((SST2 / "dev.tsv").read_text().splitlines()[:101]) + "\n")
    texts = [line.split("\t")[0] for line in lines[1:2001]]
    model = make_tiny_bert(work / "bert21m", texts, shape=BERT_21M, vocab_size=4000)
    return [
        "sentiment",
        "--recipe",
        "minilm",
        f"model={model}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.batch_size=16",
        f"train.max_steps={STEPS}",
        "train.log_every=1",
        "train.save_checkpoints=false",
        "train.bootstrap_resamples=0",
    ]


def _nlptasks(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nlptasks", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=offline_env(),
        timeout=300,
    )


@pytest.fixture(scope="module")
def dry_and_real(
    sst2_recipe: list[str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path, Path]:
    """The --dry-run estimate (JSON), and a real run of the same recipe, each in a fresh
    process as a user starts them; and the folder the dry run ran in."""
    dry_cwd = tmp_path_factory.mktemp("dry")
    dry = _nlptasks(dry_cwd, "run", *sst2_recipe, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    run_dir = tmp_path_factory.mktemp("real") / "run"
    real = _nlptasks(run_dir.parent, "run", *sst2_recipe, "--output-dir", str(run_dir), "-q")
    assert real.returncode == 0, real.stderr[-3000:]
    return json.loads(dry.stdout), run_dir, dry_cwd


def test_peak_memory_is_within_30_percent_of_a_real_run(
    dry_and_real: tuple[dict[str, Any], Path, Path],
) -> None:
    found, run_dir, _ = dry_and_real
    results = json.loads((run_dir / "results.json").read_text())
    real_peak = results["train"]["peak_memory_mb_per_process"][0]
    estimated = found["memory"]["peak_mb"]
    print(f"peak memory: estimated {estimated} MB, real {real_peak} MB")
    assert 0.7 * real_peak <= estimated <= 1.3 * real_peak, (estimated, real_peak)
    # The model states alone are most of it: the comparison is not all runtime.
    states = sum(found["memory"][k] for k in ("weights_mb", "gradients_mb", "optimizer_mb"))
    assert states > 0.25 * real_peak


def test_counts_and_steps_are_the_real_runs(
    dry_and_real: tuple[dict[str, Any], Path, Path],
) -> None:
    found, run_dir, _ = dry_and_real
    train = json.loads((run_dir / "results.json").read_text())["train"]
    assert found["parameters"]["total"] == train["parameters"]
    assert found["parameters"]["trainable"] == train["trainable_parameters"]
    assert found["tokens"]["optimizer_steps"] == train["steps"] == STEPS
    steps = [
        json.loads(line)
        for line in (run_dir / "events.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "step"
    ]
    # The real tokens of the run's own steps (the sampler's order) are the estimate's.
    assert found["tokens"]["training_tokens"] == steps[-1]["tokens_seen"]
    wall = found["time"]
    assert found["probe"]["steps"] >= 2
    assert wall["seconds"] == pytest.approx(wall["step_seconds"] * STEPS, rel=0.01)
    elapsed = [s["elapsed_seconds"] for s in steps]
    real_step = statistics.mean(b - a for a, b in zip(elapsed, elapsed[1:], strict=False))
    print(f"step time: estimated {wall['step_seconds']:.3f} s, real {real_step:.3f} s")


def test_json_has_every_part_and_writes_no_run(
    dry_and_real: tuple[dict[str, Any], Path, Path],
) -> None:
    found, _, dry_cwd = dry_and_real
    assert {
        "parameters",
        "tokens",
        "flops",
        "memory",
        "time",
        "machine",
        "verdict",
        "probe",
    } <= set(found)
    assert "6·N·T" in found["flops"]["method"]
    assert found["flops"]["total"] > 6 * found["parameters"]["non_embedding"]
    assert found["verdict"]["fits"] is True
    assert found["machine"]["cpu"] and found["machine"]["memory_mb"] > 0
    assert list(dry_cwd.iterdir()) == []  # no runs/ folder, nothing at all


@pytest.mark.parametrize(
    ("task", "shape", "recipe", "extra"),
    [
        ("sentiment", "encoder", "minilm", []),
        ("qa", "encoder", "minilm", []),
        ("generation", "causal", "smollm2-lora", ["lora.target_modules=[c_attn]"]),
        ("translation", "seq2seq", "marian-en-ro", []),
    ],
)
def test_every_builtin_task_counts_the_model_it_would_train(
    task: str,
    shape: str,
    recipe: str,
    extra: list[str],
    tiny_data: Any,
    tiny_model: Any,
) -> None:
    """The meta-device model's counts are those of the real model the run builds (peft's
    own count of trainable LoRA weights included), for each built-in task."""
    from nlptasks import data, models
    from nlptasks.estimate import estimate
    from nlptasks.plugins.registry import load_task
    from nlptasks.recipes import load_recipe
    from nlptasks.training import lora

    tiny = tiny_data(task)
    model_dir = tiny_model(shape, tiny.texts)
    overrides = [f"model={model_dir}", *tiny.overrides, *extra]
    found = estimate(task, recipe, overrides, probe=False)

    resolved = load_recipe(task, recipe, overrides)
    real_task = load_task(task)
    splits = real_task.prepare_data(data.load_splits(resolved.data), resolved)
    model, _ = real_task.build_model(models.resolve_model(resolved.model), resolved)
    if resolved.lora.enabled:
        model = lora.add_adapters(model, resolved.lora, recipe)
        model.print_trainable_parameters()  # peft's own count, for the log
        assert found.size.lora
    trainable, total = lora.trainable_parameters(model)
    assert (found.size.trainable, found.size.parameters) == (trainable, total)
    assert found.tokens.examples == len(splits["train"])
    assert found.time.seconds > 0 and "no probe (--no-probe)" in found.time.method


def test_a_third_party_task_is_estimated_through_the_contract(
    isolated_plugins: Any, tiny_bert: Path
) -> None:
    """The docs' quick-start plugin (a task the core knows nothing of): its 3-label head,
    sized from its data in its own build_model, is counted, and its probe trains."""
    from nlptasks.estimate import estimate

    isolated_plugins("docs.examples.topic_task")
    found = estimate("topic", None, [f"model={tiny_bert}", "train.max_steps=3"])
    assert found.size.architecture == "BertForSequenceClassification"
    assert found.size.trainable == found.size.parameters
    # 3 labels from the plugin's data: a 2-label head would have hidden + 1 fewer weights.
    assert found.size.parameters == _built_parameters(tiny_bert, labels=3)
    assert found.tokens.examples == 72 and found.tokens.optimizer_steps == 3
    assert found.probe is not None and found.probe.steps == 4
    assert found.time.seconds == pytest.approx(3 * found.time.step_seconds)


def _built_parameters(model: Path, labels: int) -> int:
    from transformers import AutoModelForSequenceClassification

    built = AutoModelForSequenceClassification.from_pretrained(model, num_labels=labels)
    return sum(p.numel() for p in built.parameters())


def test_a_sample_of_the_train_split_estimates_the_whole(
    sst2_recipe: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens and steps from 200 random examples of 600, scaled up, are near the exact ones."""
    from nlptasks.estimate import estimate, tokens

    overrides = [*sst2_recipe[3:], "~train.max_steps"]
    whole = estimate("sentiment", "minilm", overrides, probe=False).tokens
    monkeypatch.setattr(tokens, "SAMPLE_EXAMPLES", 200)
    sampled = estimate("sentiment", "minilm", overrides, probe=False).tokens
    assert whole.sampled is None and sampled.sampled == 200
    assert sampled.examples == whole.examples == 600
    assert sampled.tokens_per_epoch == pytest.approx(whole.tokens_per_epoch, rel=0.15)
    assert sampled.optimizer_steps == pytest.approx(whole.optimizer_steps, rel=0.15)


def test_a_run_that_does_not_fit_gets_suggestions_that_fit_better() -> None:
    from dataclasses import replace

    from nlptasks.estimate.memory import MB, Machine, Shape, estimate_memory
    from nlptasks.estimate.size import ModelSize
    from nlptasks.estimate.verdict import verdict

    size = ModelSize(  # bert-base's shape, fully trainable, float32
        architecture="BertForSequenceClassification",
        parameters=109_483_778,
        trainable=109_483_778,
        embedding=23_837_184,
        lora=False,
        layers=12,
        hidden=768,
        heads=12,
        vocab=0,
        weight_bytes=4 * 109_483_778,
        trainable_bytes=4 * 109_483_778,
        matmul_parameters=85_000_000,
    )
    shape = Shape(batch=32, seq=128, precision="no")
    memory = estimate_memory(size, shape, runtime=500 * MB, device="cpu")
    small = Machine("cpu", 2, 2, None, memory=memory.total * 0.8, memory_kind="RAM")
    found = verdict(memory, size, shape, 32, 1, small, can_bf16=True)
    assert not found.fits
    first_words = [s.split(" ")[0] for s in found.suggestions]
    assert first_words == [
        "train.mixed_precision=bf16",
        "lora.enabled=true",
        "train.gradient_accumulation_steps=4",
        "gradient",
    ]
    for suggestion in found.suggestions[:3]:  # each says what its peak would be: lower
        mb = float(suggestion.rsplit("about ", 1)[1].removesuffix(" MB").replace(",", ""))
        assert mb < memory.total / MB
    roomy = replace(small, memory=memory.total * 2)
    assert verdict(memory, size, shape, 32, 1, roomy, can_bf16=True).fits
    # The accumulation suggested divides the micro-batch (the schema refuses a batch size
    # that is not a multiple of it): 30 -> 3 x 10, 9 -> 3 x 3, a prime 7 -> none.
    for micro, expected in ((30, "=3 (micro-batches of 10"), (9, "=3 (micro-batches of 3")):
        said = verdict(memory, size, shape, micro, 1, small, can_bf16=True).suggestions
        assert any(f"train.gradient_accumulation_steps{expected}" in s for s in said), said
    said = verdict(memory, size, shape, 7, 1, small, can_bf16=True).suggestions
    assert not any("gradient_accumulation_steps" in s for s in said), said


def test_a_tied_output_layer_counts_in_the_flops(tmp_path: Path) -> None:
    """Every token goes through a language model's output layer, tied to its embeddings or
    not: the FLOPs' N holds it either way."""
    import transformers

    from nlptasks.estimate.size import measure

    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=1000)
    tied = measure(transformers.GPT2LMHeadModel(config))
    config.tie_word_embeddings = False
    untied = measure(transformers.GPT2LMHeadModel(config))
    assert tied.tied_output == 1000 * 32 and untied.tied_output == 0
    assert tied.per_token == untied.per_token == untied.non_embedding


def test_the_meta_model_holds_no_weights(tiny_bert: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from nlptasks.estimate.size import weights_left_out

    with weights_left_out():
        model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=5)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.classifier.out_features == 5  # the task's arguments still count
    real = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=5)
    assert {p.device.type for p in real.parameters()} == {"cpu"}  # patched only inside


def test_a_bad_input_is_one_line(cli: Any, tiny_bert: Path) -> None:
    missing = cli(
        "run",
        "sentiment",
        f"model={tiny_bert}",
        "data.train_path=/no/such/train.tsv",
        "--dry-run",
        exit_code=1,
    )
    assert missing.output.strip().count("\n") == 0 and "/no/such/train.tsv" in missing.output
    refused = cli("run", "sentiment", "--dry-run", "--output-dir", "x", exit_code=1)
    assert refused.output.strip() == (
        "Error: --dry-run trains nothing and writes no run: drop --output-dir."
    )
    typo = cli("estimate", "sentimnt", exit_code=1)
    assert "Did you mean 'sentiment'" in typo.output and typo.output.strip().count("\n") == 0


def test_only_a_sharded_recipe_gets_the_one_process_note() -> None:
    """The default (ddp, one process runs it plainly) needs no note; FSDP is not modelled."""
    from nlptasks.estimate import _left_out
    from nlptasks.recipes import load_recipe

    assert _left_out(load_recipe("sentiment", "minilm", [])) == ()
    sharded = load_recipe("sentiment", "minilm", ["distributed.strategy=fsdp"])
    [note] = _left_out(sharded)
    assert "one process, unsharded" in note
