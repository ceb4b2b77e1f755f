"""Unit tests for stream.transports.sse: frames, heartbeats, disconnects and the streaming
response.

``SSEResponse`` is driven as a plain ASGI callable: ``receive`` waits for the test to say the
client left, ``send`` records every message, and events come from an anyio memory object
stream that a task feeds on a schedule; a scripted encoder turns each into a document. Every
test runs under a ``fail_after`` watchdog.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Scope

from stream.documents import Document, json_document
from stream.errors import error_object
from stream.transports.sse import (
    HEARTBEAT,
    SSE_HEADERS,
    SSEResponse,
    frame,
    frames,
    run_until_disconnect,
)

INTERVAL = 0.02  # heartbeat interval for the timing tests, in seconds
WATCHDOG = 5.0
SCOPE: Scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
END = "END"
OPENING = b'data: {"opening":true}\n\n'
DONE = b"data: [DONE]\n\n"


class Client:
    """Hand-made ASGI ``receive``/``send``: records what is sent, leaves when told to."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.left = anyio.Event()
        self.left_at: float | None = None
        self.receives = 0

    def leave(self) -> None:
        self.left_at = time.monotonic()
        self.left.set()

    async def receive(self) -> Message:
        self.receives += 1
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def bodies(self) -> list[Message]:
        return [m for m in self.sent if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(m["body"] for m in self.bodies)


def data_frame(payload: Any) -> bytes:
    return frame(json_document(payload))


class Script:
    """An encoder: each event is a text, ``END`` ends the stream with ``[DONE]``."""

    def __init__(self, opening: bytes = b"") -> None:
        # The opening as the one document whose frame it is.
        data = opening.removeprefix(b"data: ").removesuffix(b"\n\n")
        self._opening = [Document(data)] if opening else []

    def opening(self) -> Sequence[Document]:
        return self._opening

    def encode(self, event: str) -> Sequence[Document]:
        if event == END:
            return [Document(b"[DONE]", "end")]
        return [json_document({"text": event})]

    def error(self, message: str) -> Document:
        return json_document(error_object(message, "server_error"), "error")


class SkipBlank(Script):
    def encode(self, event: str) -> Sequence[Document]:
        return [] if event == "" else super().encode(event)


class Fragile(Script):
    def encode(self, event: str) -> Sequence[Document]:
        if event == "boom":
            raise ValueError("broken renderer")
        return super().encode(event)


def text_frame(text: str) -> bytes:
    return data_frame({"text": text})


def parse_data(raw: bytes) -> Any:
    assert raw.startswith(b"data: ")
    assert raw.endswith(b"\n\n")
    return json.loads(raw[len(b"data: ") : -2])


class Closes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def stream(
    script: Sequence[tuple[float, str]],
    client: Client,
    *,
    opening: bytes = b"",
    interval: float = INTERVAL,
    on_close: Callable[[], None] = lambda: None,
    headers: list[tuple[bytes, bytes]] | None = None,
    encoder: type[Script] = Script,
    close_source: bool = True,
) -> None:
    """Serve ``script`` through an ``SSEResponse`` to ``client`` under a watchdog."""
    send, recv = anyio.create_memory_object_stream[str](16)

    async def produce() -> None:
        try:
            for delay, event in script:
                await anyio.sleep(delay)
                await send.send(event)
        finally:
            if close_source:
                send.close()

    response = SSEResponse[str](
        recv.receive,
        encoder(opening),
        heartbeat_interval=interval,
        on_close=on_close,
        headers=headers,
    )
    with anyio.fail_after(WATCHDOG), recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await response(SCOPE, client.receive, client.send)
            tg.cancel_scope.cancel()
    send.close()


def ends(client: Client) -> list[Message]:
    return [m for m in client.bodies if not m.get("more_body", False)]


# --- data_frame ------------------------------------------------------------------------------


def test_data_frame_is_one_compact_line_with_utf8_kept() -> None:
    payload = {"text": "héllo ✓ 日本", "n": [1, 2], "none": None}
    raw = data_frame(payload)
    assert raw == 'data: {"text":"héllo ✓ 日本","n":[1,2],"none":null}\n\n'.encode()
    assert raw.count(b"\n") == 2
    assert "✓".encode() in raw


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(payload=_JSON)
def test_data_frame_round_trips_and_never_breaks_the_line(payload: Any) -> None:
    raw = data_frame(payload)
    assert raw.count(b"\n") == 2
    assert b"\r" not in raw
    assert parse_data(raw) == payload


# --- SSEResponse: the happy path ---------------------------------------------------------------


@pytest.mark.anyio
async def test_headers_come_first_with_sse_settings() -> None:
    client = Client()
    extra = [(b"x-request-id", b"abc")]
    await stream([(0, "a"), (0, END)], client, headers=extra)

    start = client.sent[0]
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-accel-buffering"] == b"no"
    assert headers[b"x-request-id"] == b"abc"
    assert [m["type"] for m in client.sent[1:]] == ["http.response.body"] * (len(client.sent) - 1)


def test_extra_headers_do_not_change_the_shared_defaults() -> None:
    before = list(SSE_HEADERS)
    SSEResponse[str](_never, Script(), headers=[(b"x-one", b"1")])
    assert before == SSE_HEADERS


async def _never() -> str:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


@pytest.mark.anyio
async def test_opening_then_each_event_in_order_then_one_end() -> None:
    client = Client()
    await stream([(0, "a"), (0, "b"), (0, "c"), (0, END)], client, opening=OPENING, interval=5)

    bodies = client.bodies
    assert [m["body"] for m in bodies] == [
        OPENING,
        text_frame("a"),
        text_frame("b"),
        text_frame("c"),
        DONE,
    ]
    assert [m["more_body"] for m in bodies] == [True, True, True, True, False]
    assert len(ends(client)) == 1


@pytest.mark.anyio
async def test_without_opening_the_first_body_is_the_first_event() -> None:
    client = Client()
    await stream([(0, "a"), (0, END)], client, interval=5)
    assert [m["body"] for m in client.bodies] == [text_frame("a"), DONE]


@pytest.mark.anyio
async def test_events_rendered_empty_send_nothing() -> None:
    client = Client()
    await stream([(0, "a"), (0, ""), (0, "b"), (0, END)], client, encoder=SkipBlank, interval=5)
    assert [m["body"] for m in client.bodies] == [text_frame("a"), text_frame("b"), DONE]


# --- heartbeats ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_heartbeats_fill_silences_longer_than_the_interval() -> None:
    client = Client()
    await stream([(0, "a"), (6 * INTERVAL, "b"), (0, END)], client, opening=OPENING)

    body = client.body
    assert body.startswith(OPENING + text_frame("a"))
    assert body.endswith(text_frame("b") + DONE)
    middle = body[len(OPENING + text_frame("a")) : -len(text_frame("b") + DONE)]
    beats = middle.count(HEARTBEAT)
    assert middle == HEARTBEAT * beats
    assert 2 <= beats <= 6


@pytest.mark.anyio
async def test_heartbeats_before_the_first_event() -> None:
    client = Client()
    await stream([(6 * INTERVAL, "a"), (0, END)], client, opening=OPENING)
    body = client.body
    assert body.startswith(OPENING + HEARTBEAT + HEARTBEAT)
    assert body.endswith(text_frame("a") + DONE)


@pytest.mark.anyio
async def test_no_heartbeat_while_events_flow_faster_than_the_interval() -> None:
    client = Client()
    script = [(0.004, str(i)) for i in range(15)] + [(0.004, END)]
    await stream(script, client, interval=0.1)

    assert HEARTBEAT not in client.body
    assert client.body == b"".join(text_frame(str(i)) for i in range(15)) + DONE


# --- ending ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_on_close_runs_once_on_a_normal_end() -> None:
    closes = Closes()
    client = Client()
    await stream([(0, "a"), (0, END)], client, on_close=closes)
    assert closes.count == 1
    assert len(ends(client)) == 1


@pytest.mark.anyio
async def test_client_leaving_stops_the_writer_promptly() -> None:
    closes = Closes()
    client = Client()
    send, recv = anyio.create_memory_object_stream[str](16)
    # A long interval: the writer must be cancelled, not wait for its next heartbeat.
    response = SSEResponse[str](
        recv.receive, Script(OPENING), heartbeat_interval=30, on_close=closes
    )

    async def leave_after_a_while() -> None:
        await send.send("a")
        await anyio.sleep(0.05)
        client.leave()

    with anyio.fail_after(WATCHDOG), send, recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(leave_after_a_while)
            await response(SCOPE, client.receive, client.send)
        returned_at = time.monotonic()

    assert client.left_at is not None
    assert returned_at - client.left_at < 0.5
    assert closes.count == 1
    assert [m["body"] for m in client.bodies] == [OPENING, text_frame("a")]
    assert ends(client) == []


@pytest.mark.anyio
async def test_client_leaving_between_heartbeats_ends_them() -> None:
    closes = Closes()
    client = Client()
    send, recv = anyio.create_memory_object_stream[str](16)
    response = SSEResponse[str](
        recv.receive, Script(), heartbeat_interval=INTERVAL, on_close=closes
    )

    async def leave_after_a_while() -> None:
        await anyio.sleep(5 * INTERVAL)
        client.leave()

    with anyio.fail_after(WATCHDOG), send, recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(leave_after_a_while)
            await response(SCOPE, client.receive, client.send)
        sent = len(client.sent)
        await anyio.sleep(3 * INTERVAL)

    assert len(client.sent) == sent  # nothing written after the call returned
    assert client.body.count(HEARTBEAT) >= 2
    assert client.body == HEARTBEAT * client.body.count(HEARTBEAT)
    assert closes.count == 1


@pytest.mark.anyio
async def test_render_failing_after_start_ends_with_an_error_frame() -> None:
    closes = Closes()
    client = Client()
    await stream(
        [(0, "a"), (0, "boom"), (0, "b"), (0, END)],
        client,
        opening=OPENING,
        encoder=Fragile,
        on_close=closes,
        interval=5,
    )

    bodies = client.bodies
    assert [m["body"] for m in bodies[:2]] == [OPENING, text_frame("a")]
    assert len(bodies) == 3
    assert bodies[-1]["more_body"] is False
    error = parse_data(bodies[-1]["body"])
    assert set(error) == {"error"}
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["type"] == "server_error"
    assert isinstance(error["error"]["message"], str)
    assert error["error"]["message"]
    assert "broken renderer" not in error["error"]["message"]  # internals stay in the log
    assert closes.count == 1


@pytest.mark.anyio
async def test_source_ending_without_a_final_event_ends_with_an_error_frame() -> None:
    closes = Closes()
    client = Client()
    await stream([(0, "a"), (0, "b")], client, on_close=closes, interval=5)

    bodies = client.bodies
    assert [m["body"] for m in bodies[:2]] == [text_frame("a"), text_frame("b")]
    assert len(ends(client)) == 1
    assert bodies[-1] is ends(client)[0]
    error = parse_data(bodies[-1]["body"])["error"]
    assert error["type"] == "server_error"
    assert error["message"]
    assert error["param"] is None
    assert error["code"] is None
    assert DONE not in client.body
    assert closes.count == 1


@pytest.mark.anyio
async def test_source_closed_under_the_writer_ends_with_an_error_frame() -> None:
    async def closed() -> str:
        raise anyio.ClosedResourceError

    client = Client()
    response = SSEResponse[str](closed, Script(), heartbeat_interval=5)
    with anyio.fail_after(WATCHDOG):
        await response(SCOPE, client.receive, client.send)
    assert len(client.bodies) == 1
    assert client.bodies[0]["more_body"] is False
    assert parse_data(client.bodies[0]["body"])["error"]["type"] == "server_error"


# --- run_until_disconnect ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_run_until_disconnect_returns_the_work_result() -> None:
    client = Client()

    async def work() -> int:
        await anyio.sleep(0.01)
        return 42

    with anyio.fail_after(WATCHDOG):
        assert await run_until_disconnect(client.receive, work) == 42
    assert client.receives == 1  # the listener was started, then cancelled


@pytest.mark.anyio
async def test_run_until_disconnect_ignores_other_messages() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.request", "body": b"", "more_body": False},
    ]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def work() -> str:
        await anyio.sleep(0.02)
        return "done"

    with anyio.fail_after(WATCHDOG):
        assert await run_until_disconnect(receive, work) == "done"
    assert messages == []


