"""A sequence sink that collects one request's events, for engine tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from model.events import Delta, Event, Finished, SequenceSink

__all__ = ["WAIT", "CollectingSink", "dispatch"]

#: Seconds a test waits for a request: generous, for a loaded 2-core machine.
WAIT = 300.0


class CollectingSink:
    """Collects one request's events as the engine hands them out."""

    def __init__(self, choices: int = 1) -> None:
        self.events: list[Event] = []
        self.finished = threading.Event()
        self._left = choices

    @property
    def accepting(self) -> bool:
        return True

    @property
    def gone(self) -> bool:
        return False

    def put(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Finished):
            self._left -= 1
            if self._left == 0:
                self.finished.set()

    def wait(self, timeout: float = WAIT) -> Finished:
        assert self.finished.wait(timeout), "the request did not finish"
        last = self.events[-1]
        assert isinstance(last, Finished)
        return last

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self.events if isinstance(e, Delta))

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Delta))


def dispatch(events: Sequence[tuple[SequenceSink, Event]]) -> None:
    for sink, event in events:
        assert isinstance(sink, CollectingSink)
        sink.put(event)
