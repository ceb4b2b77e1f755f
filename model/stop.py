"""Stop strings: cut generated text at the earliest occurrence of any stop string.

Text arrives in arbitrary pieces. Only the longest tail that could still begin a stop string is
held back; everything before it is emitted at once, so at most ``max(len(stop)) - 1`` characters
are ever held and each push costs O(len(text) + longest stop).

The result does not depend on how the text was split: it is always the text before the earliest
occurrence in the whole stream. So when one stop completes while a longer one that started
earlier is still possible (stops ``"aba"`` and ``"b"`` after ``"ab"``), the matcher reports no
match yet and waits for the next piece; if the stream ends first, :meth:`StopMatcher.flush` cuts
at the completed stop and :attr:`StopMatcher.matched` becomes true.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopMatcher"]


class StopMatcher:
    """Hold back possible stop-string prefixes and cut the text at the first stop.

    :param stops: the stop strings; empty strings are ignored.
    """

    __slots__ = ("_held", "_matched", "_stops", "_which")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(dict.fromkeys(stop for stop in stops if stop))
        self._held = ""
        self._matched = False
        self._which: str | None = None

    @property
    def held(self) -> str:
        """The text received but not yet emitted."""
        return self._held

    @property
    def matched(self) -> bool:
        """Whether a stop string matched (by a push, or by the end of the stream in flush)."""
        return self._matched

    @property
    def which(self) -> str | None:
        """The stop string that matched (the earliest in the text), once one has."""
        return self._which

    def push(self, text: str) -> tuple[str, bool]:
        """Return the text now safe to emit and whether a stop string matched.

        After a match the text before it is returned with ``True``, and every later push
        returns ``("", True)``.
        """
        if self._matched:
            return "", True
        if not self._stops:
            return text, False
        buffer = self._held + text
        hit = self._earliest_match(buffer)
        tail = self._live_tail(buffer)
        # A stop-string prefix starting before the match could still complete into an earlier
        # match; at the same position the cut would be the same, so that needs no waiting.
        if hit is not None and hit <= tail:
            self._held = ""
            self._matched = True
            self._which = self._stop_at(buffer, hit)
            return buffer[:hit], True
        self._held = buffer[tail:]
        return buffer[:tail], False

    def flush(self) -> str:
        """Return the held text at the end of the stream, cut at a stop string if it holds one."""
        held, self._held = self._held, ""
        hit = self._earliest_match(held)
        if hit is None:
            return held
        self._matched = True
        self._which = self._stop_at(held, hit)
        return held[:hit]

    def _stop_at(self, buffer: str, index: int) -> str:
        # The longest stop string found there: the one whose text was cut.
        return max((s for s in self._stops if buffer.startswith(s, index)), key=len)

    def _earliest_match(self, buffer: str) -> int | None:
        found = [index for stop in self._stops if (index := buffer.find(stop)) >= 0]
        return min(found) if found else None

    def _live_tail(self, buffer: str) -> int:
        # Start of the longest suffix of buffer that is a proper prefix of some stop string.
        size = len(buffer)
        start = size
        for stop in self._stops:
            # Only the last len(stop) - 1 characters can begin an incomplete occurrence, and
            # only a start earlier than the best so far matters.
            index = buffer.find(stop[0], max(size - len(stop) + 1, 0), start)
            while index >= 0:
                if stop.startswith(buffer[index:]):
                    start = index
                    break
                index = buffer.find(stop[0], index + 1, start)
        return start
