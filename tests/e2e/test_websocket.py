"""WebSocket streaming against the real server with the ``websockets`` client: several
requests on one socket, cancel, pings, and bad messages; a client that stops reading (wsproto
on a plain socket); and one over HTTP/2 (RFC 8441) from the h2 library."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import wsproto
import wsproto.connection
import wsproto.events
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from .server import RunningServer, running_server

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


def _body(content: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "sluice",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        **extra,
    }


def _url(server: RunningServer, path: str = CHAT) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def _request(ws: ClientConnection, request_id: str, body: dict[str, Any]) -> None:
    await ws.send(json.dumps({"type": "request", "id": request_id, "body": body}))


async def _until_done(ws: ClientConnection, ids: set[str]) -> list[dict[str, Any]]:
    """Every message until each of ``ids`` is done or failed."""
    received: list[dict[str, Any]] = []
    open_ids = set(ids)
    with anyio.fail_after(120):
        while open_ids:
            message = json.loads(await ws.recv())
            received.append(message)
            if message.get("done") or "error" in message:
                open_ids.discard(message["id"])
    return received


def _text(messages: list[dict[str, Any]], request_id: str) -> str:
    return "".join(
        m["event"]["choices"][0]["delta"].get("content") or ""
        for m in messages
        if m["id"] == request_id and "event" in m and m["event"]["choices"]
    )


async def test_two_requests_on_one_socket_interleave_and_match_http(
    server: RunningServer,
) -> None:
    bodies = {"a": _body("Name three colours.", 6), "b": _body("Count to five.", 8)}
    async with connect(_url(server)) as ws:
        for request_id, body in bodies.items():
            await _request(ws, request_id, body)
        messages = await _until_done(ws, set(bodies))
    order = [m["id"] for m in messages]
    first_done = next(i for i, m in enumerate(messages) if m.get("done"))
    # Both were generating before either finished: one batch, one socket.
    assert {"a", "b"} <= set(order[:first_done])
    done = [m for m in messages if m.get("done")]
    assert sorted(done, key=lambda m: m["id"]) == [{"id": i, "done": True} for i in "ab"]
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        for request_id, body in bodies.items():
            whole = await client.post(CHAT, json={**body, "stream": False})
            assert _text(messages, request_id) == whole.json()["choices"][0]["message"]["content"]


async def test_cancel_ends_only_that_request_within_a_few_steps(server: RunningServer) -> None:
    server.wait_idle()
    async with connect(_url(server)) as ws:
        await _request(ws, "long", _body("Tell me a story.", 2000))
        await _request(ws, "short", _body("Say hi.", 4))
        seen = 0
        with anyio.fail_after(120):
            while seen < 3:
                message = json.loads(await ws.recv())
                seen += message["id"] == "long" and "event" in message
        await ws.send(json.dumps({"type": "cancel", "id": "long"}))
        steps_at_cancel = server.engine_stats()["steps"]
        rest = await _until_done(ws, {"long", "short"})
    assert {"id": "long", "done": True, "cancelled": True} in rest
    assert {"id": "short", "done": True} in rest
    stats = server.wait_idle(timeout=30)
    assert stats["steps"] - steps_at_cancel < 50, stats


async def test_pings_are_answered_and_whole_answers_come_as_one_event(
    server: RunningServer,
) -> None:
    async with connect(_url(server, "/v1/completions")) as ws:
        with anyio.fail_after(30):
            await (await ws.ping())
        body = {"model": "sluice", "prompt": "Once upon", "max_tokens": 3, "temperature": 0}
        await _request(ws, "1", body)
        messages = await _until_done(ws, {"1"})
    assert len(messages) == 2
    assert messages[0]["event"]["object"] == "text_completion"
    assert messages[0]["event"]["usage"]["completion_tokens"] == 3
    assert messages[1] == {"id": "1", "done": True}


async def test_request_errors_are_messages_and_the_socket_goes_on(server: RunningServer) -> None:
    async with connect(_url(server)) as ws:
        await _request(ws, "bad", _body("Hi", 4, temperature=7))
        await _request(ws, "same", _body("Hi", 200))
        await _request(ws, "same", _body("Hi", 2))
        errors: dict[str, dict[str, Any]] = {}
        with anyio.fail_after(120):
            while len(errors) < 2:  # in either order, among the events of the first "same"
                message = json.loads(await ws.recv())
                if "error" in message:
                    errors[message["id"]] = message["error"]
        assert errors["bad"]["param"] == "temperature"
        assert errors["same"]["code"] == "duplicate_id"
        await ws.send(json.dumps({"type": "cancel", "id": "same"}))
        rest = await _until_done(ws, {"same"})
    assert rest[-1] == {"id": "same", "done": True, "cancelled": True}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"\x00binary", 1003),
        ("not json", 1008),
        ('{"type": "request", "id": "x"}', 1008),
        ('{"type": "subscribe", "id": "x"}', 1008),
        ("[1, 2]", 1008),
    ],
)
async def test_protocol_errors_close_with_a_code(
    server: RunningServer, message: str | bytes, code: int
) -> None:
    async with connect(_url(server)) as ws:
        await ws.send(message)
        with anyio.fail_after(30), pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


@pytest.fixture(scope="module")
def small() -> Iterator[RunningServer]:
    """Small bounds: 4 KiB messages, 4 KiB socket send buffers, 4 events per channel."""
    with running_server(max_body_size=4096, send_buffer=4096, stream_buffer=4) as running:
        yield running


async def test_a_message_over_the_size_limit_closes_with_1009(small: RunningServer) -> None:
    async with connect(_url(small), max_size=None) as ws:
        await ws.send(json.dumps({"type": "request", "id": "x", "body": {"p": "x" * 8192}}))
        with anyio.fail_after(30), pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_a_socket_that_stops_reading_pauses_its_own_sequence(small: RunningServer) -> None:
    small.wait_idle()
    before = small.engine_stats()
    tokens = 200
    # Log-probabilities make each message about 1 KB, so the ~80 KB between the server's
    # writer and this client (asyncio's 64 KiB write buffer, two socket buffers) fill early.
    body = _body(
        "Tell me a story.",
        tokens,
        stream_options={"include_usage": True},
        logprobs=True,
        top_logprobs=5,
    )
    # A client that really stops reading: wsproto over a plain socket with a small receive
    # buffer (set before connecting, so Linux never grows it). The websockets library keeps
    # reading into its own memory, whatever its max_queue.
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", small.port))
    with sock:
        sock.sendall(client.send(wsproto.events.Request(host="127.0.0.1", target=CHAT)))
        accepted: list[wsproto.events.Event] = []
        while not accepted:
            client.receive_data(sock.recv(4096))
            accepted = [
                e for e in client.events() if isinstance(e, wsproto.events.AcceptConnection)
            ]
        request = {"type": "request", "id": "slow", "body": body}
        sock.sendall(client.send(wsproto.events.TextMessage(json.dumps(request))))
        with anyio.fail_after(120):
            while small.engine_stats()["pauses"] == before["pauses"]:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        paused = small.engine_stats()
        # Paused, the sequence keeps its slot while another socket's request runs to its end.
        async with connect(_url(small)) as quick:
            await _request(quick, "quick", _body("Say hi.", 4))
            assert (await _until_done(quick, {"quick"}))[-1] == {"id": "quick", "done": True}
        assert small.engine_stats()["active"] == 1
        messages: list[dict[str, Any]] = []
        partial = ""
        while not messages or not messages[-1].get("done"):
            client.receive_data(sock.recv(65536))
            for event in client.events():
                if isinstance(event, wsproto.events.TextMessage):
                    partial += event.data  # wsproto hands over frames as they arrive
                    if event.message_finished:
                        messages.append(json.loads(partial))
                        partial = ""
    assert paused["active"] == 1
    assert messages[-1] == {"id": "slow", "done": True}
    usage = next(m["event"]["usage"] for m in messages if m.get("event", {}).get("usage"))
    assert usage["completion_tokens"] == tokens


async def test_a_websocket_over_http2_extended_connect(server: RunningServer) -> None:
    # RFC 8441: an h2 peer (the h2 library on a socket) opens the WebSocket as a stream of
    # its HTTP/2 connection; wsproto frames the messages inside it.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    frames = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
    texts: list[dict[str, Any]] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while not conn.remote_settings.enable_connect_protocol:
            conn.receive_data(sock.recv(65536))
            sock.sendall(conn.data_to_send())
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            stream_id,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "http"),
                (":path", CHAT),
                (":authority", f"127.0.0.1:{server.port}"),
                ("sec-websocket-version", "13"),
            ],
        )
        sock.sendall(conn.data_to_send())
        request = {"type": "request", "id": "h2", "body": _body("Say hi.", 4)}
        status = None
        while not texts or not texts[-1].get("done"):
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    # Accepted: only now may the socket carry messages.
                    status = dict(event.headers)[b":status"]
                    opening = wsproto.events.TextMessage(json.dumps(request))
                    conn.send_data(stream_id, frames.send(opening))
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    frames.receive_data(event.data)
                    for message in frames.events():
                        if isinstance(message, wsproto.events.TextMessage):
                            texts.append(json.loads(message.data))
            sock.sendall(conn.data_to_send())
    assert status == b"200"
    assert texts[-1] == {"id": "h2", "done": True}
    assert all(t["id"] == "h2" for t in texts)
    assert _text(texts, "h2")
