"""The shared trainer on a tiny real BERT: accumulation, learning, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from nlptasks.events import EventLog
from nlptasks.recipes import load_recipe
from nlptasks.runner import load_task, prepare_run
from nlptasks.training.trainer import Trainer


class Collect:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def handle(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def _setup(tiny_bert: Path, train_file: Path, dev_file: Path, *overrides: str) -> tuple:
    recipe = load_recipe(
        "sentiment",
        "minilm",
        [
            f"model={tiny_bert}",
            f"data.train_path={train_file}",
            f"data.eval_path={dev_file}",
            "train.mixed_precision=no",  # exact comparisons; a test may ask for bf16
            *overrides,
        ],
    )
    # The runner's own preparation; its seeding makes the new head start the same every call.
    prepared = prepare_run(recipe)
    task, model, tokenizer = prepared.task, prepared.model, prepared.tokenizer
    # No dropout: two runs that see the same examples must compute the same gradients.
    model.config.hidden_dropout_prob = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    # The evaluator travels with the features: the trainer evaluates with it.
    return recipe, task, model, tokenizer, {**prepared.features, "evaluator": prepared.evaluator}


def _one_step(tiny_bert: Path, files: tuple[Path, Path], examples: int, accumulation: int) -> dict:
    recipe, task, model, tokenizer, features = _setup(
        tiny_bert,
        *files,
        f"data.max_train_examples={examples}",
        "train.batch_size=32",
        f"train.gradient_accumulation_steps={accumulation}",
        "train.max_steps=1",
        "train.learning_rate=1e-2",
        "train.group_by_length=false",
        "train.warmup_ratio=0",
        "train.scheduler=constant",
    )
    torch.manual_seed(0)
    trainer = Trainer(task, model, tokenizer, recipe.train, features["train"], None)
    result = trainer.train()
    assert result.global_step == 1
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, result


@pytest.mark.parametrize("examples", [32, 30])
def test_accumulation_4x8_equals_batch_32(
    tiny_bert: Path, sst2_small: tuple[Path, Path], examples: int
) -> None:
    # 30 examples: micro-batches of 8, 8, 8, 6, so the loss must be weighted by example count.
    full, full_result = _one_step(tiny_bert, sst2_small, examples, 1)
    accumulated, acc_result = _one_step(tiny_bert, sst2_small, examples, 4)
    assert full_result.train_loss == pytest.approx(acc_result.train_loss, rel=1e-5)
    changed = 0
    for name, value in full.items():
        # Adam divides by sqrt(v): float noise in near-zero gradients moves a
        # weight by ~1e-5 of a 1e-2 step; real accumulation errors move it by ~1e-2.
        torch.testing.assert_close(accumulated[name], value, rtol=1e-4, atol=1e-4)
        changed += 1
    assert changed > 10


def _window_gradients(trainer: Trainer, window: list[dict[str, torch.Tensor]]) -> dict:
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.0)
    trainer.model.zero_grad(set_to_none=True)
    trainer._optimizer_step(window, optimizer)
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_uneven_window_gradient_equals_full_batch(
    tiny_bert: Path, sst2_small: tuple[Path, Path]
) -> None:
    """The gradient of micro-batches 8+8+8+6 equals that of one batch of 30.

    Adam hides gradient scale, so this compares raw gradients; a per-batch mean (the common
    off-by-weighting bug) gives 8/30 vs 1/4 weights and fails here.
    """
    recipe, task, model, tokenizer, features = _setup(
        tiny_bert, *sst2_small, "data.max_train_examples=30", "train.max_grad_norm=null"
    )
    with torch.no_grad():  # a confident head: per-example losses differ a lot
        model.classifier.weight.mul_(200.0)
    rows = [features["train"][i] for i in range(30)]
    trainer = Trainer(task, model, tokenizer, recipe.train, features["train"], None)
    micro = [trainer.collate(rows[s : s + 8]) for s in range(0, 30, 8)]
    full = _window_gradients(trainer, [trainer.collate(rows)])
    accumulated = _window_gradients(trainer, micro)
    for name, grad in full.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-7)
    # The naive weighting really is different here (so the comparison above can fail).
    with torch.no_grad():
        sums = [task.forward(model, b).loss.sum().item() for b in micro]
    naive = sum(s / len(b["labels"]) for s, b in zip(sums, micro, strict=True)) / 4
    assert abs(sum(sums) / 30 - naive) > 1e-3


def test_loss_decreases_and_events_are_written(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    recipe, task, model, tokenizer, features = _setup(
        tiny_bert,
        *sst2_small,
        "train.epochs=6",
        "train.learning_rate=2e-3",
        "train.batch_size=16",
        "train.log_every=5",
        "train.warmup_ratio=0.1",
    )
    collect = Collect()
    events = EventLog(tmp_path / "events.jsonl", collect)
    trainer = Trainer(
        task,
        model,
        tokenizer,
        recipe.train,
        features["train"],
        features["evaluator"],
        events=events,
        checkpoint_dir=tmp_path / "checkpoints",
    )
    result = trainer.train()
    events.close()
    steps = [e for e in collect.events if e["type"] == "step"]
    assert len(steps) >= 5
    assert steps[-1]["loss"] < steps[0]["loss"] * 0.9
    assert result.train_loss > 0
    evals = [e for e in collect.events if e["type"] == "eval"]
    assert len(evals) == 6  # once per epoch
    fields = ("step", "epoch", "loss", "learning_rate", "examples_per_second", "eta_seconds")
    for field in fields:
        assert field in steps[0]
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(collect.events)
    # The best checkpoint holds the best evaluation, and the final model is that checkpoint.
    best = max(evals, key=lambda e: e["metrics"]["accuracy"])
    assert result.best_step == best["step"]
    assert result.metrics["accuracy"] == pytest.approx(best["metrics"]["accuracy"])
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "last" / "model.safetensors").is_file()
    # Reloading the best checkpoint gives the same predictions as the model in memory.
    reloaded_task = load_task("sentiment")
    reloaded, reloaded_tok = reloaded_task.build_model(
        str(tmp_path / "checkpoints" / "best"), recipe, trained=True
    )
    reloaded.eval()
    texts = [{"text": t} for t in ("a gripping , funny film", "dull and lifeless", "not bad")]
    trainer.model.eval()
    ours = task.predict(trainer.model, tokenizer, texts, recipe)
    theirs = reloaded_task.predict(reloaded, reloaded_tok, texts, recipe)
    for a, b in zip(ours, theirs, strict=True):
        assert a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
    assert trainer.evaluate().metrics["accuracy"] == pytest.approx(best["metrics"]["accuracy"])
    # The result carries the evaluation its metrics come from (the best step's).
    assert result.evaluation is not None and result.evaluation.metrics == result.metrics


def test_early_stopping(tiny_bert: Path, sst2_small: tuple[Path, Path]) -> None:
    recipe, task, model, tokenizer, features = _setup(
        tiny_bert,
        *sst2_small,
        "train.epochs=50",
        "train.learning_rate=1e-12",  # nothing moves: no improvement
        "train.eval_every=2",
        "train.early_stopping_patience=2",
        "train.batch_size=16",
    )
    collect = Collect()
    trainer = Trainer(
        task,
        model,
        tokenizer,
        recipe.train,
        features["train"],
        features["evaluator"],
        events=EventLog(None, collect),
    )
    result = trainer.train()
    # Learning rate 0: nothing improves after the first evaluation, so it stops at the third.
    assert result.stopped_early
    assert result.global_step == 6
    assert [e["type"] for e in collect.events].count("eval") == 3


def test_bf16_mixed_precision_trains(tiny_bert: Path, sst2_small: tuple[Path, Path]) -> None:
    import math

    recipe, task, model, tokenizer, features = _setup(
        tiny_bert,
        *sst2_small,
        "train.max_steps=3",
        "train.mixed_precision=bf16",
        "train.batch_size=16",
    )
    # The dtype every Linear layer computes in during training's forward passes (autocast
    # leaves the weights in float32: only the layers' outputs tell bf16 was used).
    training_dtypes: list[torch.dtype] = []

    def record(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if module.training:
            training_dtypes.append(output.dtype)

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) > 10  # attention, feed-forward, pooler and classifier layers
    handles = [m.register_forward_hook(record) for m in linears]
    trainer = Trainer(
        task, model, tokenizer, recipe.train, features["train"], features["evaluator"]
    )
    try:
        result = trainer.train()
    finally:
        for handle in handles:
            handle.remove()
    # 3 steps of one micro-batch, a forward pass through every Linear layer each.
    assert len(training_dtypes) == 3 * len(linears)
    assert set(training_dtypes) == {torch.bfloat16}
    assert next(model.parameters()).dtype == torch.float32  # master weights stay float32
    assert result.global_step == 3
    assert math.isfinite(result.train_loss) and result.train_loss > 0
    assert 0 <= result.metrics["accuracy"] <= 1


def test_fp16_without_gpu_is_a_clear_error(tiny_bert: Path, sst2_small: tuple[Path, Path]) -> None:
    if torch.cuda.is_available():
        pytest.skip("fp16 works on this machine's GPU")
    from nlptasks.errors import NlpTasksError
    from nlptasks.training.trainer import make_accelerator

    recipe = load_recipe("sentiment", "minilm", ["train.mixed_precision=fp16"])
    with pytest.raises(NlpTasksError, match="needs a GPU"):
        make_accelerator(recipe.train)


def test_nan_loss_stops_with_one_line(tiny_bert: Path, sst2_small: tuple[Path, Path]) -> None:
    from nlptasks.errors import NlpTasksError

    recipe, task, model, tokenizer, features = _setup(
        tiny_bert, *sst2_small, "train.max_steps=3", "train.batch_size=16"
    )
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    trainer = Trainer(task, model, tokenizer, recipe.train, features["train"], None)
    with pytest.raises(NlpTasksError, match="NaN or infinite"):
        trainer.train()


class _StopAt:
    """A stop request that arrives during step ``step`` (as a signal would)."""

    def __init__(self, step: int) -> None:
        self.step, self.seen = step, 0
        self.signal_name: str | None = None
        self.exit_code = 130

    def requested(self, accelerator: Any) -> bool:
        self.seen += 1
        if self.seen == self.step:
            self.signal_name = "SIGINT"
        return self.signal_name is not None


@pytest.mark.parametrize("stop_step", [5, 7])  # 5: its evaluation was due, 7: none
def test_resume_at_an_evaluation_step_evaluates_first(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path, stop_step: int
) -> None:
    from nlptasks.errors import RunInterrupted

    overrides = ("train.max_steps=12", "train.eval_every=5", "train.batch_size=32",
                 "train.learning_rate=1e-3")  # fmt: skip

    def trainer(folder: Path) -> Trainer:
        recipe, task, model, tokenizer, features = _setup(tiny_bert, *sst2_small, *overrides)
        return Trainer(
            task, model, tokenizer, recipe.train, features["train"], features["evaluator"],
            checkpoint_dir=folder,
        )  # fmt: skip

    unbroken = trainer(tmp_path / "a").train()
    with pytest.raises(RunInterrupted):
        trainer(tmp_path / "b").train(stop=_StopAt(stop_step))  # type: ignore[arg-type]
    state = json.loads((tmp_path / "b/last/trainer_state.json").read_text())
    assert state["step"] == stop_step and state["pending_evaluation"] is (stop_step == 5)
    resumed = trainer(tmp_path / "b").train(resume_from=tmp_path / "b/last")
    assert resumed.history == unbroken.history  # the step-5 evaluation happened once
    assert resumed.best_step == unbroken.best_step and resumed.metrics == unbroken.metrics
    for kind in ("last", "best"):
        a = load_file(str(tmp_path / "a" / kind / "model.safetensors"))
        b = load_file(str(tmp_path / "b" / kind / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), kind


def test_resume_keeps_early_stopping_and_the_process_count(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    from nlptasks.errors import NlpTasksError
    from nlptasks.training import checkpoints

    overrides = ("train.epochs=50", "train.learning_rate=1e-12", "train.eval_every=2",
                 "train.early_stopping_patience=2", "train.batch_size=16")  # fmt: skip

    def trainer() -> Trainer:
        recipe, task, model, tokenizer, features = _setup(tiny_bert, *sst2_small, *overrides)
        return Trainer(
            task, model, tokenizer, recipe.train, features["train"], features["evaluator"],
            checkpoint_dir=tmp_path,
        )  # fmt: skip

    first = trainer().train()
    assert first.stopped_early and first.global_step == 6
    # A kill after the early-stop checkpoint: the resumed run must not train on.
    again = trainer().train(resume_from=tmp_path / "last")
    assert again.stopped_early and again.global_step == 6 and again.history == first.history
    # A checkpoint made by another number of processes is refused in one line.
    state = json.loads((tmp_path / "last/trainer_state.json").read_text())
    state["num_processes"] = 2
    (tmp_path / "last/trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(NlpTasksError, match=r"trained on 2 process\(es\).*nproc_per_node 2"):
        trainer().train(resume_from=tmp_path / "last")
    # An interrupted swap (best renamed aside, the new one never renamed in) is repaired.
    (tmp_path / "best").rename(tmp_path / ".best.old")
    checkpoints.repair(tmp_path)
    assert (tmp_path / "best").is_dir() and not (tmp_path / ".best.old").exists()


def _train_steps(tiny_bert: Path, files: tuple[Path, Path], *overrides: str) -> tuple:
    """Four logged steps of one epoch on 64 examples: (result, step events, state dict)."""
    recipe, task, model, tokenizer, features = _setup(
        tiny_bert,
        *files,
        "data.max_train_examples=64",
        "train.batch_size=16",
        "train.epochs=1",
        "train.log_every=1",
        "train.learning_rate=1e-3",
        *overrides,
    )
    collect = Collect()
    trainer = Trainer(
        task,
        model,
        tokenizer,
        recipe.train,
        features["train"],
        None,
        events=EventLog(None, collect),
    )
    result = trainer.train()
    steps = [e for e in collect.events if e["type"] == "step"]
    state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    start = next(e for e in collect.events if e["type"] == "train_start")
    result.kernels = {  # type: ignore[attr-defined]
        "attention": model.config._attn_implementation,
        "fused": start["fused_optimizer"],
    }
    return result, steps, state, features["train"]


def test_step_events_count_real_tokens_and_the_first_step_is_timed_apart(
    tiny_bert: Path, sst2_small: tuple[Path, Path]
) -> None:
    result, steps, _, train = _train_steps(tiny_bert, sst2_small)
    real = sum(sum(mask) for mask in train["attention_mask"])
    assert len(steps) == 4
    # One whole epoch: every example's real tokens once, padding not counted.
    assert steps[-1]["tokens_seen"] == result.tokens_seen == real
    assert steps[-1]["examples_seen"] == 64
    assert all(s["tokens_per_second"] > 0 for s in steps)
    assert [s["tokens_seen"] for s in steps] == sorted(s["tokens_seen"] for s in steps)
    assert result.first_step_seconds is not None and result.first_step_seconds > 0


def test_attention_kernels_and_optimizer_kernels_train_alike(
    tiny_bert: Path, sst2_small: tuple[Path, Path]
) -> None:
    base, _, weights, _ = _train_steps(tiny_bert, sst2_small)
    eager, _, eager_weights, _ = _train_steps(
        tiny_bert, sst2_small, "train.attn_implementation=eager"
    )
    foreach, _, foreach_weights, _ = _train_steps(
        tiny_bert, sst2_small, "train.fused_optimizer=false"
    )
    # Each switch really switched (else the comparison below would compare a run to itself).
    assert base.kernels == {"attention": "sdpa", "fused": True}
    assert eager.kernels == {"attention": "eager", "fused": True}
    assert foreach.kernels == {"attention": "sdpa", "fused": False}
    for other in (eager, foreach):
        assert other.train_loss == pytest.approx(base.train_loss, rel=1e-4)
    for name, value in weights.items():
        torch.testing.assert_close(eager_weights[name], value, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(foreach_weights[name], value, rtol=1e-4, atol=1e-5)


def test_an_unknown_attention_kernel_is_one_line(
    tiny_bert: Path, sst2_small: tuple[Path, Path]
) -> None:
    from nlptasks.errors import ConfigError

    with pytest.raises(ConfigError, match="train.attn_implementation=flashy") as caught:
        _setup(tiny_bert, *sst2_small, "train.attn_implementation=flashy")
    assert "\n" not in str(caught.value)


def test_a_compiled_model_trains_like_the_uncompiled_one(
    tiny_bert: Path, sst2_small: tuple[Path, Path]
) -> None:
    from torch._dynamo.utils import counters

    base, _, weights, _ = _train_steps(tiny_bert, sst2_small, "train.group_by_length=false")
    counters.clear()
    compiled, _, compiled_weights, _ = _train_steps(
        tiny_bert, sst2_small, "train.group_by_length=false", "train.compile=true"
    )
    assert counters["stats"]["unique_graphs"] > 0  # dynamo compiled the forward
    assert compiled.train_loss == pytest.approx(base.train_loss, rel=1e-3)
    # Compiled in place: the state dict keeps the model's own names (checkpoints, resume).
    assert set(compiled_weights) == set(weights)
    for name, value in weights.items():
        torch.testing.assert_close(compiled_weights[name], value, rtol=1e-3, atol=1e-4)


def test_token_budget_epochs_end_where_their_own_batches_end(
    tiny_bert: Path, sst2_small: tuple[Path, Path]
) -> None:
    # Token budgets cut each epoch's order into its own number of batches: evaluations fall
    # at each epoch's end and every example is seen once per epoch.
    recipe, task, model, tokenizer, features = _setup(
        tiny_bert,
        *sst2_small,
        "data.max_train_examples=200",
        "train.batch_size=8",
        "train.max_tokens_per_batch=160",
        # Random order: each epoch's batches (and their number) differ.
        "train.group_by_length=false",
        "train.epochs=3",
    )
    collect = Collect()
    trainer = Trainer(
        task,
        model,
        tokenizer,
        recipe.train,
        features["train"],
        features["evaluator"],
        events=EventLog(None, collect),
    )
    sampler, _ = trainer._plan()
    per_epoch = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        per_epoch.append(len(sampler))
    assert len(set(per_epoch)) > 1  # the case this test is about
    result = trainer.train()
    assert result.global_step == sum(per_epoch)
    evals = [e for e in collect.events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [per_epoch[0], per_epoch[0] + per_epoch[1], sum(per_epoch)]
    assert result.examples_seen == 3 * 200
