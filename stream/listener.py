"""The listening socket: a cap on open connections, the descriptor limit, quiet accept errors.

Hypercorn (0.18) has no connection limit: it serves every connection ``asyncio.start_server``
accepts from the sockets its ``Config.create_sockets`` returns. :class:`ListenerConfig`
overrides that one public method to hand it :class:`CappedListener` sockets, whose ``accept``
(what asyncio's accept loop calls) counts the open connections and answers one past the cap
with a 503 and a close before Hypercorn ever sees it. Each served connection releases its
place when asyncio closes its socket. Connections already open go on meanwhile: a monitor
polling ``/health`` on a kept-alive connection still gets its answers, and request bodies that
never end are cut by the body timeout (:mod:`stream.body`), which frees their places.

A process out of descriptors makes asyncio log every failed ``accept`` (it retries each
second per listener, and other code paths may log more); :class:`AcceptErrorFilter` lets one
such line through per interval, with a count of the ones it held back.
"""

from __future__ import annotations

import json
import logging
import resource
import socket
import threading
import time
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

__all__ = ["AcceptErrorFilter", "CappedListener", "ListenerConfig", "raise_descriptor_limit"]

_log = logging.getLogger("sluice")

#: Descriptors kept free of the connection cap: the model file, logs, worker threads' pipes.
RESERVED_DESCRIPTORS = 64

_REFUSAL_BODY = json.dumps(
    {
        "error": {
            "message": "The server has too many open connections; retry shortly.",
            "type": "server_error",
            "param": None,
            "code": "too_many_connections",
        }
    }
).encode()
#: What a connection past the cap reads before its close (plain HTTP/1.1; TLS ones just close).
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
    + str(len(_REFUSAL_BODY)).encode()
    + b"\r\n\r\n"
    + _REFUSAL_BODY
)


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open descriptors to the hard limit; returns the soft limit now.

    Linux starts most processes at 1024, which a few hundred slow clients exhaust.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft if soft != resource.RLIM_INFINITY else wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):  # a container may refuse even this
        return soft
    return wanted


class _Count:
    """Open connections, shared by a server's listeners (accepts and closes run on the event
    loop, but a socket may be closed from a finalizer on another thread)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self.refused = 0
        self.lock = threading.Lock()
        self._logged_at = -float("inf")

    def take(self) -> bool:
        with self.lock:
            if self.open >= self.cap:
                self.refused += 1
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self.lock:
            self.open -= 1

    def log_refusal(self, interval: float = 10.0) -> None:
        now = time.monotonic()
        if now - self._logged_at < interval:
            return
        self._logged_at = now
        with self.lock:
            refused, self.refused = self.refused, 0
        _log.warning(
            "connection cap reached (%d open): refused %d new connection(s) with a 503",
            self.cap,
            refused,
        )


class _Connection(socket.socket):
    """An accepted connection that gives its place back once, when it closes."""

    _count: _Count | None = None

    def close(self) -> None:
        count, self._count = self._count, None
        if count is not None:
            count.release()
        super().close()


class CappedListener(socket.socket):
    """A listening socket whose ``accept`` serves at most ``cap`` connections at once.

    Past the cap, a new connection gets a 503 in OpenAI's error shape (unless ``secure``: a
    TLS client cannot read plain bytes, so it is just closed) and the call raises
    ``BlockingIOError``, which asyncio's accept loop takes as "nothing more to accept now".
    """

    def __init__(self, fileno: int, count: _Count, *, secure: bool) -> None:
        super().__init__(fileno=fileno)
        self._count = count
        self._secure = secure

    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        connection = _Connection(self.family, self.type, self.proto, fileno=fd)
        if self._count.take():
            connection._count = self._count
            return connection, address
        try:
            if not self._secure:
                connection.setblocking(False)
                connection.send(_REFUSAL)  # a few hundred bytes: fits any fresh send buffer
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client left already
        finally:
            connection.close()
            self._count.log_refusal()
        raise BlockingIOError("connection cap reached")


class ListenerConfig(HypercornConfig):
    """Hypercorn settings whose listening sockets cap open connections at ``max_connections``
    (lowered to fit the descriptor limit, keeping :data:`RESERVED_DESCRIPTORS` free)."""

    def __init__(self, max_connections: int) -> None:
        super().__init__()
        self.max_connections = max_connections

    def create_sockets(self) -> Sockets:
        """Hypercorn's sockets, capped; first the descriptor limit is raised and asyncio's
        accept errors are filtered (both once per process)."""
        limit = raise_descriptor_limit()
        fits = max(1, limit - RESERVED_DESCRIPTORS)
        if self.max_connections > fits:
            _log.warning(
                "max_connections %d is more than the descriptor limit %d allows; using %d",
                self.max_connections,
                limit,
                fits,
            )
        asyncio_log = logging.getLogger("asyncio")
        if not any(isinstance(f, AcceptErrorFilter) for f in asyncio_log.filters):
            asyncio_log.addFilter(AcceptErrorFilter())
        made = super().create_sockets()
        count = _Count(min(self.max_connections, fits))

        def capped(sockets: list[socket.socket], secure: bool) -> list[socket.socket]:
            return [CappedListener(s.detach(), count, secure=secure) for s in sockets]

        return Sockets(
            capped(made.secure_sockets, True),
            capped(made.insecure_sockets, False),
            made.quic_sockets,
        )


class AcceptErrorFilter(logging.Filter):
    """Lets through one "out of system resource" line of asyncio's accept loop per
    ``interval`` seconds, noting how many it held back; every other record passes."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._interval = interval
        self._passed_at = -float("inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "out of system resource" not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self._passed_at < self._interval:
            self._held += 1
            return False
        self._passed_at = now
        if self._held:
            record.msg = f"{record.msg} ({self._held} more such lines held back)"
            self._held = 0
        return True
