"""Many clients at once: continuous batching, admission, fairness, backpressure, deadlines."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .server import RunningServer, running_server
from .sse_client import content_of, frames

CHAT = "/v1/chat/completions"

TOPICS = [
    "the sea",
    "a mountain",
    "a small robot",
    "winter",
    "a library",
    "trains",
    "a garden",
    "the moon",
    "bread",
    "a violin",
    "rain",
    "a lighthouse",
    "bees",
    "a desert",
    "clocks",
    "a bicycle",
]


def ask(topic: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": f"Write two sentences about {topic}."}]


@pytest.fixture(scope="module")
def batched() -> Iterator[RunningServer]:
    """Eight slots, so eight sequences share every decode step; a KV share per slot, which
    the batch-independent output below depends on (see ``--kv-per-slot``)."""
    with running_server(slots=8, ctx_size=1024, kv_per_slot=True) as srv:
        yield srv


def test_sixteen_concurrent_sdk_streams_complete(batched: RunningServer) -> None:
    async def one(sdk: openai.AsyncOpenAI, topic: str, limit: int) -> tuple[str, str, Any]:
        stream = await sdk.chat.completions.create(
            model="m",
            messages=ask(topic),
            max_tokens=limit,
            temperature=0.7,
            seed=len(topic),
            stream=True,
            stream_options={"include_usage": True},
        )
        text, reason, usage = "", "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                reason = chunk.choices[0].finish_reason or reason
            if chunk.usage is not None:
                usage = chunk.usage
        return text, reason, usage

    async def main() -> list[tuple[str, str, Any]]:
        async with openai.AsyncOpenAI(
            base_url=batched.api, api_key="unused", max_retries=0, timeout=120
        ) as sdk:
            return await asyncio.gather(
                *(one(sdk, topic, 16 + i) for i, topic in enumerate(TOPICS))
            )

    results = asyncio.run(main())
    assert len(results) == 16
    for i, (text, reason, usage) in enumerate(results):
        limit = 16 + i
        assert usage is not None
        assert reason in ("stop", "length")
        assert (usage.completion_tokens == limit) == (reason == "length")
        assert 0 < usage.completion_tokens <= limit
        assert text
    assert batched.wait_idle()["active"] == 0


def chat_text(url: str, topic: str, **extra: Any) -> str:
    body = {"messages": ask(topic), "max_tokens": 32, "temperature": 0, **extra}
    reply = httpx.post(url + CHAT, json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["message"]["content"])


def test_greedy_output_is_the_same_alone_and_batched(batched: RunningServer) -> None:
    topics = TOPICS[:8]
    alone = [chat_text(batched.url, t) for t in topics]
    batched.wait_idle()
    results: dict[str, str] = {}

    def run(topic: str) -> None:
        results[topic] = chat_text(batched.url, topic)

    threads = [threading.Thread(target=run, args=(t,)) for t in topics]
    before = batched.engine_stats()["steps"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    steps = batched.engine_stats()["steps"] - before
    assert [results[t] for t in topics] == alone
    # They really ran together: far fewer steps than eight generations one after another.
    assert steps < 4 * 32, steps


def test_queue_overflow_is_429_while_admitted_streams_carry_on() -> None:
    with running_server(slots=1, max_queue=1) as srv:
        long_body = {
            "messages": ask("rivers"),
            "max_tokens": 200,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
        outcome: dict[str, Any] = {}

        def stream(name: str) -> None:
            with (
                httpx.Client(base_url=srv.url, timeout=120) as client,
                client.stream("POST", CHAT, json=long_body) as response,
            ):
                outcome[name] = [f for f in frames(response) if f.kind == "data"]

        running = threading.Thread(target=stream, args=("running",))
        running.start()
        while srv.engine_stats()["active"] == 0:
            time.sleep(0.01)
        waiting = threading.Thread(target=stream, args=("waiting",))
        waiting.start()
        while srv.engine_stats()["queued"] == 0:
            time.sleep(0.01)
        refused = httpx.post(srv.url + CHAT, json={**long_body, "stream": False}, timeout=60)
        # Answered at once, not after a slot freed: both admitted requests are still there.
        still = srv.engine_stats()
        running.join()
        waiting.join()
    assert refused.status_code == 429
    assert (still["active"], still["queued"]) == (1, 1)
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    for name in ("running", "waiting"):
        data = outcome[name]
        assert data[-1].text == "[DONE]"
        final = data[-2].json()["choices"][0]
        assert final["finish_reason"] == "length"
        assert sum(bool(content_of(f.json())) for f in data[:-1]) > 100


def slow_client(
    port: int, body: dict[str, Any], received: list[bytes], resume: threading.Event
) -> None:
    """A client with a tiny receive window that reads nothing until ``resume`` is set (or two
    minutes pass): how soon the server fills the window depends on the machine's speed."""
    payload = json.dumps(body).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
        resume.wait(120)
        while data := sock.recv(1024):
            received.append(data)
            time.sleep(0.001)


