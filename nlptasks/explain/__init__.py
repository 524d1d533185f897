"""Explanations of predictions (``nlptasks predict --explain``): token attributions.

A task explains its predictions by implementing the optional ``nlptasks.Explains`` protocol;
this package is the shared machinery the built-in tasks use and a third-party task may use:

- :mod:`nlptasks.explain.dependency`: captum, an optional extra, or a one-line error;
- :mod:`nlptasks.explain.gradients`: Integrated Gradients on the input embeddings (captum's
  ``LayerIntegratedGradients``), a [PAD]-token baseline, the completeness delta, float32;
- :mod:`nlptasks.explain.generated`: per-token log-probabilities of generated text and IG of
  their sum (``explain_causal``, ``explain_seq2seq``);
- :mod:`nlptasks.explain.tokens`: tokens as a person reads them, and how the tokenizer marks
  words (``token_style``, for the renderers);
- :mod:`nlptasks.explain.schema`: what an explanation must look like (the runner and the
  conformance kit check it);
- :mod:`nlptasks.explain.render`: the coloured terminal view (rich) and the self-contained
  HTML file.

Importing this package is light (no torch); the heavy modules load when used.
"""

from __future__ import annotations

from nlptasks.explain.dependency import CAPTUM_MISSING, require_captum
from nlptasks.explain.schema import explanation_problems

__all__ = ["CAPTUM_MISSING", "explanation_problems", "require_captum"]
