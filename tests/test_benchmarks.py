"""The benchmark harness's own arithmetic: warm-up exclusion, slowed-machine discards, FLOP
counts, and that every workload module keeps the harness's interface. (The measurements
themselves live in BENCHMARKS.md, never in timing assertions.)"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def harness() -> Iterator[Any]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("harness")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_clock_leaves_out_the_warm_up_steps(harness: Any, monkeypatch) -> None:
    now = iter([0.0, 10.0, 11.0, 12.0, 13.5])  # the first step is slow (compilation, caches)
    monkeypatch.setattr(time, "perf_counter", lambda: next(now))
    clock = harness.StepClock(warmup=2)
    for loss in (9.0, 5.0, 4.0, 3.0, 2.0):
        clock.tick(examples=8, tokens=100, loss=loss)
    result = clock.result()
    # Timed from the end of step 2 (10.0) to the end of step 5 (13.5): steps 3, 4, 5.
    assert result["seconds"] == pytest.approx(3.5)
    assert result["examples"] == 24 and result["tokens"] == 300
    assert result["timed_steps"] == 3
    assert result["final_loss"] == 2.0  # the mean of the last 10% of steps (at least one)


def test_a_run_without_steps_after_the_warm_up_is_an_error(harness: Any) -> None:
    clock = harness.StepClock(warmup=3)
    for _ in range(3):
        clock.tick(8, 100)
    with pytest.raises(RuntimeError, match="warm-up"):
        clock.result()


def test_runs_on_a_slowed_machine_are_discarded_against_the_best_probe(harness: Any) -> None:
    def run(name: str, repeat: int, probe: float) -> dict[str, Any]:
        return {"contender": name, "repeat": repeat, "probe_bf16_tflops": probe}

    runs = {
        "ours": [run("ours", 0, 0.150), run("ours", 1, 0.110)],
        "theirs": [run("theirs", 0, 0.125), run("theirs", 1, 0.160)],
    }
    # The best probe came last: 0.110 is under 80% of 0.160, 0.125 (78%) too; 0.150 is not.
    assert harness.mark_slowed(runs) == ["ours run 2", "theirs run 1"]
    assert [r["discarded"] for r in runs["ours"]] == [False, True]


def test_model_flops_count_six_n_per_token_plus_attention(harness: Any, tmp_path: Path) -> None:
    import transformers

    from nlptasks.testing import make_tiny_bert

    model = transformers.AutoModel.from_pretrained(make_tiny_bert(tmp_path / "bert"))
    embeddings = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, torch_embedding())
        for p in m.parameters()
    )
    n = sum(p.numel() for p in model.parameters()) - embeddings
    assert harness.non_embedding_parameters(model) == n > 0
    layers, width = model.config.num_hidden_layers, model.config.hidden_size
    tokens, length = 1000, 20
    forward = 2 * n + 4 * layers * length * width
    assert harness.model_flops(model, tokens, length, training=False) == forward * tokens
    assert harness.model_flops(model, tokens, length) == 3 * forward * tokens
    causal = 2 * n + 2 * layers * length * width
    assert harness.model_flops(model, tokens, length, training=False, causal=True) == (
        causal * tokens
    )


def test_a_tied_lm_head_still_counts_as_a_matmul(harness: Any, tmp_path: Path) -> None:
    import transformers

    from nlptasks.testing import make_tiny_gpt2

    model = transformers.AutoModelForCausalLM.from_pretrained(make_tiny_gpt2(tmp_path / "gpt"))
    head = model.get_output_embeddings().weight
    assert head is model.get_input_embeddings().weight  # tied, as GPT-2 and SmolLM2
    body = sum(
        p.numel()
        for n, p in model.named_parameters()
        if not n.startswith(("transformer.wte", "transformer.wpe"))
    )
    assert harness.non_embedding_parameters(model) == body + head.numel()


def torch_embedding() -> type:
    import torch

    return torch.nn.Embedding


def test_every_workload_keeps_the_harness_interface(harness: Any) -> None:
    names = harness.workloads()
    assert {"classification", "qa", "clm", "translation", "evaluation", "predict"} <= set(names)
    assert {"classification_quality", "qa_quality", "startup"} <= set(names)
    for name in names:
        module = harness.load_workload(name)
        assert isinstance(module.DESCRIPTION, str) and module.DESCRIPTION, name
        assert isinstance(module.PARAMS, dict), name
        assert module.CONTENDERS and all(callable(f) for f in module.CONTENDERS.values()), name
        baseline = getattr(module, "BASELINE", None)
        assert baseline is None or baseline in module.CONTENDERS, name
        quality = getattr(module, "QUALITY", None)
        assert quality is None or isinstance(quality, str), name
