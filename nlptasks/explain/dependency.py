"""captum is an optional extra: ``--explain`` without it is one line naming the fix."""

from __future__ import annotations

from nlptasks.errors import NlpTasksError

CAPTUM_MISSING = "captum is missing: pip install 'nlptasks[explain]' (explanations need it)."


def require_captum() -> None:
    """Raise a one-line NlpTasksError when captum cannot be imported.

    Checked before a model loads, so a user learns it in a second, not after a minute."""
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        raise NlpTasksError(CAPTUM_MISSING) from None
