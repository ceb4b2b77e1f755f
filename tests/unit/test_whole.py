"""Unit tests for stream.transports.whole: one JSON body, or 499 when the client left."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from starlette.types import Message

from stream.documents import Document, json_document
from stream.errors import DeadlineExceeded
from stream.transports.whole import CLIENT_CLOSED, whole_response

SCOPE = {"type": "http", "method": "POST", "path": "/v1/completions"}


class Joined:
    """An encoder answering the events joined, or a 504 when one says so."""

    def whole(self, events: Sequence[str]) -> Document:
        if "late" in events:
            raise DeadlineExceeded("the request deadline passed", code="deadline_exceeded")
        return json_document({"text": "".join(events)})


class Closes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def answer(events: list[str], *, leave: bool = False) -> tuple[list[Message], int]:
    left = anyio.Event()
    closes = Closes()

    async def receive() -> Message:
        await left.wait()
        return {"type": "http.disconnect"}

    async def collect() -> list[str]:
        if leave:
            left.set()
            await anyio.sleep_forever()
        return events

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        response = await whole_response(receive, collect, Joined(), on_close=closes)
        await response(SCOPE, receive, send)
    return sent, closes.count


@pytest.mark.anyio
async def test_the_events_become_one_json_body() -> None:
    sent, closes = await answer(["Hel", "lo"])
    start, body = sent
    assert start["status"] == 200
    assert dict(start["headers"])[b"content-type"] == b"application/json"
    assert body["body"] == b'{"text":"Hello"}'
    assert closes == 1


@pytest.mark.anyio
async def test_a_client_that_leaves_cancels_the_collection() -> None:
    sent, closes = await answer(["never"], leave=True)
    assert sent[0]["status"] == CLIENT_CLOSED
    assert closes == 1


@pytest.mark.anyio
async def test_the_encoders_error_reaches_the_caller_after_closing() -> None:
    closes = Closes()

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def collect() -> list[str]:
        return ["a", "late"]

    with anyio.fail_after(5), pytest.raises(DeadlineExceeded):
        await whole_response(receive, collect, Joined(), on_close=closes)
    assert closes.count == 1
