"""Languages: their names (in prompts and T5's task prefix) and the language codes of
multilingual tokenizers (mBART, NLLB, M2M100)."""

from __future__ import annotations

import re
from typing import Any

from nlptasks import DataError

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "tr": "Turkish",
    "zh": "Chinese",
}
"""Names used in prompts and T5's prefix (``translate English to Romanian: ``)."""


def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get((code or "").split("_")[0].lower(), code or "")


def language_token_id(tokenizer: Any, code: str) -> int | None:
    """The id of a language code's token (mBART/NLLB write ``en_XX`` / ``eng_Latn``, M2M100
    ``__en__``), or None when the tokenizer does not know it. Language codes are added
    (special) tokens: an ordinary subword spelled ``en`` is not one."""
    added = dict(tokenizer.get_added_vocab())
    for token in (code, f"__{code}__"):
        if token in added:
            return int(added[token])
    return None


def language_codes(tokenizer: Any) -> list[str]:
    """The language codes among a tokenizer's added tokens (``en_XX``, ``eng_Latn``, and
    M2M100's ``__en__`` written as ``en``, the form ``src_lang`` takes)."""
    codes = []
    for token in sorted(tokenizer.get_added_vocab()):
        if m := re.fullmatch(r"__([a-z]{2,3})__", token):
            codes.append(m.group(1))
        elif re.fullmatch(r"[a-z]{2,3}_[A-Za-z]{2,4}", token):
            codes.append(token)
    return codes


def language_code(tokenizer: Any, options: Any, side: str) -> str:
    """The code of the ``side`` (source or target) language: ``options.{side}_lang_code``,
    else ``options.{side}_lang``; one this tokenizer knows, or a DataError listing some."""
    code = getattr(options, f"{side}_lang_code") or getattr(options, f"{side}_lang")
    if language_token_id(tokenizer, code) is None:
        known = language_codes(tokenizer)
        hint = f" It knows {', '.join(known[:6])}{', ...' if len(known) > 6 else ''}."
        raise DataError(
            f"'{code}' is not a language code this tokenizer knows.{hint if known else ''} "
            f"Set options.{side}_lang_code to the code of the {side} language."
        )
    return str(code)


def refuse_language_codes(options: Any) -> None:
    """A DataError when the options set language codes: the tokenizer has none."""
    for key in ("source_lang_code", "target_lang_code"):
        if getattr(options, key):
            raise DataError(
                f"options.{key} is set, but this model's tokenizer has no language codes "
                f"(only mBART, NLLB and M2M100 tokenizers do). Drop it."
            )


PROMPT_FIELDS = ("source", "target", "text")
"""What a decoder-only model's prompt (``options.prompt``) may hold: the language names and
the text to translate."""


def prompt_problems(template: str, key: str = "options.prompt") -> list[str]:
    """What is wrong with a prompt template, found when the recipe is read (``str.format``
    would raise a KeyError for the first prompt, after the model is loaded)."""
    import difflib
    import string

    allowed = ", ".join(f"{{{name}}}" for name in PROMPT_FIELDS)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template)]
    except ValueError as exc:
        return [f"'{key}' is not a valid template ({exc}); write {{{{ and }}}} for a literal brace"]
    for field in fields:
        if field is None or field in PROMPT_FIELDS:
            continue
        shown = f"{{{field}}}"[:40]
        name = re.match(r"\w*", field)
        close = difflib.get_close_matches(name.group() if name else "", PROMPT_FIELDS, n=1)
        hint = f" (did you mean {{{close[0]}}}?)" if close else ""
        return [
            f"'{key}' has the placeholder {shown}{hint}, which it cannot fill: it may hold "
            f"{allowed} (write {{{{ and }}}} for a literal brace)"
        ]
    return []
