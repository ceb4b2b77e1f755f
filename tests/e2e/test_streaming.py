"""Streams over real sockets: HTTP/1.1, h2c, curl; incremental delivery, heartbeats,
disconnects, UTF-8 and stop strings."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from typing import Any

import h2.connection
import h2.events
import httpx
import pytest

from .server import RunningServer, running_server
from .sse_client import Frame, content_of, frames

CHAT = "/v1/chat/completions"


def chat_body(content: str = "Tell me a story about a cat.", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "stream": True, **extra}


def stream_frames(client: httpx.Client, path: str, body: dict[str, Any]) -> list[Frame]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        return list(frames(response))


def assert_well_formed(received: list[Frame]) -> list[dict[str, Any]]:
    data = [f for f in received if f.kind == "data"]
    assert data[-1].text == "[DONE]"
    chunks = [f.json() for f in data[:-1]]
    reasons = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert reasons[:-1] == [None] * (len(reasons) - 1)
    assert reasons[-1] in ("stop", "length")
    return chunks


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2c"])
def test_httpx_streams_over_http1_and_h2c(server: RunningServer, http2: bool) -> None:
    # http1=False with http2=True speaks HTTP/2 with prior knowledge over cleartext.
    body = chat_body(max_tokens=20, temperature=0)
    with (
        httpx.Client(base_url=server.url, http1=not http2, http2=http2, timeout=60) as client,
        client.stream("POST", CHAT, json=body) as resp,
    ):
        assert resp.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        received = list(frames(resp))
    chunks = assert_well_formed(received)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(content_of(c) for c in chunks)


def test_chunks_arrive_incrementally(server: RunningServer) -> None:
    body = chat_body(max_tokens=64, temperature=0, ignore_eos=True)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        start = time.monotonic()
        received = stream_frames(client, CHAT, body)
    content = [f for f in received if f.kind == "data" and f.text != "[DONE]"]
    content = [f for f in content if content_of(f.json())]
    assert len(content) >= 32
    first, last = content[0].at - start, content[-1].at - start
    # Streamed, not buffered: the first token lands long before the last, and arrival
    # times keep growing across the whole stream.
    assert first < last / 4
    middle = content[len(content) // 2].at - start
    assert first < middle < last


def test_curl_streams(server: RunningServer) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed (scripts/test expects it on the machine)")
    body = json.dumps(chat_body(max_tokens=12, temperature=0))
    out = subprocess.run(
        [
            curl,
            "-sSN",
            "--fail-with-body",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            server.url + CHAT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = [line for line in out.split("\n") if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_heartbeats_while_queued_and_between_tokens() -> None:
    # One slot: the second stream waits in the queue behind the first, and must hear
    # heartbeats meanwhile; with a heartbeat far shorter than a generation, they come.
    with running_server(slots=1, heartbeat_interval=0.05) as srv:
        long_body = chat_body(max_tokens=300, temperature=0, ignore_eos=True)
        results: list[list[Frame]] = []

        def first() -> None:
            with httpx.Client(base_url=srv.url, timeout=120) as client:
                results.append(stream_frames(client, CHAT, long_body))

        thread = threading.Thread(target=first)
        thread.start()
        while srv.engine_stats()["active"] == 0:
            time.sleep(0.01)
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            queued = stream_frames(client, CHAT, chat_body(max_tokens=4, temperature=0))
        thread.join()
    kinds = [f.kind for f in queued]
    first_content = next(
        i
        for i, f in enumerate(queued)
        if f.kind == "data" and f.text != "[DONE]" and content_of(f.json())
    )
    assert "comment" in kinds[:first_content], kinds
    assert all(f.text == "keep-alive" for f in queued if f.kind == "comment")
    assert_well_formed(queued)
    assert_well_formed(results[0])


def test_disconnect_frees_the_engine(server: RunningServer) -> None:
    server.wait_idle()
    body = chat_body(max_tokens=2000, temperature=0, ignore_eos=True)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        with client.stream("POST", CHAT, json=body) as response:
            seen = 0
            for frame in frames(response):
                seen += frame.kind == "data"
                if seen == 5:
                    break
        steps_at_close = server.engine_stats()["steps"]
    stats = server.wait_idle(timeout=10)
    # Cancelled within a decode step or two of the client leaving, not after 2000 tokens.
    assert stats["steps"] - steps_at_close < 50, stats
    with httpx.Client(base_url=server.url, timeout=60) as client:
        reply = client.post(CHAT, json={**body, "stream": False, "max_tokens": 3})
    assert reply.status_code == 200
    assert reply.json()["usage"]["completion_tokens"] == 3


def test_http2_connection_close_frees_the_engine(server: RunningServer) -> None:
    server.wait_idle()
    body = chat_body(max_tokens=2000, temperature=0, ignore_eos=True)
    with (
        httpx.Client(base_url=server.url, http1=False, http2=True, timeout=60) as client,
        client.stream("POST", CHAT, json=body) as response,
    ):
        for n, _ in enumerate(frames(response)):
            if n == 3:
                break
    # httpx does not reset a stream it stops reading; closing the client closes the
    # connection, which ends every stream on it.
    server.wait_idle(timeout=10)


def test_http2_rst_stream_frees_the_engine(server: RunningServer) -> None:
    # A real HTTP/2 peer (the h2 library on a socket) resets one stream and keeps the
    # connection: the generation stops, and the same connection serves the next request.
    server.wait_idle()
    conn = h2.connection.H2Connection()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    with sock:
        conn.initiate_connection()

        def request(body: dict[str, Any]) -> int:
            stream_id: int = conn.get_next_available_stream_id()
            payload = json.dumps(body).encode()
            conn.send_headers(
                stream_id,
                [
                    (":method", "POST"),
                    (":path", CHAT),
                    (":scheme", "http"),
                    (":authority", f"127.0.0.1:{server.port}"),
                    ("content-type", "application/json"),
                    ("content-length", str(len(payload))),
                ],
            )
            conn.send_data(stream_id, payload, end_stream=True)
            sock.sendall(conn.data_to_send())
            return stream_id

        def read_until(stream_id: int, want: type[h2.events.Event]) -> bytes:
            data = b""
            while True:
                for event in conn.receive_data(sock.recv(65536)):
                    if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                        data += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                        if want is h2.events.DataReceived and data.count(b"\n\n") >= 4:
                            return data
                    if isinstance(event, want) and getattr(event, "stream_id", None) == stream_id:
                        return data
                sock.sendall(conn.data_to_send())

        first = request(chat_body(max_tokens=2000, temperature=0, ignore_eos=True))
        read_until(first, h2.events.DataReceived)
        conn.reset_stream(first)
        sock.sendall(conn.data_to_send())
        server.wait_idle(timeout=10)
        second = request({**chat_body(), "stream": False, "max_tokens": 2})
        reply = read_until(second, h2.events.StreamEnded)
    assert json.loads(reply)["usage"]["completion_tokens"] == 2


def test_utf8_is_never_split(server: RunningServer) -> None:
    # Byte-level BPE splits CJK and emoji across tokens; every chunk must still be whole text.
    body = {
        "prompt": "日本の首都は東京です。中国の首都は北京です。韓国の首都は",
        "max_tokens": 48,
        "temperature": 0,
        "ignore_eos": True,
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        whole = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
        received = stream_frames(client, "/v1/completions", {**body, "stream": True})
    pieces = [content_of(f.json()) for f in received if f.kind == "data" and f.text != "[DONE]"]
    assert "".join(pieces) == whole
    assert any(ord(ch) > 0x2E80 for ch in whole), whole
    assert "\ufffd" not in whole


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_stop_string_never_leaks(server: RunningServer, stream: bool) -> None:
    base = {"prompt": "Once upon a time, there was a", "max_tokens": 40, "temperature": 0}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        free = client.post("/v1/completions", json=base).json()["choices"][0]["text"]
        # A stop string from the middle of the greedy text, several tokens long.
        words = free.split(" ")
        assert len(words) > 8, free
        stop = " ".join(words[4:6])
        assert len(stop) > 3
        body = {**base, "stop": ["@@never@@", stop], "stream": stream}
        if stream:
            received = stream_frames(client, "/v1/completions", body)
            chunks = [f.json() for f in received if f.kind == "data" and f.text != "[DONE]"]
            text = "".join(content_of(c) for c in chunks)
            reason = chunks[-1]["choices"][0]["finish_reason"]
        else:
            choice = client.post("/v1/completions", json=body).json()["choices"][0]
            text, reason = choice["text"], choice["finish_reason"]
    assert text == free[: free.index(stop)]
    assert stop not in text
    assert reason == "stop"
