"""Resumable SSE against the real server: the openai SDK's stream cut by a proxy we control,
then resumed by ``Last-Event-ID`` (POST again, or GET on the stream's URL); expiry, keys,
and a full buffer pausing only its own sequence."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .server import RunningServer, running_server

CHAT = "/v1/chat/completions"
TOKENS = 8
#: The SDK's type knows only OpenAI's stream options; it passes any through.
RESUMABLE: Any = {"include_usage": True, "resumable": True}


def _body(max_tokens: int = TOKENS, **extra: Any) -> dict[str, Any]:
    return {
        "model": "sluice",
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "logprobs": True,
        "top_logprobs": 2,
        "stream": True,
        "stream_options": {"include_usage": True, "resumable": True},
        **extra,
    }


@dataclass
class Event:
    id: str
    data: str


def parse_events(text: str) -> tuple[list[Event], list[str]]:
    """Every event of a resumable stream body (strictly: each has one id and one data line,
    heartbeats are comment lines), and the ``retry`` values seen."""
    events: list[Event] = []
    retries: list[str] = []
    fields: dict[str, str] = {}
    assert text.endswith("\n\n") or not text.strip(), f"truncated stream: {text[-80:]!r}"
    for line in text.split("\n"):
        if line.startswith(":"):
            assert line == ": keep-alive", line
        elif line:
            name, _, value = line.partition(": ")
            assert name in ("id", "data", "retry"), line
            assert name not in fields, line
            fields[name] = value
        elif fields:
            if "retry" in fields:
                retries.append(fields.pop("retry"))
            assert set(fields) == {"id", "data"}, fields
            events.append(Event(fields["id"], fields["data"]))
            fields = {}
    return events, retries


def summary(chunks: list[dict[str, Any]]) -> tuple[str, list[tuple[str, float]], dict[str, int]]:
    """The text, the (token, logprob) pairs and the token counts of a stream's chunks."""
    text = ""
    logprobs: list[tuple[str, float]] = []
    usage: dict[str, int] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            for entry in (choice.get("logprobs") or {}).get("content") or []:
                logprobs.append((entry["token"], entry["logprob"]))
        if chunk.get("usage"):
            usage = {k: chunk["usage"][k] for k in ("prompt_tokens", "completion_tokens")}
    return text, logprobs, usage


