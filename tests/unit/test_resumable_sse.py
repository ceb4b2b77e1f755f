"""The resumable SSE transport over a scripted event source: ids, the retry hint, heartbeat
lines, a client that leaves while generation goes on, and a resume from an id."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message

from stream.documents import Document
from stream.errors import InvalidRequest
from stream.resume import MemoryStreamStore
from stream.transports.resumable import ResumableSSE, parse_event_id

pytestmark = pytest.mark.anyio


class _Words:
    """An encoder of plain strings: each is one document; "END" ends the response."""

    def opening(self) -> Sequence[Document]:
        return ()

    def encode(self, event: str) -> Sequence[Document]:
        if event == "END":
            return (Document(b"[DONE]", "end"),)
        return (Document(event.encode()),)

    def error(self, message: str) -> Document:
        return Document(b"error: " + message.encode(), "error")


def test_event_ids_parse_or_are_refused() -> None:
    assert parse_event_id("abc-_9:12") == ("abc-_9", 12)
    for bad in ("", "abc", "abc:", ":3", "abc:-1", "abc:1x", "abc:1234567890", "a:\u0663"):
        with pytest.raises(InvalidRequest):
            parse_event_id(bad)


async def _read(response: ASGIApp, frames: int | None = None) -> bytes:
    """The body ``response`` sends; the client leaves after ``frames`` data frames."""
    body = b""
    left = anyio.Event()

    async def receive() -> Message:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal body
        body += message.get("body", b"")
        if frames is not None and body.count(b"data: ") >= frames:
            left.set()

    with anyio.fail_after(10):
        await response({"type": "http"}, receive, send)
    return body


async def test_a_stream_outlives_its_client_and_resumes_after_an_id() -> None:
    store = MemoryStreamStore(
        window=60, per_stream=1 << 20, total=1 << 20, registry=CollectorRegistry()
    )
    words = ["one", "two", "three", "four", "END"]
    produced = anyio.Event()
    source = iter(words)
    closed: list[bool] = []

    async def next_event() -> str:
        word = next(source)
        if word == "END":
            produced.set()
        await anyio.sleep(0.01)
        return word

    async with store.running():
        sse = ResumableSSE(store, url="/v1/streams/", heartbeat_interval=0.005)
        first = sse.start(next_event, _Words(), close=lambda: closed.append(True), owner=None)
        body = await _read(first, frames=2)
        assert b": keep-alive\n" in body  # 5 ms beats, at least 10 ms between events
        # Heartbeats are lines, never a blank-line block of their own.
        assert b": keep-alive\n\n" not in body
        body = body.replace(b": keep-alive\n", b"")
        assert body.startswith(b"retry: 2000\nid: ")
        stream = body.split(b"id: ", 1)[1].split(b":", 1)[0].decode()
        assert b"data: one\n\n" in body
        # The client left; the generation goes on to its end regardless.
        with anyio.fail_after(10):
            await produced.wait()
            while not closed:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        rest = await _read(sse.resume(stream, 1, None))
    events = [block for block in rest.replace(b": keep-alive\n", b"").split(b"\n\n") if block]
    assert events == [
        b"retry: 2000\nid: %s:2\ndata: two" % stream.encode(),
        b"id: %s:3\ndata: three" % stream.encode(),
        b"id: %s:4\ndata: four" % stream.encode(),
        b"id: %s:5\ndata: [DONE]" % stream.encode(),
    ]
