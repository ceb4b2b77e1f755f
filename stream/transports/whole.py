"""A response answered at once: every event collected, then one JSON body.

The client leaving while the events are collected cancels the collection (and so the
generation, through ``on_close``); nobody is left to answer, so the access log records 499.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from starlette.responses import Response
from starlette.types import ASGIApp, Receive

from stream.documents import WholeEncoder

from .sse import run_until_disconnect

__all__ = ["CLIENT_CLOSED", "whole_response"]

E = TypeVar("E")

#: nginx's status for a client that closed the connection before the answer.
CLIENT_CLOSED = 499


async def whole_response(
    receive: Receive,
    collect: Callable[[], Awaitable[Sequence[E]]],
    encoder: WholeEncoder[E],
    *,
    on_close: Callable[[], None] = lambda: None,
) -> ASGIApp:
    """Await ``collect`` unless the client leaves, then answer the encoder's whole document.

    ``on_close`` runs however the collection ends. Errors the encoder raises for the events
    (:class:`stream.errors.APIError`) propagate to the caller, to be answered in their shape.
    """
    try:
        events = await run_until_disconnect(receive, collect)
    finally:
        on_close()
    if events is None:
        return Response(status_code=CLIENT_CLOSED)
    document = encoder.whole(events)
    return Response(document.data, media_type="application/json")
