"""``nlptasks export RUN DEST --format onnx``: the run's encoder model as ``DEST/model.onnx``,
checked against PyTorch with onnxruntime on the run's own eval data.

``torch.onnx.export`` writes it: the dynamo exporter (``torch.export``) first, the TorchScript
one when that fails for a model; batch and sequence axes are dynamic, so one file serves any
number of records of any length. Only encoder tasks export (a classifier, a span or a token
head over one forward pass); generation loops over the model and needs a KV cache, which
this file does not hold.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlptasks.errors import NlpTasksError, first_line

OPSET = 18
TOLERANCE = 1e-4
"""Largest |ONNX - PyTorch| logit accepted (float32 kernels differ in summation order)."""
# The Auto classes an ONNX export covers, and what the CLI says they are.
ONNX_KINDS = {
    "AutoModelForSequenceClassification": "sequence classification",
    "AutoModelForQuestionAnswering": "question answering",
    "AutoModelForTokenClassification": "token classification",
}
# A model over this many bytes keeps its weights beside model.onnx (protobuf's 2 GB limit).
_INLINE_LIMIT = 1_500_000_000


@dataclass
class OnnxExport:
    """What was written and how it compared with PyTorch."""

    path: Path
    exporter: str
    """``dynamo`` or ``torchscript``: the torch.onnx exporter that worked."""
    max_abs_diff: float
    """Largest |ONNX - PyTorch| over every logit of the check batch."""
    records: int
    source: str
    """What the check batch is (the run's eval features, or a fixed sentence)."""
    outputs: tuple[str, ...]
    fallback_reason: str = ""
    """Why the dynamo exporter was not used (empty when it was)."""
    opset: int = OPSET
    tolerance: float = TOLERANCE


def require_onnx() -> None:
    """onnx, onnxscript (the exporter's) and onnxruntime (the check's), or a one-line fix."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise NlpTasksError(
            f"--format onnx needs {', '.join(missing)} (not installed): "
            f"pip install 'nlptasks[onnx]'."
        )


def onnx_kind(task: Any) -> str:
    """The task's Auto class that ONNX export covers, or a one-line error naming them."""
    for kind in task.info.model_kinds:
        if kind in ONNX_KINDS:
            return str(kind)
    supported = [name for name in _registered_tasks() if _takes_onnx(name)]
    kinds = ", ".join(task.info.model_kinds) or "any model"
    raise NlpTasksError(
        f"--format onnx exports encoder tasks ({', '.join(ONNX_KINDS.values())}), such as "
        f"{', '.join(supported) or 'sentiment, qa'}; task '{task.info.name}' takes {kinds}. "
        f"Serve it with 'nlptasks serve', or export it with --merge-lora for vLLM or TGI."
    )


def _registered_tasks() -> list[str]:
    from nlptasks.plugins.registry import get_registries

    return sorted(get_registries().tasks.names())


def _takes_onnx(name: str) -> bool:
    """Whether the registered task ``name`` takes a model ONNX export covers."""
    from nlptasks.plugins.registry import get_registries
    from nlptasks.task import task_info

    try:
        info = task_info(get_registries().tasks.get(name).load(), name)
        return any(k in ONNX_KINDS for k in info.model_kinds)
    except Exception:  # noqa: BLE001 - a broken plugin only drops out of the list
        return False


def write_onnx(run_dir: Path, model_dir: Path, folder: Path, task: Any) -> OnnxExport:
    """Write ``folder/model.onnx`` from the model in ``model_dir`` and check it with
    onnxruntime on the run's eval data: a larger difference than :data:`TOLERANCE` is an
    error, and nothing is kept."""
    require_onnx()
    onnx_kind(task)
    import transformers

    from nlptasks.runs import model_checks

    model_class = model_checks.auto_class_of(task, model_dir)
    model = _quietly(lambda: model_class.from_pretrained(model_dir))
    model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    batch, source = model_checks.real_batch(
        run_dir, task, tokenizer, model, keys=model_checks.ENCODER_INPUTS
    )
    names = tuple(batch)
    expected = model_checks.logits_of(model, batch)
    outputs = tuple(expected)
    wrapper = _positional(model, names, outputs)
    target = folder / "model.onnx"
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > _INLINE_LIMIT
    args = tuple(batch[n] for n in names)
    exporter, reason = "dynamo", ""
    try:
        _export(wrapper, args, names, outputs, target, external, dynamo=True)
    except Exception as exc:  # noqa: BLE001 - any dynamo failure: the older exporter next
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        for leftover in (target, target.with_name("model.onnx.data")):
            leftover.unlink(missing_ok=True)
        exporter = "torchscript"
        try:
            _export(wrapper, args, names, outputs, target, external, dynamo=False)
        except Exception as again:  # noqa: BLE001 - both exporters failed: say both
            raise NlpTasksError(
                f"torch.onnx cannot export this {type(model).__name__} (dynamo: {reason}; "
                f"TorchScript: {type(again).__name__}: {first_line(again)})."
            ) from again
    found = _run_onnxruntime(target, batch, outputs)
    difference = model_checks.max_difference(expected, found)
    if not difference <= TOLERANCE:  # also catches NaN
        raise NlpTasksError(
            f"The ONNX model's logits differ from PyTorch's by up to {difference:.3g} on "
            f"{source} (more than {TOLERANCE:g}); nothing was exported. Export without "
            f"--format onnx and report this model type."
        )
    return OnnxExport(
        target, exporter, difference, len(batch["input_ids"]), source, outputs, reason
    )


def _positional(model: Any, names: tuple[str, ...], outputs: tuple[str, ...]) -> Any:
    """``model`` as a module of positional tensors (ONNX inputs have no keywords) that
    returns its logits as a tuple, in the order of ``outputs``."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            found = self.model(**dict(zip(names, tensors, strict=True)), return_dict=True)
            return tuple(found[name] for name in outputs)

    return Positional().eval()


def _export(
    module: Any,
    args: tuple[Any, ...],
    names: tuple[str, ...],
    outputs: tuple[str, ...],
    target: Path,
    external: bool,
    dynamo: bool,
) -> None:
    """One ``torch.onnx.export`` call with dynamic batch and sequence axes; its progress
    lines and warnings are not the user's business (the check below is)."""
    import logging

    import torch

    # Names torchvision's operators it could not register (none are used): not the user's
    # business. Set here, after torch's logging set its own levels.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    if dynamo:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        axes: dict[str, Any] = {
            # One entry: the forward's ``*tensors``, itself a tuple of one per input.
            "dynamic_shapes": (tuple({0: batch, 1: sequence} for _ in names),),
            "external_data": external,
        }
    else:
        dims = {0: "batch", 1: "sequence"}
        axes = {"dynamic_axes": {n: dims for n in (*names, *outputs)}}
    with torch.inference_mode(False), torch.no_grad():
        _quietly(
            lambda: torch.onnx.export(
                module,
                args,
                str(target),
                input_names=list(names),
                output_names=list(outputs),
                opset_version=OPSET,
                dynamo=dynamo,
                verbose=False,
                **axes,
            )
        )


def _run_onnxruntime(target: Path, batch: dict[str, Any], outputs: tuple[str, ...]) -> Any:
    """The ONNX model's outputs on ``batch`` (onnxruntime, CPU), by name."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    feeds = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    return dict(zip(outputs, session.run(list(outputs), feeds), strict=True))


def _quietly(call: Any) -> Any:
    """``call()`` with its stdout and warnings swallowed: torch.onnx prints progress lines
    and transformers warns about tracing, neither of which a user can act on."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return call()
