"""The shape of one explanation: what ``predict --explain`` prints, renders and checks.

An explanation is a JSON object with at least

- ``tokens``: the input tokens the prediction is attributed to (list of str);
- ``attributions``: one finite number per token (same length): how much the token moved
  the explained quantity (``target``) away from the baseline's value;

and, by convention, ``method``, ``target`` (what was explained, in words), ``score`` and
``baseline_score`` (that quantity for the input and for the baseline) and
``convergence_delta`` (sum of attributions - (score - baseline_score)). Generating tasks add
``output_tokens`` with ``logprobs`` (one per output token). Any other key is free, as long as
the whole object is JSON with finite numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Lists that must have one entry per token of another list.
PAIRED = (("tokens", "attributions"), ("output_tokens", "logprobs"))


def explanation_problems(explanation: Any) -> list[str]:
    """What is wrong with one explanation (empty when nothing is), one short phrase each."""
    if not isinstance(explanation, dict):
        return [f"an explanation must be a dict, not {type(explanation).__name__}"]
    problems = []
    try:
        json.dumps(explanation, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(f"it is not JSON with finite numbers ({exc})")
    for tokens_key, values_key in PAIRED:
        if tokens_key == "tokens" or tokens_key in explanation:
            problems += _paired(explanation, tokens_key, values_key)
    return problems


def _paired(explanation: dict[str, Any], tokens_key: str, values_key: str) -> list[str]:
    tokens, values = explanation.get(tokens_key), explanation.get(values_key)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        return [f"'{tokens_key}' must be a list of strings"]
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        return [f"'{values_key}' must be a list of finite numbers"]
    if len(tokens) != len(values):
        return [f"{len(tokens)} {tokens_key} but {len(values)} {values_key}"]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
