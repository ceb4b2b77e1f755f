"""What resumability costs per token chunk, without engine or socket: the plain SSE path
(encode, frame) against the resumable one (encode, frame with an id, append to the stream
store, a reader task woken to take it and mark it sent), each as its ASGI response with a
client that reads at once.

Part of ``scripts/bench --only resumable``; prints microseconds per chunk, the median of
five runs, and the ratio.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from anyio import lowlevel
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.events import Delta
from stream.adapters.chat import ChatEncoder
from stream.resume import MemoryStreamStore
from stream.transports.resumable import ResumableSSE
from stream.transports.sse import SSEResponse

TEXT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"


def _source(events: list[Delta]) -> Callable[[], Awaitable[Delta]]:
    remaining = iter(events)

    async def next_event() -> Delta:
        await lowlevel.checkpoint()  # the next event arrives on the loop, as from the engine
        try:
            return next(remaining)
        except StopIteration:
            raise anyio.EndOfStream from None

    return next_event


async def _respond(response: ASGIApp) -> None:
    """Run a response to its end with a client that never leaves; count what it sends."""
    sent = 0

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal sent
        sent += len(message.get("body", b""))

    await response({"type": "http"}, receive, send)
    assert sent > 0


async def _plain(events: list[Delta]) -> None:
    await _respond(SSEResponse(_source(events), ChatEncoder("bench-model")))


async def _resumable(events: list[Delta]) -> None:
    store = MemoryStreamStore(
        window=60, per_stream=1 << 30, total=1 << 30, registry=CollectorRegistry()
    )
    async with store.running():
        transport = ResumableSSE(store, url="/v1/streams/", heartbeat_interval=15)
        encoder = ChatEncoder("bench-model")
        await _respond(transport.start(_source(events), encoder, close=lambda: None, owner=None))


def resumable_cost(chunks: int = 100_000) -> None:
    deltas = [Delta(" " + word, 1) for word in TEXT.split(" ")]
    events = (deltas * (chunks // len(deltas) + 1))[:chunks]
    print(f"\nresumability per token chunk (no engine, no socket), {chunks} chunks per run")
    results: dict[str, float] = {}
    for name, path in (("plain SSE", _plain), ("resumable SSE", _resumable)):
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            anyio.run(path, events)
            runs.append((time.perf_counter() - started) / len(events))
        results[name] = statistics.median(runs)
        print(f"{name:>16}: {results[name] * 1e6:6.2f} us (median of 5 runs)")
    ratio = results["resumable SSE"] / results["plain SSE"]
    print(f"{'ratio':>16}: {ratio:6.2f}")
    print("command: scripts/bench --only resumable")


if __name__ == "__main__":
    resumable_cost()
