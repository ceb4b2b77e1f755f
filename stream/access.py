"""Per-request bookkeeping around the app: request ids, access log lines, request metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics

__all__ = ["AccessLog", "JSONLogFormatter", "request_id"]

_log = logging.getLogger("sluice.access")
_FIELDS = ("request_id", "status", "path")


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a sane token (logs then correlate across
    hops), else a new one."""
    if incoming and len(incoming) <= 128 and incoming.isascii() and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


class AccessLog:
    """Wraps an ASGI app: echoes ``X-Request-Id``, logs one line and counts each request.

    ``route_of`` turns a path into the metrics label (a route template, never raw ids).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, route_of: Callable[[str], str]) -> None:
        self._app = app
        self._metrics = metrics
        self._route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(Headers(scope=scope).get("x-request-id"))
        status = 500  # what the log says if the app dies before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            path: str = scope["path"]
            route = self._route_of(path)
            self._metrics.requests.labels(route, str(status)).inc()
            self._metrics.duration.labels(route).observe(elapsed)
            _log.info(
                "%s %s %s %.1fms",
                scope["method"],
                path,
                status,
                elapsed * 1000,
                extra={"request_id": rid, "status": status, "path": path},
            )


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