def sse_stream(raw: bytes) -> tuple[str, list[bytes], dict[str, Any]]:
    """Text, each token's bytes (from logprobs) and usage of a raw HTTP/1.1 SSE response."""
    body = raw.split(b"\r\n\r\n", 1)[1].decode()
    text, tokens, usage = "", [], {}
    for line in body.split("\n"):
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            for entry in (choice.get("logprobs") or {}).get("content") or []:
                tokens.append(bytes(entry["bytes"]))
    return text, tokens, usage


def long_stream(tokens: int) -> dict[str, Any]:
    """A greedy stream of exactly ``tokens`` tokens."""
    return {
        "messages": ask("the sea"),
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }


def test_a_slow_reader_pauses_alone_and_resumes_intact() -> None:
    body = long_stream(700)
    # A small socket send buffer, so a client that stops reading soon blocks the server's
    # writes (the default 64 KiB would take a few hundred tokens longer).
    with running_server(slots=2, ctx_size=2048, stream_buffer=4, send_buffer=4096) as srv:
        received: list[bytes] = []
        slow_body = {**body, "logprobs": True, "stream_options": {"include_usage": True}}
        resume = threading.Event()
        slow = threading.Thread(target=slow_client, args=(srv.port, slow_body, received, resume))
        slow.start()
        deadline = time.monotonic() + 120
        while srv.engine_stats()["pauses"] == 0:
            assert time.monotonic() < deadline, "the slow reader never paused its sequence"
            time.sleep(0.05)
        # While the slow one is paused, a fast stream gets a token on every step.
        before = srv.engine_stats()
        with (
            httpx.Client(base_url=srv.url, timeout=120) as client,
            client.stream("POST", CHAT, json={**body, "max_tokens": 100}) as response,
        ):
            fast = [f for f in frames(response) if f.kind == "data"]
        after = srv.engine_stats()
        resume.set()
        slow.join()
    assert after["active"] == 1  # the paused sequence kept its slot
    tokens = sum(1 for f in fast[:-1] if content_of(f.json()))
    assert tokens >= 95
    assert after["steps"] - before["steps"] <= 100 + 5
    # The paused stream lost nothing and repeated nothing: exactly one logprob entry per
    # generated token arrived, in order, and their bytes make up exactly the text received.
    text, token_bytes, usage = sse_stream(b"".join(received))
    assert usage["completion_tokens"] == 700
    assert len(token_bytes) == 700
    assert b"".join(token_bytes) == text.encode()
    assert after["stalled"] == 0


def test_a_client_that_stops_reading_is_dropped_after_the_stall_limit() -> None:
    body = long_stream(1500)
    with running_server(
        slots=1, ctx_size=2048, stream_buffer=4, send_buffer=4096, stall_timeout=0.5
    ) as srv:
        received: list[bytes] = []
        resume = threading.Event()
        slow = threading.Thread(target=slow_client, args=(srv.port, body, received, resume))
        slow.start()
        deadline = time.monotonic() + 120
        while srv.engine_stats()["stalled"] == 0:
            assert time.monotonic() < deadline, "the stalled client was never dropped"
            time.sleep(0.05)
        stats = srv.wait_idle(timeout=5)
        # The slot is free again although the client is still connected.
        assert chat_text(srv.url, "bees", max_tokens=4)
        resume.set()
        slow.join()
    assert stats["active"] == 0
    assert stats["stalled"] == 1


