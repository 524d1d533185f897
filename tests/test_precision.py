"""Outputs keep float32's precision under mixed precision: the model's body runs in bf16, its
output head in float32 (nlptasks.evaluation.heads), in evaluation, ``eval`` and ``predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from nlptasks.evaluation import heads
from nlptasks.training import precision

TEXTS = ["a gripping , funny and moving film", "it never finds its footing"]
# Outputs halfway between two bf16 numbers (steps of 1/64 in [2, 4)), where bf16 rounds worst:
# a score of 2.8828 comes out as 2.875 or 2.8906; logits 2.9922 and 3.0 as equals, which moves
# a probability near 0.5 by 2e-3.
REGRESSION_BIAS = [2.8828125]
CLASS_BIAS = [2.9921875, 3.0]


def _classifier(tiny_bert: Path, targets: list[float]) -> Any:
    """A tiny BERT classifier whose float32 outputs on TEXTS are about ``targets``."""
    from transformers import AutoModelForSequenceClassification, logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=len(targets))
    model.eval()
    with torch.no_grad():
        model.classifier.bias.zero_()
        body = model(**_batch(tiny_bert)).logits.mean(dim=0)
        model.classifier.bias.copy_(torch.tensor(targets) - body)
    return model


def _batch(tiny_bert: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


def _outputs(model: Any, batch: dict[str, torch.Tensor], mode: str, target: Any) -> Any:
    """(logits, dtype of the body's last matmul) of ``model`` in ``mode``."""
    seen: list[torch.dtype] = []
    hook = model.bert.encoder.layer[-1].output.dense.register_forward_hook(
        lambda module, args, out: seen.append(out.dtype)
    )
    try:
        with precision.inference(mode, target):
            logits = model(**batch).logits
    finally:
        hook.remove()
    return logits.clone(), seen[0]


@pytest.mark.parametrize("bias", [REGRESSION_BIAS, CLASS_BIAS], ids=["regression", "classes"])
def test_head_outputs_match_float32_while_the_body_runs_in_bf16(
    tiny_bert: Path, bias: list[float]
) -> None:
    model = _classifier(tiny_bert, bias)
    batch = _batch(tiny_bert)
    exact, body = _outputs(model, batch, "no", "cpu")
    assert body == torch.float32
    # Autocast alone (the device, not the model): the head runs in bf16 too.
    rounded, body = _outputs(model, batch, "bf16", "cpu")
    assert body == torch.bfloat16 and rounded.dtype == torch.bfloat16
    # The model: its body still in bf16, its head in float32.
    kept, body = _outputs(model, batch, "bf16", model)
    assert body == torch.bfloat16 and kept.dtype == torch.float32
    if len(bias) == 1:  # a regression score
        assert (rounded.float() - exact).abs().max() > 1e-3  # what the fix is for
        assert (kept - exact).abs().max() < 1e-3
    else:  # probabilities
        probabilities = exact.softmax(-1)
        assert (rounded.float().softmax(-1) - probabilities).abs().max() > 1e-3
        assert (kept.softmax(-1) - probabilities).abs().max() < 1e-3


def test_training_steps_keep_the_head_in_the_run_precision(tiny_bert: Path) -> None:
    """With a gradient (a training step) the head is not touched: training runs as fast as
    before, and its gradients reach the head's float32 weights."""
    model = _classifier(tiny_bert, CLASS_BIAS)
    heads.keep_heads_float32(model)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**_batch(tiny_bert)).logits
    assert logits.dtype == torch.bfloat16
    logits.float().sum().backward()
    assert model.classifier.weight.grad is not None


def test_the_heads_of_each_model_shape(tiny_bert: Path, tiny_gpt2: Path, tiny_bart: Path) -> None:
    import transformers

    def found(auto: str, path: Path, **kwargs: Any) -> list[str]:
        model = getattr(transformers, auto).from_pretrained(path, **kwargs)
        return sorted(heads.output_heads(model))

    assert found("AutoModelForSequenceClassification", tiny_bert) == ["classifier"]
    assert found("AutoModelForQuestionAnswering", tiny_bert) == ["qa_outputs"]
    assert found("AutoModelForTokenClassification", tiny_bert) == ["classifier"]
    assert found("AutoModelForCausalLM", tiny_gpt2) == ["lm_head"]
    assert found("AutoModelForSequenceClassification", tiny_gpt2) == ["score"]
    assert found("AutoModelForSeq2SeqLM", tiny_bart) == ["lm_head"]
    # A bare body has no head; keeping none is fine.
    assert found("AutoModel", tiny_bert) == []


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _head_runs_in_float32(wrapped: Any, inner: Any, tiny_bert: Path) -> None:
    """Through the wrapper: the model inside is found, its head kept in float32, and a bf16
    forward pass of the wrapper gives float32 logits."""
    assert heads.unwrapped(wrapped) is inner
    assert heads.keep_heads_float32(wrapped) == ["classifier"]
    wrapped.eval()
    with precision.inference("bf16", wrapped):
        logits = wrapped(**_batch(tiny_bert)).logits
    assert logits.dtype == torch.float32


