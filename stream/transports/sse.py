"""Server-sent events, written by hand: framing, heartbeats, and the streaming response.

One task writes (documents, heartbeats); one task listens for the client leaving; whichever
finishes first cancels the other. Heartbeats are comment frames sent whenever nothing has
gone out for ``heartbeat_interval`` seconds: while queued, while the prompt is read, and
between tokens. The writer times out its own receive, so no second sender and no lock.

A document becomes ``data:`` (and ``event:`` / ``id:`` when it has them); what the data
means is the encoder's business. Deviation: no ``retry:`` hint, as OpenAI's streams have
none; a stream that can be resumed is :mod:`stream.transports.resumable`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
from starlette.types import Receive, Scope, Send

from stream.documents import Document, StreamEncoder

__all__ = [
    "HEARTBEAT",
    "SSE_HEADERS",
    "SSEResponse",
    "frame",
    "frames",
    "run_until_disconnect",
]

_log = logging.getLogger("sluice.sse")

E = TypeVar("E")
T = TypeVar("T")

HEARTBEAT = b": keep-alive\n\n"
SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tell nginx-style proxies not to buffer the stream.
    (b"x-accel-buffering", b"no"),
]


def frame(document: Document) -> bytes:
    """One SSE frame for ``document``; nothing for empty data (an API without a terminator)."""
    data = document.data
    if not data:
        return b""
    if document.event is None and document.id is None:
        return b"data: " + data + b"\n\n"
    head = b""
    if document.event is not None:
        head += b"event: " + document.event.encode() + b"\n"
    if document.id is not None:
        head += b"id: " + document.id.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def frames(documents: Sequence[Document]) -> tuple[bytes, bool]:
    """The frames of ``documents``, and whether one of them completes the response."""
    body = b""
    last = False
    for document in documents:
        body += frame(document)
        last = last or document.kind != "event"
    return body, last


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_until_disconnect(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``work`` unless the client leaves first; then it is cancelled and None returned."""
    result: list[T] = []

    async with anyio.create_task_group() as tg:

        async def listen() -> None:
            await _until_disconnect(receive)
            tg.cancel_scope.cancel()

        tg.start_soon(listen)
        result.append(await work())
        tg.cancel_scope.cancel()
    return result[0] if result else None


class SSEResponse(Generic[E]):
    """An ASGI response streaming ``encoder``'s documents for each event until one ends it.

    ``next_event`` is awaited under a heartbeat timeout, so it must be safe to cancel (a
    memory object stream's ``receive`` is). ``heartbeat``: the document sent after a silence,
    for APIs that define one (default: a comment frame). ``on_close`` runs however the stream
    ends. A source that ends early, or an encoder that fails, ends the stream with the
    encoder's error document after what was sent.
    """

    def __init__(
        self,
        next_event: Callable[[], Awaitable[E]],
        encoder: StreamEncoder[E],
        *,
        heartbeat_interval: float = 15.0,
        heartbeat: Document | None = None,
        on_close: Callable[[], None] = lambda: None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._next_event = next_event
        self._encoder = encoder
        self._interval = heartbeat_interval
        self._heartbeat = HEARTBEAT if heartbeat is None else frame(heartbeat)
        self._on_close = on_close
        self._headers = SSE_HEADERS + (headers or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await run_until_disconnect(receive, lambda: self._write(send))
        finally:
            self._on_close()

    async def _write(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        encode = self._encoder.encode
        body = b""
        try:
            opening, _ = frames(self._encoder.opening())
            if opening:
                await send({"type": "http.response.body", "body": opening, "more_body": True})
            while True:
                with anyio.move_on_after(self._interval) as waited:
                    event = await self._next_event()
                if waited.cancelled_caught:
                    body, last = self._heartbeat, False
                else:
                    body, last = frames(encode(event))
                if last:
                    break
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            body = self._failure("the generation ended unexpectedly")
        except Exception:
            # Headers are out: the only honest report left is an error frame, then a clean end.
            _log.exception("streaming failed after the response started")
            body = self._failure("internal error while streaming")
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _failure(self, message: str) -> bytes:
        return frame(self._encoder.error(message))
