"""Resumable server-sent events: a generation that outlives its connection.

A *pump* task (in the stream store's task group, not the request's) reads the sequence's
events, has the encoder make documents, frames each with ``id: <stream>:<n>`` and appends
it to the store; every connection, the first one included, is a reader of the store from
an event number on. So a client that leaves does not cancel the generation: it goes on
into the bounded buffer until the store's window passes with no reader. The first response
names the stream's URL in a header (:data:`STREAM_URL_HEADER`); a client resumes by sending
``Last-Event-ID`` with the same POST or with a GET on that URL (``EventSource`` does that by
itself) and receives exactly the events after that id, then the live tail.

Deviations, chosen for the clients that exist:

* the ``retry:`` hint rides in the first event's block rather than a block of its own, and
  heartbeats are a comment *line* without the blank line that ends a block: the openai
  Python SDK (3.x) dispatches any block once an id was seen, even one without data, and
  then fails to parse its empty data as JSON;
* a GET without ``Last-Event-ID`` starts at event 1, so a page can hand a stream it started
  with ``fetch`` to an ``EventSource``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from stream.documents import Document, StreamEncoder
from stream.errors import InvalidRequest
from stream.resume.store import StreamReader, StreamStore

from .sse import SSE_HEADERS, frame, run_until_disconnect

__all__ = ["RETRY_MS", "STREAM_URL_HEADER", "ResumableSSE", "parse_event_id"]

_log = logging.getLogger("sluice.sse")

E = TypeVar("E")

#: Milliseconds a browser's ``EventSource`` waits before reconnecting.
RETRY_MS = 2000
#: The response header naming the stream's URL (relative to the server).
STREAM_URL_HEADER = "x-stream-url"
#: A heartbeat comment line that dispatches no event (see the module notes).
_HEARTBEAT = b": keep-alive\n"


def parse_event_id(value: str) -> tuple[str, int]:
    """The stream id and event number of a ``Last-Event-ID`` (``<stream>:<n>``).

    :raises stream.errors.InvalidRequest: it is not one of Sluice's event ids.
    """
    stream, _, number = value.strip().rpartition(":")
    if not stream or not number.isascii() or not number.isdigit() or len(number) > 9:
        raise InvalidRequest(
            f"Last-Event-ID {value[:80]!r} is not an event id of a Sluice stream ('<stream>:<n>').",
            code="invalid_last_event_id",
        )
    return stream, int(number)


class ResumableSSE:
    """Starts and resumes resumable streams over a :class:`~stream.resume.StreamStore`.

    ``url``: the prefix of a stream's URL (its id follows); ``heartbeat_interval``: seconds
    of silence before a heartbeat comment.
    """

    def __init__(self, store: StreamStore, *, url: str, heartbeat_interval: float) -> None:
        self._store = store
        self._url = url
        self._interval = heartbeat_interval

    def start(
        self,
        next_event: Callable[[], Awaitable[E]],
        encoder: StreamEncoder[E],
        *,
        close: Callable[[], None],
        owner: str | None,
    ) -> ASGIApp:
        """The first response of a new stream; ``close`` ends the generation (it runs once
        the pump is done, or when the stream expires)."""
        store = self._store
        stream = store.open(owner, close)
        reader = store.attach(stream, owner, 0)

        async def pump() -> None:
            await _pump(store, stream, next_event, encoder, close)

        try:
            store.spawn(pump)
        except BaseException:
            reader.close()
            close()
            raise
        header = (STREAM_URL_HEADER.encode(), (self._url + stream).encode())
        return _ReaderResponse(reader, self._interval, [header])

    def resume(self, stream: str, after: int, owner: str | None) -> ASGIApp:
        """A response carrying the events of ``stream`` after event ``after``. Raises as
        :meth:`stream.resume.StreamStore.attach`."""
        return _ReaderResponse(self._store.attach(stream, owner, after), self._interval, [])


async def _pump(
    store: StreamStore,
    stream: str,
    next_event: Callable[[], Awaitable[E]],
    encoder: StreamEncoder[E],
    close: Callable[[], None],
) -> None:
    n = 0

    async def put(documents: Sequence[Document]) -> bool:
        """Append the documents' frames; False when the response is over or the stream gone."""
        nonlocal n
        for document in documents:
            last = document.kind != "event"
            if document.data:
                n += 1
                framed = frame(
                    Document(document.data, document.kind, document.event, f"{stream}:{n}")
                )
                if not await store.append(stream, n, framed, last=last):
                    return False
            if last:
                return False
        return True

    try:
        if await put(encoder.opening()):
            while await put(encoder.encode(await next_event())):
                pass
    except (anyio.EndOfStream, anyio.ClosedResourceError):
        # The channel ended without a final event: the stream expired (its reader is gone
        # anyway) or the engine went away.
        await put([encoder.error("the generation ended unexpectedly")])
    except Exception:
        _log.exception("a resumable stream failed while generating")
        await put([encoder.error("internal error while streaming")])
    finally:
        close()
        store.end(stream)


class _ReaderResponse:
    """An SSE response of a stream's frames from a reader, with heartbeats."""

    def __init__(
        self, reader: StreamReader, interval: float, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._reader = reader
        self._interval = interval
        self._headers = SSE_HEADERS + headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await run_until_disconnect(receive, lambda: self._write(send))
        finally:
            self._reader.close()

    async def _write(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        reader = self._reader
        retry = b"retry: %d\n" % RETRY_MS
        while True:
            try:
                got = await reader.next(self._interval)
            except anyio.EndOfStream:
                break
            if got is None:
                body = _HEARTBEAT
            else:
                upto, body = got
                body, retry = retry + body, b""
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if got is not None:
                reader.sent(upto)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