def test_a_storm_of_disconnecting_clients_leaves_nothing_behind() -> None:
    rng = random.Random(7)
    with running_server(slots=4, max_queue=128) as srv:

        async def one(client: httpx.AsyncClient, i: int) -> None:
            body = {
                "messages": ask(TOPICS[i % 16]),
                "max_tokens": 300,
                "ignore_eos": True,
                "stream": True,
            }
            leave_after = rng.randint(0, 20)
            async with client.stream("POST", CHAT, json=body) as response:
                assert response.status_code == 200
                seen = 0
                async for _ in response.aiter_lines():
                    seen += 1
                    if seen >= leave_after:
                        break

        async def storm() -> None:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(base_url=srv.url, timeout=120, limits=limits) as c:
                await asyncio.gather(*(one(c, i) for i in range(100)))

        asyncio.run(storm())
        stats = srv.wait_idle(timeout=30)
        assert stats["active"] == 0
        assert stats["queued"] == 0
        assert chat_text(srv.url, "clocks", max_tokens=4)


def test_a_queued_client_that_leaves_is_never_admitted() -> None:
    with running_server(slots=1, heartbeat_interval=0.05) as srv:
        start = srv.engine_stats()["admitted"]
        long_body = {
            "messages": ask("rivers"),
            "max_tokens": 300,
            "temperature": 0,
            "ignore_eos": True,
        }
        holder = threading.Thread(
            target=lambda: httpx.post(srv.url + CHAT, json=long_body, timeout=120)
        )
        holder.start()
        while srv.engine_stats()["active"] == 0:
            time.sleep(0.01)
        with (
            httpx.Client(base_url=srv.url, timeout=60) as client,
            client.stream("POST", CHAT, json={**long_body, "stream": True}) as response,
        ):
            first = next(frames(response))  # the role chunk, then heartbeats while queued
            assert first.kind == "data"
            assert srv.engine_stats()["queued"] == 1
        deadline = time.monotonic() + 10
        while srv.engine_stats()["queued"] != 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        holder.join()
        stats = srv.wait_idle()
    assert stats["admitted"] - start == 1


def test_prefix_reuse_shows_in_cached_tokens(server: RunningServer) -> None:
    sdk = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)
    server.wait_idle()
    first_turn: list[Any] = [
        {"role": "system", "content": "You are a terse assistant. " * 20},
        {"role": "user", "content": "Name a colour."},
    ]
    one = sdk.chat.completions.create(model="m", messages=first_turn, max_tokens=8, temperature=0)
    assert one.usage is not None
    second_turn = [
        *first_turn,
        {"role": "assistant", "content": one.choices[0].message.content or ""},
        {"role": "user", "content": "Another one."},
    ]
    two = sdk.chat.completions.create(model="m", messages=second_turn, max_tokens=8, temperature=0)
    assert two.usage is not None
    details = two.usage.prompt_tokens_details
    assert details is not None
    assert details.cached_tokens is not None
    # Everything the first turn read is reused; only the new turn is processed.
    assert details.cached_tokens >= one.usage.prompt_tokens - 1
    assert details.cached_tokens < two.usage.prompt_tokens


def test_deadline_ends_a_generation_clearly() -> None:
    with running_server(slots=1, max_request_timeout=60) as srv:
        body = {"messages": ask("rivers"), "max_tokens": 2000, "ignore_eos": True, "timeout": 0.5}
        with (
            httpx.Client(base_url=srv.url, timeout=60) as client,
            client.stream("POST", CHAT, json={**body, "stream": True}) as response,
        ):
            data = [f for f in frames(response) if f.kind == "data"]
        whole = httpx.post(srv.url + CHAT, json=body, timeout=60)
        too_long = httpx.post(srv.url + CHAT, json={**body, "timeout": 61}, timeout=60)
        stats = srv.wait_idle()
    error = data[-1].json()["error"]
    assert (error["type"], error["code"]) == ("timeout", "deadline_exceeded")
    assert "deadline" in error["message"]
    assert any(content_of(f.json()) for f in data[:-1])  # what came before stands
    assert whole.status_code == 504
    assert whole.json()["error"]["code"] == "deadline_exceeded"
    assert too_long.status_code == 400
    assert too_long.json()["error"]["param"] == "timeout"
    assert stats["expired"] == 2