@contextmanager
def cutting_proxy(port: int, cut: int) -> Iterator[tuple[int, list[int]]]:
    """A TCP proxy to ``port`` for one connection that forwards ``cut`` bytes of the server's
    answer, then closes both sides; yields its port and [bytes forwarded]."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)  # a client that never came does not hang the test
    forwarded = [0]

    def pipe_up(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass

    def serve() -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pipe_up, args=(client, upstream), daemon=True).start()
        try:
            while forwarded[0] < cut:
                data = upstream.recv(min(65536, cut - forwarded[0]))
                if not data:
                    break
                client.sendall(data)
                forwarded[0] += len(data)
        except OSError:
            pass
        finally:
            for end in (client, upstream):
                # shutdown, not just close: the other thread's recv holds the socket open.
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], forwarded
    finally:
        listener.close()
        thread.join(timeout=30)


def sdk_until_cut(server: RunningServer, cut: int) -> tuple[list[dict[str, Any]], str, bool]:
    """The chunks the openai SDK yields through a proxy cutting at byte ``cut``, the stream's
    URL, and whether the stream was cut before its end."""
    with cutting_proxy(server.port, cut) as (port, _):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        chunks: list[dict[str, Any]] = []
        stream = client.chat.completions.create(
            model="sluice",
            messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=TOKENS,
            temperature=0,
            logprobs=True,
            top_logprobs=2,
            stream=True,
            stream_options=RESUMABLE,
            extra_body={"ignore_eos": True},
            timeout=60,
        )
        url = stream.response.headers["x-stream-url"]
        try:
            for chunk in stream:
                chunks.append(chunk.model_dump(exclude_unset=True))
        except (httpx.HTTPError, openai.APIError):
            return chunks, url, True
        return chunks, url, False


@pytest.fixture(scope="module")
def uncut(server: RunningServer) -> tuple[list[dict[str, Any]], int]:
    """An uncut resumable stream's chunks, and its whole size on the wire."""
    with (
        cutting_proxy(server.port, 1 << 30) as (port, forwarded),
        httpx.Client(timeout=60) as client,
    ):
        reply = client.post(f"http://127.0.0.1:{port}{CHAT}", json=_body())
    events, retries = parse_events(reply.text)
    assert retries == ["2000"]
    assert events[-1].data == "[DONE]"
    stream = reply.headers["x-stream-url"].rsplit("/", 1)[1]
    assert [e.id for e in events] == [f"{stream}:{n}" for n in range(1, len(events) + 1)]
    return [json.loads(e.data) for e in events[:-1]], forwarded[0]


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(cut_fraction=st.floats(0.0, 1.0), by_get=st.booleans())
@example(cut_fraction=0.5, by_get=True)
@example(cut_fraction=0.5, by_get=False)
def test_cut_anywhere_then_resume_loses_and_repeats_nothing(
    server: RunningServer,
    uncut: tuple[list[dict[str, Any]], int],
    cut_fraction: float,
    by_get: bool,
) -> None:
    chunks, size = uncut
    # Past the headers (about 250 bytes), short of the end.
    cut = 400 + int(cut_fraction * (size - 450))
    before, url, was_cut = sdk_until_cut(server, cut)
    assert was_cut
    stream = url.rsplit("/", 1)[1]
    # With no opening documents, the k-th chunk the SDK yielded is event k.
    last_event_id = f"{stream}:{len(before)}"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        if by_get:
            reply = client.get(url, headers={"last-event-id": last_event_id})
        else:
            headers = {"last-event-id": last_event_id}
            reply = client.post(CHAT, json=_body(), headers=headers)
        assert reply.status_code == 200, reply.text
        # The whole stream again, from its first event: the same generation's every event.
        replay, _ = parse_events(client.get(url).text)
    after, retries = parse_events(reply.text)
    assert retries == ["2000"] or not after
    assert [e.id for e in after] == [
        f"{stream}:{n}" for n in range(len(before) + 1, len(before) + 1 + len(after))
    ]
    assert after[-1].data == "[DONE]"
    resumed = before + [json.loads(e.data) for e in after[:-1]]
    whole = [json.loads(e.data) for e in replay[:-1]]
    assert summary(resumed) == summary(whole)
    # And it is what an independent, uncut run of the same request generates.
    text, logprobs, usage = summary(resumed)
    uncut_text, uncut_logprobs, uncut_usage = summary(chunks)
    assert (text, usage) == (uncut_text, uncut_usage)
    assert usage["completion_tokens"] == TOKENS
    assert [t for t, _ in logprobs] == [t for t, _ in uncut_logprobs]
    assert [p for _, p in logprobs] == pytest.approx([p for _, p in uncut_logprobs], abs=1e-3)