@pytest.mark.anyio
async def test_run_until_disconnect_cancels_the_work_when_the_client_leaves() -> None:
    client = Client()
    cancelled = anyio.Event()
    finished = False

    async def work() -> int:
        nonlocal finished
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        finished = True
        return 1

    async def leave() -> None:
        await anyio.sleep(0.02)
        client.leave()

    with anyio.fail_after(WATCHDOG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leave)
            result = await run_until_disconnect(client.receive, work)

    assert result is None
    assert cancelled.is_set()
    assert not finished


@pytest.mark.anyio
async def test_run_until_disconnect_keeps_a_falsy_result() -> None:
    client = Client()

    async def work() -> int:
        return 0

    with anyio.fail_after(WATCHDOG):
        assert await run_until_disconnect(client.receive, work) == 0


# --- documents with names and ids, several per event --------------------------------------------


def test_a_document_with_an_event_name_and_an_id_frames_both() -> None:
    document = Document(b'{"delta":"hi"}', event="response.output_text.delta", id="s1:7")
    assert frame(document) == (
        b'event: response.output_text.delta\nid: s1:7\ndata: {"delta":"hi"}\n\n'
    )
    assert frame(Document(b"{}", id="9")) == b"id: 9\ndata: {}\n\n"


def test_an_end_without_a_terminator_sends_nothing() -> None:
    assert frame(Document(b"", "end")) == b""
    assert frames([Document(b'{"a":1}'), Document(b"", "end")]) == (b'data: {"a":1}\n\n', True)
    assert frames([Document(b'{"a":1}')]) == (b'data: {"a":1}\n\n', False)


