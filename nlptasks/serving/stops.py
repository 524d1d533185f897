"""Stop strings over text that arrives in pieces: what may be sent now, what is held back.

A stop string can straddle two pieces (" fi" + "lm" for "film"), so a piece's end that
could be the start of a stop string is held until the next piece settles it; once a stop
string is complete the text before it is final and generating can end."""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Feed it the generated pieces in order; it returns the text safe to send."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        """Text received but not sent: it could be the start of a stop string."""
        self.stopped = False
        """A stop string was found: nothing after it is sent."""

    def feed(self, piece: str) -> str:
        """The text of ``piece`` (with what was held) that can be sent now."""
        if self.stopped:
            return ""
        text = self.pending + piece
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:  # the earliest stop string wins; the text ends before it
            self.stopped, self.pending = True, ""
            return text[: min(found)]
        held = self._held(text)
        self.pending = text[len(text) - held :]
        return text[: len(text) - held]

    def finish(self) -> str:
        """The text still held once generation ended (no stop string completed it)."""
        rest, self.pending = self.pending, ""
        return "" if self.stopped else rest

    def _held(self, text: str) -> int:
        """The length of the longest end of ``text`` that begins some stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest


def cut_at_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` before its first stop string, and whether there was one."""
    scanner = StopScanner(stops)
    kept = scanner.feed(text)
    return kept + scanner.finish(), scanner.stopped