def test_heads_inside_ddp_peft_and_compile_wrappers(tiny_bert: Path) -> None:
    import peft

    adapted = peft.get_peft_model(
        _classifier(tiny_bert, CLASS_BIAS),
        peft.LoraConfig(target_modules=["query", "value"], modules_to_save=["classifier"]),
    )
    _head_runs_in_float32(adapted, adapted.get_base_model(), tiny_bert)

    model = _classifier(tiny_bert, CLASS_BIAS)
    # DDP needs a process group: this process alone, over gloo (CPU).
    torch.distributed.init_process_group(
        "gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{_free_port()}"
    )
    try:
        _head_runs_in_float32(torch.nn.parallel.DistributedDataParallel(model), model, tiny_bert)
    finally:
        torch.distributed.destroy_process_group()

    # torch.compile: the model is found through `_orig_mod` (its forward pass: below).
    model = _classifier(tiny_bert, CLASS_BIAS)
    compiled = torch.compile(model)
    assert heads.unwrapped(compiled) is model
    assert heads.keep_heads_float32(compiled) == ["classifier"]


def test_a_compiled_models_head_runs_in_float32(tiny_bert: Path) -> None:
    """The head's hooks run eagerly inside a compiled model (traced, they broke autocast)."""
    model = _classifier(tiny_bert, CLASS_BIAS)
    _head_runs_in_float32(torch.compile(model), model, tiny_bert)


def _saved_classifier(tiny_bert: Path, folder: Path) -> Path:
    from transformers import AutoTokenizer

    model = _classifier(tiny_bert, CLASS_BIAS)
    model.config.id2label = {0: "negative", 1: "positive"}
    model.config.label2id = {"negative": 0, "positive": 1}
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


def test_predict_and_eval_in_bf16_match_float32(tiny_bert: Path, tmp_path: Path) -> None:
    """``nlptasks.predict`` and ``nlptasks.evaluate`` under bf16: the scores and the loss
    of the float32 model, within 1e-3 (bf16 logits were off by 3e-3 here)."""
    import nlptasks

    model = str(_saved_classifier(tiny_bert, tmp_path / "model"))
    found = {
        mode: nlptasks.predict("sentiment", model, TEXTS, mixed_precision=mode)
        for mode in ("no", "bf16")
    }
    for exact, kept in zip(found["no"], found["bf16"], strict=True):
        assert kept["label"] == exact["label"]
        assert kept["score"] == pytest.approx(exact["score"], abs=1e-3)
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(TEXTS)))
    losses = {
        mode: nlptasks.evaluate(
            "sentiment", model, None, f"data.eval_path={dev}", f"train.mixed_precision={mode}"
        ).metrics["loss"]
        for mode in ("no", "bf16")
    }
    assert losses["bf16"] == pytest.approx(losses["no"], abs=1e-3)


def test_a_bf16_run_evaluates_with_a_float32_head(
    tiny_bert: Path, tmp_path: Path, sst2_small: tuple[Path, Path]
) -> None:
    """The trainer's evaluations go through the same evaluator: a bf16 run's eval loss is the
    float32 model's."""
    import nlptasks

    train, _ = sst2_small
    # One class only: the loss moves with the logit error (with both, errors would cancel).
    dev = tmp_path / "negative.tsv"
    dev.write_text("sentence\tlabel\n" + "".join(f"{t} {i}\t0\n" for i, t in enumerate(TEXTS * 10)))
    model = str(_saved_classifier(tiny_bert, tmp_path / "model"))
    run_dir = tmp_path / "run"
    result = nlptasks.run(
        "sentiment",
        None,
        f"model={model}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "train.max_steps=1",
        "train.learning_rate=1e-12",  # a step that changes nothing measurable
        "train.mixed_precision=bf16",
        "train.save_checkpoints=false",
        output_dir=str(run_dir),
    )
    assert json.loads((run_dir / "results.json").read_text())["provenance"]["mixed_precision"] == (
        "bf16"
    )
    exact = nlptasks.evaluate("sentiment", str(run_dir / "model"), None, "train.mixed_precision=no")
    assert exact.mixed_precision == "no"
    assert result.metrics["loss"] == pytest.approx(exact.metrics["loss"], abs=1e-3)


def test_a_copy_runs_its_own_head_and_the_model_pickles(tiny_bert: Path) -> None:
    """The float32 head is hooks, not a patched forward: a deep copy (peft's modules_to_save
    makes one) uses its own head's weights, and the model still pickles."""
    import copy
    import io

    model = _classifier(tiny_bert, CLASS_BIAS)
    heads.keep_heads_float32(model)
    heads.keep_heads_float32(model)  # idempotent: one pair of hooks
    assert len(model.classifier._forward_pre_hooks) == 1
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.classifier.weight.zero_()
        twin.classifier.bias.zero_()
    logits, _ = _outputs(twin, _batch(tiny_bert), "bf16", twin)
    assert torch.count_nonzero(logits) == 0  # the copy's zeroed head, not the original's
    torch.save(model, io.BytesIO())
    assert torch.is_autocast_enabled("cpu") is False  # the hooks left no autocast behind
