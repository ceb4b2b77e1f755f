"""Server-sent events, written by hand: frames, heartbeats, and the streaming response.

One task writes (events, heartbeats); one task listens for the client leaving; whichever
finishes first cancels the other. Heartbeats are comment frames sent whenever nothing has
gone out for ``heartbeat_interval`` seconds: while queued, while the prompt is read, and
between tokens. The writer times out its own receive, so no second sender and no lock.

Deviation: no ``event:``/``id:`` fields and no ``retry:`` hint, as OpenAI's streams have
none; a client reconnecting cannot resume a generation anyway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
from starlette.types import Receive, Scope, Send

from .errors import error_object

__all__ = [
    "DONE",
    "HEARTBEAT",
    "SSE_HEADERS",
    "SSEResponse",
    "data_frame",
    "run_until_disconnect",
]

_log = logging.getLogger("sluice.sse")

E = TypeVar("E")
T = TypeVar("T")

HEARTBEAT = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tell nginx-style proxies not to buffer the stream.
    (b"x-accel-buffering", b"no"),
]


def data_frame(payload: Any) -> bytes:
    """One ``data:`` frame. Compact JSON never contains a newline, so one line suffices."""
    return (
        b"data: "
        + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


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
    """An ASGI response streaming ``render(event)`` for each event until one says it's last.

    ``next_event`` is awaited under a heartbeat timeout, so it must be safe to cancel (a
    memory object stream's ``receive`` is). ``on_close`` runs however the stream ends.
    """

    def __init__(
        self,
        next_event: Callable[[], Awaitable[E]],
        render: Callable[[E], tuple[bytes, bool]],
        *,
        opening: bytes = b"",
        heartbeat_interval: float = 15.0,
        on_close: Callable[[], None] = lambda: None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._next_event = next_event
        self._render = render
        self._opening = opening
        self._interval = heartbeat_interval
        self._on_close = on_close
        self._headers = SSE_HEADERS + (headers or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await run_until_disconnect(receive, lambda: self._write(send))
        finally:
            self._on_close()

    async def _write(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        if self._opening:
            await send({"type": "http.response.body", "body": self._opening, "more_body": True})
        body = b""
        try:
            while True:
                with anyio.move_on_after(self._interval) as waited:
                    event = await self._next_event()
                if waited.cancelled_caught:
                    body, last = HEARTBEAT, False
                else:
                    body, last = self._render(event)
                if last:
                    break
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            body = data_frame(error_object("the generation ended unexpectedly", "server_error"))
        except Exception:
            # Headers are out: the only honest report left is an error frame, then a clean end.
            _log.exception("streaming failed after the response started")
            body = data_frame(error_object("internal error while streaming", "server_error"))
        await send({"type": "http.response.body", "body": body, "more_body": False})