class Pairs(Script):
    """Two documents per event, as a usage chunk follows a final one."""

    def encode(self, event: str) -> Sequence[Document]:
        if event == END:
            return [json_document({"usage": 1}), Document(b"[DONE]", "end")]
        return [json_document({"text": event}), json_document({"more": event})]


@pytest.mark.anyio
async def test_the_documents_of_one_event_go_out_in_one_body() -> None:
    client = Client()
    await stream([(0, "a"), (0, END)], client, encoder=Pairs, interval=5)
    assert [m["body"] for m in client.bodies] == [
        text_frame("a") + data_frame({"more": "a"}),
        data_frame({"usage": 1}) + DONE,
    ]
    assert [m["more_body"] for m in client.bodies] == [True, False]


class Failing(Script):
    def encode(self, event: str) -> Sequence[Document]:
        if event == "bad":
            return [json_document({"error": {"message": "no"}}, "error")]
        return super().encode(event)


@pytest.mark.anyio
async def test_an_error_document_ends_the_stream_without_done() -> None:
    closes = Closes()
    client = Client()
    await stream([(0, "a"), (0, "bad"), (0, "b")], client, encoder=Failing, on_close=closes)
    assert [m["body"] for m in client.bodies] == [
        text_frame("a"),
        data_frame({"error": {"message": "no"}}),
    ]
    assert client.bodies[-1]["more_body"] is False
    assert closes.count == 1
