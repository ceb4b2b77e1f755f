"""The API key a request presents, wherever its client could put it.

Anthropic's clients send it as ``x-api-key``, OpenAI's as a bearer token, and a browser's
WebSocket, which cannot set headers, as a subprotocol ``sluice.key.<key>``. The app checks
it there; what a request stores or starts is owned by (a digest of) the same key.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Scope

__all__ = ["KEY_PROTOCOL", "presented_key"]

#: The subprotocol prefix that carries an API key on a browser's WebSocket.
KEY_PROTOCOL = "sluice.key."


def presented_key(scope: Scope) -> str:
    """The key of an HTTP request or WebSocket handshake: ``x-api-key``, else a bearer
    token, else a ``sluice.key.<key>`` subprotocol; empty when there is none."""
    headers = Headers(scope=scope)
    given = headers.get("x-api-key", "")
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    if not given and scheme.lower() == "bearer":
        given = bearer
    if not given and scope["type"] == "websocket":
        offered: list[str] = scope.get("subprotocols") or []
        given = next((p[len(KEY_PROTOCOL) :] for p in offered if p.startswith(KEY_PROTOCOL)), "")
    return given
