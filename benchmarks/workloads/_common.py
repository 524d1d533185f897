"""What the training workloads share: one nlptasks run and one transformers.Trainer run on
the same prepared features, timed the same way (harness.StepClock: every step logged, the
warm-up steps excluded), with FLOPs counted by harness.model_flops."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness import Result, StepClock, model_flops

DATA = __import__("harness").SHARED_DATA


Contender = Callable[[dict[str, Any]], Result]


def variant(contender: Contender, extra: Sequence[str]) -> Contender:
    """``contender`` with more recipe overrides: one speed-up (or setting) on or off."""

    def run(p: dict[str, Any]) -> Result:
        return contender({**p, "extra": [*p["extra"], *extra]})

    return run


class ClockReporter:
    """An nlptasks reporter that feeds every ``step`` event to a StepClock."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock
        self.examples = 0
        self.tokens = 0

    def handle(self, event: dict[str, Any]) -> None:
        if event.get("type") != "step":
            return
        examples = event["examples_seen"] - self.examples
        tokens = event["tokens_seen"] - self.tokens
        self.examples, self.tokens = event["examples_seen"], event["tokens_seen"]
        self.clock.tick(examples, tokens, event["loss"])

    def close(self) -> None:
        pass


def _precision(recipe: Any) -> str:
    from nlptasks.training import precision

    return "bf16" if precision.resolve(recipe.train.mixed_precision) == "bf16" else "fp32"


def _flops(model: Any, clock: Result, training: bool, causal: bool) -> float:
    length = clock["tokens"] / max(clock["examples"], 1)
    return model_flops(model, clock["tokens"], length, training=training, causal=causal)


def nlptasks_train(
    task: str, recipe: str, overrides: Sequence[str], warmup: int, causal: bool = False
) -> Result:
    """``nlptasks.run`` with a step event every step; the timed part after ``warmup`` steps."""
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import run_recipe

    clock = StepClock(warmup)
    resolved = load_recipe(
        task, recipe, [*overrides, "train.log_every=1", "train.save_checkpoints=false"]
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_recipe(resolved, output_dir=f"{tmp}/run", reporter=ClockReporter(clock))
    wall = time.perf_counter() - started
    result = clock.result()
    # The model is rebuilt on the meta device to count its parameters: nothing allocated.
    meta = _meta_model(outcome.results["model_path"], task)
    result["flops"] = _flops(meta, result, True, causal)
    result["precision"] = _precision(resolved)
    result["metrics"] = outcome.metrics
    result["first_step_seconds"] = outcome.results["train"].get("first_step_seconds")
    result["wall_seconds"] = wall
    return result


AUTO_CLASS = {
    "sentiment": "AutoModelForSequenceClassification",
    "qa": "AutoModelForQuestionAnswering",
    "generation": "AutoModelForCausalLM",
    "translation": "AutoModelForCausalLM",
}
"""The class the task trains, so that N counts the same modules as the Trainer's model."""


def _meta_model(path: str, task: str) -> Any:
    import transformers
    from accelerate import init_empty_weights

    config = transformers.AutoConfig.from_pretrained(path)
    auto = getattr(transformers, AUTO_CLASS[task])
    with init_empty_weights():
        return auto.from_config(config)


class _CountingForward:
    """Counts the examples and real tokens the model is called on (a forward pre-hook): the
    batches actually trained on. (Counting in the collate would be one batch ahead:
    accelerate's data loader builds the next batch before it yields the current one.)"""

    def __init__(self, model: Any) -> None:
        self.tokens = 0
        self.examples = 0
        model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        if ids is None:
            return
        self.examples += int(ids.shape[0])
        self.tokens += int(mask.sum()) if mask is not None else int(ids.numel())


def trainer_train(
    task: str,
    recipe: str,
    overrides: Sequence[str],
    warmup: int,
    causal: bool = False,
    evaluate: bool = False,
    pad_to: int | None = None,
) -> Result:
    """transformers.Trainer on the features, model (same seeded head) and settings of the
    nlptasks run: same optimizer (fused AdamW, no decay on biases and norms), schedule,
    precision, batch order policy (``train.group_by_length``) and thread count."""
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from nlptasks.recipes import load_recipe
    from nlptasks.runner import prepare_run

    transformers.logging.set_verbosity_error()
    resolved = load_recipe(task, recipe, list(overrides))
    prepared = prepare_run(resolved)
    train = resolved.train
    features = prepared.features["train"]
    collate = prepared.collate
    if pad_to is not None:  # run_qa's padding="max_length", for the record
        from transformers import DataCollatorWithPadding

        collate = DataCollatorWithPadding(prepared.tokenizer, "max_length", max_length=pad_to)
    counting = _CountingForward(prepared.model)
    clock = StepClock(warmup)

    class Tick(TrainerCallback):
        loss: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                clock.losses.append(float(logs["loss"]))

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.tick(counting.examples, counting.tokens)
            counting.examples = counting.tokens = 0

    precision = _precision(resolved)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=train.batch_size // train.gradient_accumulation_steps,
            gradient_accumulation_steps=train.gradient_accumulation_steps,
            learning_rate=train.learning_rate,
            num_train_epochs=train.epochs,
            max_steps=train.max_steps or -1,
            warmup_steps=train.warmup_steps or train.warmup_ratio,  # below 1: a ratio
            weight_decay=train.weight_decay,
            lr_scheduler_type=train.scheduler,
            max_grad_norm=train.max_grad_norm or 0.0,
            optim="adamw_torch_fused",
            bf16=precision == "bf16",
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=1,
            disable_tqdm=True,
            seed=train.seed,
            data_seed=train.seed,
            train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        )
        trainer = Trainer(
            model=prepared.model,
            args=args,
            # Columns the model does not take (length, ids) are dropped by the Trainer.
            train_dataset=features,
            data_collator=collate,
            callbacks=[Tick()],
        )
        trainer.train()
    result = clock.result()
    result["flops"] = _flops(prepared.model, result, True, causal)
    result["precision"] = precision
    if evaluate:
        import torch

        with torch.inference_mode():
            result["metrics"] = prepared.evaluator.evaluate(prepared.model).metrics
    return result