def test_plain_streams_stay_plain_and_unknown_ids_are_404(server: RunningServer) -> None:
    body = _body(stream_options={"include_usage": True})
    with httpx.Client(base_url=server.url, timeout=60) as client:
        reply = client.post(CHAT, json=body)
        assert "x-stream-url" not in reply.headers
        assert "id:" not in reply.text
        assert "retry:" not in reply.text
        missing = client.get("/v1/streams/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "stream_not_found"
        bad = client.post(CHAT, json=body, headers={"last-event-id": "garbage"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_last_event_id"
        wrong = client.post(CHAT, json={**body, "stream_options": {"resumable": "yes"}})
        assert wrong.status_code == 400
        assert wrong.json()["error"]["param"] == "stream_options.resumable"


KEYS = "key-a,key-b"


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    """Keys on, every stream resumable by default, frequent heartbeats, a short window and
    small buffers."""
    with running_server(
        api_keys=KEYS,
        resumable_default=True,
        heartbeat_interval=0.02,
        resume_window=6.0,
        resume_buffer=2048,
        # A short channel: a sequence pauses a few tokens after its buffer fills.
        stream_buffer=4,
    ) as running:
        yield running


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_the_sdk_reads_a_default_resumable_stream_with_heartbeats(keyed: RunningServer) -> None:
    client = openai.OpenAI(base_url=keyed.api, api_key="key-a", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="sluice",
        messages=[{"role": "user", "content": "Name three colours."}],
        # Short: the whole stream fits this server's 2 KiB buffer, to be read again below.
        max_tokens=6,
        temperature=0,
        stream=True,
        timeout=60,
    )
    assert raw.headers["x-stream-url"].startswith("/v1/streams/")
    chunks = list(raw.parse())
    assert chunks
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # The same stream read raw: ids on every event, and (20 ms beats) heartbeat lines.
    with httpx.Client(base_url=keyed.url, timeout=60, headers=_auth("key-a")) as http:
        text = http.get(raw.headers["x-stream-url"]).text
    events, _ = parse_events(text)
    assert len(events) == len(chunks) + 1


def test_only_the_starting_key_resumes(keyed: RunningServer) -> None:
    with httpx.Client(base_url=keyed.url, timeout=60) as client:
        small = {k: v for k, v in _body(max_tokens=4).items() if "logprobs" not in k}
        reply = client.post(CHAT, json=small, headers=_auth("key-a"))
        url = reply.headers["x-stream-url"]
        other = client.get(url, headers=_auth("key-b"))
        assert other.status_code == 404, other.text
        assert client.get(url).status_code == 401
        events, _ = parse_events(client.get(url, headers=_auth("key-a")).text)
        assert events[-1].data == "[DONE]"


def test_a_detached_stream_expires_with_410_and_frees_its_slot(keyed: RunningServer) -> None:
    before = keyed.wait_idle()
    body = _body(max_tokens=2000)
    with (
        httpx.Client(base_url=keyed.url, timeout=60, headers=_auth("key-a")) as client,
        client.stream("POST", CHAT, json=body) as response,
    ):
        url = response.headers["x-stream-url"]
        next(response.iter_lines())
    # No reader: after the 6 s window the generation is cancelled, long before 2000 tokens.
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=keyed.url, timeout=60, headers=_auth("key-a")) as client:
        while "sluice_streams_expired_total 1.0" not in client.get("/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        gone = client.get(url)
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"]["code"] == "stream_expired"
        stats = keyed.wait_idle(timeout=30)
    assert stats["admitted"] - before["admitted"] == 1
    assert stats["evicted"] == before["evicted"]
    assert stats["stalled"] == before["stalled"]


def test_a_full_buffer_pauses_that_sequence_then_resumes_intact(keyed: RunningServer) -> None:
    keyed.wait_idle()
    tokens = 300
    before = keyed.engine_stats()
    with (
        httpx.Client(base_url=keyed.url, timeout=60, headers=_auth("key-a")) as client,
        client.stream("POST", CHAT, json=_body(max_tokens=tokens)) as response,
    ):
        url = response.headers["x-stream-url"]
        lines = response.iter_lines()
        while not (line := next(lines)).startswith("id: "):
            pass
        last_event_id = line[4:]
    # Nobody reads: the 2 KiB buffer fills, then the channel, then the engine pauses the
    # sequence: its decode steps stop while it keeps its slot.
    deadline = time.monotonic() + 60
    while keyed.engine_stats()["pauses"] == before["pauses"]:
        assert time.monotonic() < deadline, keyed.engine_stats()
        time.sleep(0.05)
    paused = keyed.engine_stats()
    time.sleep(0.5)
    still = keyed.engine_stats()
    assert still["active"] == 1
    assert still["steps"] - paused["steps"] <= 2, (paused, still)
    with httpx.Client(base_url=keyed.url, timeout=60, headers=_auth("key-a")) as client:
        buffered = [
            float(line.split()[1])
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("sluice_stream_buffer_bytes")
        ]
        assert buffered
        assert buffered[0] < 2048 + 1024
        reply = client.get(url, headers={"last-event-id": last_event_id})
    events, _ = parse_events(reply.text)
    assert events[-1].data == "[DONE]"
    usage = json.loads(events[-2].data)["usage"]
    assert usage["completion_tokens"] == tokens
