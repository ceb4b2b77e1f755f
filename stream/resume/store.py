"""The stream store: per stream id, a bounded buffer of framed events, its readers and its
detach window.

Events are numbered from 1 in the order the pump appends them; a reader resumes after an
event number. A stream is kept while a reader is attached and for ``window`` seconds after
the last one left (or before the first came); then it expires: its generation is cancelled
(freeing the slot) if still running, its buffer dropped, and its id remembered, so a late
resume is told 410 rather than 404.

Bounds: ``per_stream`` bytes of frames per stream, ``total`` over all streams. Frames a
reader has already handed to its socket are dropped first when a stream outgrows its
bound, or all of them outgrow theirs (resuming before them is then 410); frames nobody has
read are never dropped:
instead :meth:`MemoryStreamStore.append` waits for room, its pump stops reading the
sequence's channel, and the engine pauses that one sequence (and drops it after its stall
timeout, as for any client that reads nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.errors import Gone, InvalidRequest, NotFound

__all__ = ["MemoryStreamStore", "StreamReader", "StreamStore", "owner_of"]

_log = logging.getLogger("sluice.resume")

#: Expired ids remembered for a 410 (older ones are then simply unknown: 404).
_REMEMBERED = 65536


def owner_of(key: str | None) -> str | None:
    """What a stream records of the API key that started it: a SHA-256 digest, never the
    key; None when the server checks no keys."""
    return None if key is None else hashlib.sha256(key.encode()).hexdigest()


class StreamReader(Protocol):
    """One connection's view of a stream, from an event number on."""

    async def next(self, patience: float) -> tuple[int, bytes] | None:
        """The frames after the last ones returned, joined, and the number of the last of
        them; None if ``patience`` seconds passed with nothing new.

        :raises anyio.EndOfStream: the stream is complete and read, expired, or another
            reader took it over.
        """
        ...

    def sent(self, upto: int) -> None:
        """Frames up to event ``upto`` went to the socket (they may be dropped to make room)."""
        ...

    def close(self) -> None:
        """The connection ended; the stream's detach window starts if it was the reader."""
        ...


