"""Bad-input cases: what a plugin author and publisher are promised."""

from __future__ import annotations

from tests.bad_input import Case, Files


def add_files(f: Files) -> None:
    """The files these cases need, under f["root"]."""


CASES: list[Case] = []
