"""The engine thread -> event loop hand-off.

The engine calls :class:`LoopDispatch` once per decode step with every event of the step;
that schedules one callback on the event loop (``call_soon_threadsafe`` never blocks),
which puts each event into its sequence's :class:`Channel`. A channel is a bounded anyio
memory object stream plus flow control: when its buffer is full it stops ``accepting``
(the engine then skips that one sequence, whose KV stays) and parks what still arrives;
the reader draining it below half resumes the sequence.

Deviation: the hand-off uses asyncio's loop directly, since anyio offers no non-blocking
"schedule on the loop from a foreign thread" call; Sluice runs on Hypercorn's asyncio worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence

import anyio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream, WouldBlock

from model.events import Event, Finished, SequenceSink

__all__ = ["Channel", "LoopDispatch"]


class Channel:
    """One sequence's events, from the engine's dispatch to exactly one reader."""

    def __init__(
        self,
        capacity: int,
        wake: Callable[[], None],
        *,
        finals: int = 1,
        observe: Callable[[Event], None] | None = None,
    ) -> None:
        self._send, self._recv = anyio.create_memory_object_stream[Event](capacity)
        self._observe = observe
        #: Finished events still to come: one per choice of the request.
        self._finals = finals
        self._capacity = capacity
        self._parked: deque[Event] = deque()
        self._wake = wake
        # Read by the engine thread; plain attribute writes are atomic under the GIL.
        self._accepting = True
        self._gone = False

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def gone(self) -> bool:
        return self._gone

    def put(self, event: Event) -> None:
        """Event-loop side of the dispatch. Never blocks."""
        if self._gone:
            return
        if not self._parked:
            try:
                self._send.send_nowait(event)
            except WouldBlock:
                self._accepting = False
            except (BrokenResourceError, ClosedResourceError):
                # The reader closed its end between the engine's step and this callback.
                self._gone = True
                return
            else:
                self._count_final(event)
                return
        self._parked.append(event)

    def _count_final(self, event: Event) -> None:
        if isinstance(event, Finished):
            self._finals -= 1
            if self._finals == 0:
                self._send.close()

    async def receive(self) -> Event:
        """Next event; raises ``anyio.EndOfStream`` after the final one."""
        event = await self._recv.receive()
        if not self._accepting:
            self._refill()
        if self._observe is not None:
            self._observe(event)
        return event

    def _refill(self) -> None:
        room = self._capacity - self._send.statistics().current_buffer_used
        while self._parked and room > 0:
            event = self._parked.popleft()
            self._send.send_nowait(event)
            room -= 1
            self._count_final(event)
        if not self._parked and room >= self._capacity // 2:
            self._accepting = True
            self._wake()

    async def drain(self) -> list[Event]:
        """Every event up to and including the final ones (for non-streamed answers)."""
        events: list[Event] = []
        try:
            while True:
                events.append(await self.receive())
        except EndOfStream:
            return events

    def close(self) -> None:
        """The reader is done (finished, or its client left): the engine drops the sequence."""
        if not self._gone:
            self._gone = True
            self._recv.close()
            self._send.close()
            self._parked.clear()
            self._wake()


class LoopDispatch:
    """The engine's dispatch: one thread-safe callback per step onto the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, batch: Sequence[tuple[SequenceSink, Event]]) -> None:
        # RuntimeError: the loop closed during shutdown, nobody is left to read these events.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_deliver, batch)


def _deliver(batch: Sequence[tuple[SequenceSink, Event]]) -> None:
    for sink, event in batch:
        if isinstance(sink, Channel):
            sink.put(event)
