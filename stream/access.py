"""Per-request bookkeeping around the app: request ids, access log lines, request metrics.

HTTP requests and WebSocket handshakes alike: a handshake is logged as ``WEBSOCKET`` with
the status its answer had (101 accepted, 403 closed before accepting, or the status of a
denial response).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ClientGone
from .metrics import Metrics

__all__ = ["AccessLog", "JSONLogFormatter", "request_id", "request_id_of"]

_log = logging.getLogger("sluice.access")
_FIELDS = ("request_id", "status", "path")
#: Where the request id travels in the ASGI scope, for the app's own error reports.
_SCOPE_KEY = "sluice.request_id"


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a sane token (logs then correlate across
    hops), else a new one."""
    if incoming and len(incoming) <= 128 and incoming.isascii() and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


def request_id_of(scope: Scope) -> str:
    """The id :class:`AccessLog` gave this request ("-" outside one)."""
    rid: str = scope.get(_SCOPE_KEY, "-")
    return rid


class AccessLog:
    """Wraps an ASGI app: echoes ``X-Request-Id``, logs one line and counts each request.

    ``route_of`` turns a path into the metrics label (a route template, never raw ids).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, route_of: Callable[[str], str]) -> None:
        self._app = app
        self._metrics = metrics
        self._route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(Headers(scope=scope).get("x-request-id"))
        scope[_SCOPE_KEY] = rid
        status = 500  # what the log says if the app dies before answering
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status, answered = message["status"], True
            elif kind == "websocket.accept":
                status, answered = 101, True
            elif kind == "websocket.close" and not answered:
                # Closed before accepting: the server answers the handshake with 403.
                status, answered = 403, True
            if kind in ("http.response.start", "websocket.http.response.start", "websocket.accept"):
                headers = message.get("headers", [])
                message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        except ClientGone:
            status = 499
        except Exception:
            # The app answers its own errors; one that escaped it (the CORS layer, a response
            # failing before its start) still leaves as an OpenAI error, never a bare 500.
            _log.exception("unexpected error answering %s (request id %s)", scope["path"], rid)
            if answered or scope["type"] != "http":
                raise
            await _server_error(send_with_id, rid)
        finally:
            elapsed = time.perf_counter() - started
            path: str = scope["path"]
            route = self._route_of(path)
            self._metrics.requests.labels(route, str(status)).inc()
            self._metrics.duration.labels(route).observe(elapsed)
            _log.info(
                "%s %s %s %.1fms",
                scope.get("method", "WEBSOCKET"),
                path,
                status,
                elapsed * 1000,
                extra={"request_id": rid, "status": status, "path": path},
            )


async def _server_error(send: Send, rid: str) -> None:
    message = (
        f"The server had an error while processing your request (request id {rid}); it has "
        "been logged. Retry, or report the request id."
    )
    body = json.dumps(
        {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class JSONLogFormatter(logging.Formatter):
    """One JSON object per log line, with the request fields when a record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _FIELDS:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        return json.dumps(line, ensure_ascii=False)
