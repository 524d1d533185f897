"""Explanations for people: a coloured terminal view (rich) and a self-contained HTML page.

Both show each token on a background whose colour says the sign of its attribution (green
towards the explained quantity, red against it) and whose strength says its size relative
to the largest in that explanation; generated tokens (``output_tokens``) are shaded by how
unlikely the model found them (``logprobs``). The HTML page has inline CSS only: no script,
font, image or link, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nlptasks.explain.tokens import readable

POSITIVE = (22, 163, 74)  # green
NEGATIVE = (220, 38, 38)  # red
UNLIKELY = (37, 99, 235)  # blue: low-probability output tokens


def words(tokens: Sequence[str], style: str | None = None) -> list[tuple[str, str]]:
    """Each token as (separator before it, text), by the tokenizer's ``style``
    (``nlptasks.explain.tokens.token_style``, an explanation's ``token_style``):
    ``"marked"`` (byte-level BPE, SentencePiece: tokens carry their own spaces) joins tokens
    with nothing; ``"wordpiece"`` glues ``##`` pieces to the word before and puts a space
    before other tokens; ``"plain"`` puts a space between tokens. Without a style (an
    explanation from a task that gives none) it is guessed from the tokens."""
    if style is None:
        style = "marked" if any(t[:1].isspace() for t in tokens) else "wordpiece"
    found = []
    for i, token in enumerate(tokens):
        text = readable(token)
        if style == "marked" or i == 0:
            found.append(("", text))
        elif style == "wordpiece" and text.startswith("##") and len(text) > 2:
            found.append(("", text[2:]))
        else:
            found.append((" ", text))
    if found and style == "wordpiece" and found[0][1].startswith("##") and len(found[0][1]) > 2:
        found[0] = ("", found[0][1][2:])
    return found


def strengths(values: Sequence[float]) -> list[float]:
    """Each value over the largest magnitude, in [-1, 1] (all 0 when all are 0)."""
    largest = max((abs(v) for v in values), default=0.0)
    return [v / largest if largest > 0 else 0.0 for v in values]


def colour(strength: float) -> tuple[int, int, int]:
    """White blended towards green (positive) or red (negative) by |strength|."""
    base = POSITIVE if strength >= 0 else NEGATIVE
    weight = min(1.0, abs(strength)) * 0.85
    return tuple(round(255 + (c - 255) * weight) for c in base)  # type: ignore[return-value]


def unlikeliness(logprob: float) -> float:
    """0 for a certain token, towards 1 for an improbable one (1 - probability)."""
    return 1.0 - math.exp(min(0.0, logprob))


def summary(explanation: Mapping[str, Any]) -> str:
    """One line: what was explained, its value and baseline, and IG's completeness."""
    parts = [str(explanation.get("target", "explained quantity"))]
    if isinstance(explanation.get("score"), (int, float)):
        parts.append(f"= {explanation['score']:.4g}")
    if isinstance(explanation.get("baseline_score"), (int, float)):
        parts.append(f"(baseline {explanation['baseline_score']:.4g})")
    total = sum(explanation.get("attributions", []) or [])
    line = " ".join(parts) + f"; attributions sum to {total:.4g}"
    if isinstance(explanation.get("convergence_delta"), (int, float)):
        line += f" (delta {explanation['convergence_delta']:.2g})"
    return line


def _prediction_line(prediction: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in prediction.items() if k != "explanation"}
    text = json.dumps(shown, ensure_ascii=False)
    return text if len(text) <= 300 else text[:297] + "..."


# ----------------------------------------------------------------------------- terminal
def print_explanations(predictions: Sequence[Mapping[str, Any]], console: Any = None) -> None:
    """Each prediction and its coloured tokens on ``console`` (default: rich's on stderr)."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console(stderr=True)
    for number, prediction in enumerate(predictions, 1):
        explanation = prediction.get("explanation") or {}
        console.print(Text(f"[{number}] {_prediction_line(prediction)}", style="bold"))
        console.print(Text(summary(explanation), style="dim"))
        line = Text()
        style = explanation.get("token_style")
        pieces = words(explanation.get("tokens", []), style)
        for (sep, text), value in zip(
            pieces, strengths(explanation.get("attributions", [])), strict=True
        ):
            red, green, blue = colour(value)
            line.append(sep)
            line.append(text, style=f"black on rgb({red},{green},{blue})")
        console.print(line)
        if explanation.get("output_tokens"):
            out = Text("output: ", style="dim")
            for (sep, text), logprob in zip(
                words(explanation["output_tokens"], style),
                explanation.get("logprobs", []),
                strict=True,
            ):
                red, green, blue = _blend(UNLIKELY, unlikeliness(logprob))
                out.append(sep)
                out.append(text, style=f"black on rgb({red},{green},{blue})")
            console.print(out)
        console.print()


def _blend(target: tuple[int, int, int], weight: float) -> tuple[int, int, int]:
    w = min(1.0, max(0.0, weight)) * 0.85
    return tuple(round(255 + (c - 255) * w) for c in target)  # type: ignore[return-value]


# --------------------------------------------------------------------------------- HTML
STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #111; }
.record { border-top: 1px solid #ddd; padding: 0.8em 0; }
.prediction { font-family: monospace; font-size: 0.9em; white-space: pre-wrap; }
.summary { color: #555; font-size: 0.85em; margin: 0.3em 0; }
.tokens { line-height: 2; white-space: pre-wrap; }
.tokens span { padding: 0.1em 0; border-radius: 0.2em; }
.legend span { padding: 0.1em 0.4em; }
"""


def render_html(predictions: Sequence[Mapping[str, Any]]) -> str:
    """One HTML page of every prediction's explanation (a token's title holds its value)."""
    records = "\n".join(_html_record(n, p) for n, p in enumerate(predictions, 1))
    green, red, blue = (f"rgb{colour(1.0)}", f"rgb{colour(-1.0)}", f"rgb{_blend(UNLIKELY, 1)}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>nlptasks explanations</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>Explanations</h1>\n"
        '<p class="legend">'
        f'<span style="background:{green}">towards the prediction</span> '
        f'<span style="background:{red}">against it</span> '
        f'<span style="background:{blue}">unlikely output token</span> '
        "(hover a token for its value)</p>\n"
        f"{records}\n</body>\n</html>\n"
    )


def _html_record(number: int, prediction: Mapping[str, Any]) -> str:
    explanation = prediction.get("explanation") or {}
    attributions = explanation.get("attributions", [])
    style = explanation.get("token_style")
    spans = "".join(
        f'{sep}<span style="background:rgb{colour(strength)}" title="{value:.4g}">'
        f"{html.escape(text)}</span>"
        for (sep, text), strength, value in zip(
            words(explanation.get("tokens", []), style),
            strengths(attributions),
            attributions,
            strict=True,
        )
    )
    out = ""
    if explanation.get("output_tokens"):
        pieces = "".join(
            f'{sep}<span style="background:rgb{_blend(UNLIKELY, unlikeliness(lp))}" '
            f'title="log p = {lp:.4g}">{html.escape(text)}</span>'
            for (sep, text), lp in zip(
                words(explanation["output_tokens"], style),
                explanation.get("logprobs", []),
                strict=True,
            )
        )
        out = f'<div class="tokens">output: {pieces}</div>\n'
    return (
        f'<div class="record">\n<div class="prediction">[{number}] '
        f"{html.escape(_prediction_line(prediction))}</div>\n"
        f'<div class="summary">{html.escape(summary(explanation))}</div>\n'
        f'<div class="tokens">{spans}</div>\n{out}</div>'
    )


def check_html_target(path: Path) -> None:
    """Before any prediction: a one-line NlpTasksError unless ``path`` can be written (its
    folder exists and is writable, and it is not a folder itself)."""
    import os

    from nlptasks.errors import NlpTasksError

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise NlpTasksError(
            f"Cannot write --explain-html {path}: folder {folder} does not exist. Create it "
            "or give a file in an existing folder."
        )
    if path.is_dir():
        raise NlpTasksError(f"Cannot write --explain-html {path}: it is a folder. Give a file.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise NlpTasksError(
            f"Cannot write --explain-html {path}: permission denied. Give a writable file."
        )


def write_html(predictions: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write :func:`render_html` to ``path`` (its folder must exist); returns ``path``."""
    from nlptasks.errors import NlpTasksError

    try:
        path.write_text(render_html(predictions), encoding="utf-8")
    except OSError as exc:
        raise NlpTasksError(
            f"Cannot write --explain-html {path}: {exc.strerror or exc}. Give a writable file."
        ) from None
    return path