class StreamStore(Protocol):
    """Where resumable streams live (see the module notes)."""

    def open(self, owner: str | None, cancel: Callable[[], None]) -> str:
        """A new stream's id, unguessable. ``cancel`` ends its generation when it expires."""
        ...

    async def append(self, stream: str, n: int, frame: bytes, *, last: bool = False) -> bool:
        """Add event ``n`` (the next number); waits for room unless it is the ``last``.
        False: the stream expired, stop generating."""
        ...

    def end(self, stream: str) -> None:
        """The stream has no more events (idempotent)."""
        ...

    def attach(self, stream: str, owner: str | None, after: int) -> StreamReader:
        """A reader of the events after ``after``; any earlier reader of it ends.

        :raises stream.errors.NotFound: no such stream, or another key started it.
        :raises stream.errors.Gone: it expired, or the events after ``after`` were dropped.
        :raises stream.errors.InvalidRequest: ``after`` is past its last event.
        """
        ...

    def spawn(self, pump: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``pump`` in the background until it returns or the server stops."""
        ...


class _Stream:
    __slots__ = (
        "attached",
        "cancel",
        "changed",
        "complete",
        "detached_at",
        "first",
        "frames",
        "owner",
        "read",
        "removed",
        "size",
        "token",
        "waiting",
    )

    def __init__(self, owner: str | None, cancel: Callable[[], None]) -> None:
        self.owner = owner
        self.cancel = cancel
        #: ``frames[n - 1]`` is event ``n``; dropped ones are None.
        self.frames: list[bytes | None] = []
        #: The lowest event number still kept.
        self.first = 1
        self.size = 0
        #: The highest event number the current reader handed to its socket.
        self.read = 0
        self.complete = False
        self.removed = False
        self.token = 0
        self.attached = False
        self.detached_at = time.monotonic()
        self.changed = anyio.Event()
        #: Tasks waiting on ``changed``: with none, a change costs no new event.
        self.waiting = 0

    @property
    def last(self) -> int:
        return len(self.frames)

    def notify(self) -> None:
        if self.waiting:
            self.changed.set()
            self.changed = anyio.Event()

    async def wait(self, patience: float) -> bool:
        """Wait up to ``patience`` seconds for a change; False if none came."""
        changed = self.changed
        self.waiting += 1
        try:
            with anyio.move_on_after(patience):
                await changed.wait()
                return True
            return False
        finally:
            self.waiting -= 1


class _Reader:
    def __init__(self, store: MemoryStreamStore, stream: _Stream, after: int) -> None:
        self._store = store
        self._stream = stream
        self._token = stream.token
        self._position = after

    async def next(self, patience: float) -> tuple[int, bytes] | None:
        stream = self._stream
        while True:
            if stream.token != self._token or stream.removed:
                raise anyio.EndOfStream
            last = stream.last
            if last > self._position:
                # Unread frames are never dropped (see the module notes): no None here.
                body = b"".join(f for f in stream.frames[self._position : last] if f)
                self._position = last
                return last, body
            if stream.complete:
                raise anyio.EndOfStream
            if not await stream.wait(patience):
                return None

    def sent(self, upto: int) -> None:
        stream = self._stream
        if stream.token == self._token and upto > stream.read:
            stream.read = upto
            stream.notify()  # a pump may be waiting for room (a no-op when none is)

    def close(self) -> None:
        stream = self._stream
        if stream.token != self._token or not stream.attached:
            return
        stream.attached = False
        stream.detached_at = time.monotonic()
        if not (stream.complete and self._position == stream.last):
            self._store.detached.inc()


class MemoryStreamStore:
    """Resumable streams in this process's memory (one replica; see the module notes).

    ``window``: seconds a stream is kept with no reader; ``per_stream`` and ``total``: bytes
    of frames kept. Call :meth:`running` around the server's life (its background tasks).
    """

    def __init__(
        self, *, window: float, per_stream: int, total: int, registry: CollectorRegistry
    ) -> None:
        self._window = window
        self._per_stream = per_stream
        self._total = total
        self._size = 0
        self._streams: dict[str, _Stream] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._tasks: TaskGroup | None = None
        self.detached = Counter(
            "sluice_streams_detached",
            "Resumable streams whose reader left before the end.",
            registry=registry,
        )
        self.resumed = Counter(
            "sluice_streams_resumed", "Resumable streams a client resumed.", registry=registry
        )
        self.expired = Counter(
            "sluice_streams_expired",
            "Resumable streams cancelled when their window passed with no reader.",
            registry=registry,
        )
        buffered = Gauge(
            "sluice_stream_buffer_bytes",
            "Bytes of events kept for resumable streams.",
            registry=registry,
        )
        buffered.set_function(lambda: self._size)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the pumps and the expiry sweep while the body runs; cancel them after."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            tasks.start_soon(self._sweep)
            try:
                yield
            finally:
                self._tasks = None
                tasks.cancel_scope.cancel()

    def spawn(self, pump: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._tasks is None:
            raise RuntimeError("the stream store is not running (no server lifespan)")
        self._tasks.start_soon(pump)

    def open(self, owner: str | None, cancel: Callable[[], None]) -> str:
        stream = secrets.token_urlsafe(18)
        self._streams[stream] = _Stream(owner, cancel)
        return stream

    async def append(self, stream: str, n: int, frame: bytes, *, last: bool = False) -> bool:
        kept = self._streams.get(stream)
        if kept is None:
            return False
        if n != kept.last + 1:
            raise ValueError(f"stream {stream}: event {n} appended after {kept.last}")
        if not last:
            while not self._room(kept):
                # A reader's progress wakes us; room freed by other streams is polled.
                await kept.wait(0.5)
                if kept.removed:
                    return False
        kept.frames.append(frame)
        kept.size += len(frame)
        self._size += len(frame)
        kept.complete = kept.complete or last
        kept.notify()
        return True

    def _room(self, stream: _Stream) -> bool:
        frames = stream.frames
        # Over either bound, frames already sent go first (see the module notes).
        while (
            stream.size >= self._per_stream or self._size >= self._total
        ) and stream.first <= stream.read:
            dropped = frames[stream.first - 1]
            frames[stream.first - 1] = None
            stream.first += 1
            if dropped is not None:
                stream.size -= len(dropped)
                self._size -= len(dropped)
        return stream.size < self._per_stream and self._size < self._total

    def end(self, stream: str) -> None:
        kept = self._streams.get(stream)
        if kept is not None and not kept.complete:
            kept.complete = True
            kept.notify()

    def attach(self, stream: str, owner: str | None, after: int) -> StreamReader:
        kept = self._streams.get(stream)
        if (
            kept is not None
            and kept.owner is not None
            and (owner is None or not hmac.compare_digest(kept.owner, owner))
        ):
            kept = None  # another key's stream: as if there were none
        if kept is None:
            if stream in self._expired:
                raise Gone(
                    f"Stream {stream!r} has expired; start the request again.",
                    code="stream_expired",
                )
            raise NotFound(f"No stream {stream!r} to resume.", code="stream_not_found")
        if after > kept.last:
            raise InvalidRequest(
                f"Last-Event-ID names event {after} of stream {stream!r}, which has sent "
                f"{kept.last} so far.",
                code="invalid_last_event_id",
            )
        if after + 1 < kept.first:
            raise Gone(
                f"The events after {after} of stream {stream!r} are no longer buffered.",
                code="stream_expired",
            )
        if kept.token:  # not the first reader: a client came back
            self.resumed.inc()
        kept.token += 1
        kept.attached = True
        kept.read = after  # the one reader now: it needs everything after its position
        kept.notify()  # ends the previous reader
        return _Reader(self, kept, after)

    async def _sweep(self) -> None:
        tick = min(1.0, max(self._window / 4, 0.05))
        while True:
            await anyio.sleep(tick)
            now = time.monotonic()
            for stream, kept in list(self._streams.items()):
                if not kept.attached and now - kept.detached_at >= self._window:
                    self._expire(stream, kept)

    def _expire(self, stream: str, kept: _Stream) -> None:
        del self._streams[stream]
        self._expired[stream] = None
        if len(self._expired) > _REMEMBERED:
            self._expired.popitem(last=False)
        self._size -= kept.size
        kept.removed = True
        kept.notify()
        if not kept.complete:
            self.expired.inc()
            _log.info("resumable stream %s expired with no reader; generation cancelled", stream)
            kept.cancel()
