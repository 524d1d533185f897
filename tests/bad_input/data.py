"""Bad-input cases: small, odd and unparsable data files."""

from __future__ import annotations

from tests.bad_input import Case, Files


def add_files(f: Files) -> None:
    """The files these cases need, under f["root"]."""


CASES: list[Case] = []
