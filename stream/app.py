"""The ASGI application: lifespan, dispatch by the route table, access control, drain.

Every request passes, in order: the access log (request id, log line, metrics), CORS when
configured, route and method lookup (404, 405), the API key (401), the content type and the
body of a POST (415, 413), and its handler. This is the one place an exception becomes a
response: :class:`~stream.errors.APIError` as its own JSON, a
:class:`~model.errors.ModelError` translated once (:func:`~stream.errors.from_model_error`),
and anything else a 500 ``server_error`` naming the request id, logged once with its
traceback; each in OpenAI's shape unless the route declares its API's own (``error_body``).
WebSocket handshakes go to their own table (the API paths): the API key is checked at the
handshake, from ``Authorization`` or from a subprotocol ``sluice.key.<key>`` (browsers cannot
set headers on a WebSocket), and with CORS on, a browser's ``Origin`` must be an allowed one;
a refused or unknown one is denied with an OpenAI-shaped 401, 403 or 404 (or a close 1008
where the server cannot send a denial). ``services`` run for the server's life (the
resumable stream store's pumps and expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager

import anyio
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.errors import ModelError
from model.registry import ModelRegistry, ModelSettings
from model.source import ModelSourceError, ResolvedModel, resolve_model

from .access import AccessLog, request_id_of
from .bridge import LoopDispatch
from .config import Config
from .errors import (
    APIError,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    from_model_error,
)
from .metrics import Metrics
from .routes import OTHER, ErrorBody, Request, Route, RouteTable

__all__ = ["Sluice"]

#: The subprotocol prefix that carries an API key on a browser's WebSocket.
_KEY_PROTOCOL = "sluice.key."

_log = logging.getLogger("sluice")


class Sluice:
    """The ASGI application of one server (see the module notes).

    ``model``: how to load the served model once the lifespan starts (``resolved`` skips
    finding it); ``websockets``: WebSocket apps by path.
    """

    def __init__(
        self,
        config: Config,
        registry: ModelRegistry,
        routes: RouteTable,
        metrics: Metrics,
        *,
        model: ModelSettings,
        resolved: ResolvedModel | None = None,
        websockets: Mapping[str, ASGIApp] | None = None,
        services: Sequence[Callable[[], AbstractAsyncContextManager[None]]] = (),
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self._routes = routes
        self._model = model
        self._resolved = resolved
        self._websockets = dict(websockets or {})
        self._services = services
        self._keys = _api_keys(config)
        #: Set when the model fails to load (``main`` then exits non-zero).
        self.failed = asyncio.Event()
        origins = [o.strip() for o in (config.cors_origins or "").split(",") if o.strip()]
        self._origins = origins
        entry: ASGIApp = self._dispatch
        if origins:
            entry = CORSMiddleware(
                entry,
                allow_origins=origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "x-request-id",
                    # Anthropic clients' key and version headers.
                    "x-api-key",
                    "anthropic-version",
                    "anthropic-beta",
                    # A resumable stream's reconnection (EventSource sends it itself).
                    "last-event-id",
                ],
                expose_headers=["x-request-id", "retry-after", "x-stream-url"],
                max_age=600,
            )
        self._http = AccessLog(entry, metrics, routes.label)
        self._websocket = AccessLog(self._handshake, metrics, self._websocket_label)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    # -- shutdown ---------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Stop admitting: readiness and new generations answer 503 from now on."""
        self.registry.begin_drain()

    async def drain(self, grace: float) -> None:
        """Let in-flight generations finish for up to ``grace`` seconds, then end the rest.

        Those get an error frame (streams) or a 503 (whole answers), and a clean close.
        """
        self.begin_drain()
        registry = self.registry
        # The engines' state lives on their own threads; polling their counters is the
        # simplest correct wait, and a shutdown can afford 50 ms of lag.
        with anyio.move_on_after(grace):
            while not registry.idle():  # noqa: ASYNC110
                await anyio.sleep(0.05)
        if not registry.idle():
            registry.cancel_all("the server is shutting down")
            with anyio.move_on_after(5):
                while not registry.idle():  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        # Let the last frames reach their sockets before the server stops.
        await anyio.sleep(0.1)

    # -- lifespan ---------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        config = self.config
        resolved = self._resolved
        if resolved is None:
            try:
                resolved = await anyio.to_thread.run_sync(
                    resolve_model, config.model, config.model_file
                )
            except ModelSourceError as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        loop = asyncio.get_running_loop()

        def failed() -> None:  # on the loading thread
            loop.call_soon_threadsafe(self.failed.set)

        self.registry.load(resolved, self._model, LoopDispatch(loop), on_failure=failed)
        async with contextlib.AsyncExitStack() as services:
            for service in self._services:
                await services.enter_async_context(service())
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await anyio.to_thread.run_sync(self.registry.close)
        await send({"type": "lifespan.shutdown.complete"})

    # -- HTTP -------------------------------------------------------------------------

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._routes.find(scope["path"])
        error_body = found[1].error_body if found is not None else APIError.body
        try:
            response = await self._respond(scope, receive, found)
        except APIError as exc:
            response = _error_response(exc, error_body)
        except ModelError as exc:
            error = from_model_error(exc)
            if error.status >= 500:  # the server's own failure (a broken template): say so once
                _log.error("%s (request id %s)", exc, request_id_of(scope))
            response = _error_response(error, error_body)
        except Exception:
            rid = request_id_of(scope)
            _log.exception(
                "unexpected error answering %s %s (request id %s)",
                scope["method"],
                scope["path"],
                rid,
                extra={"request_id": rid},
            )
            unexpected = APIError(
                "The server had an error while processing your request (request id "
                f"{rid}); it has been logged. Retry, or report the request id."
            )
            response = _error_response(unexpected, error_body)
        await response(scope, receive, send)

    async def _respond(
        self, scope: Scope, receive: Receive, found: tuple[str, Route, dict[str, str]] | None
    ) -> ASGIApp:
        path: str = scope["path"]
        method: str = scope["method"]
        headers = Headers(scope=scope)
        if found is None:
            raise NotFound(f"Unknown request URL: {path}.", code="unknown_url")
        _, route, params = found
        handler = route.methods.get(method)
        if handler is None:
            allow = ", ".join(route.methods)
            raise MethodNotAllowed(
                f"Method {method} is not allowed for {path}; use {allow}.",
                code="method_not_allowed",
                headers={"allow": allow},
            )
        if not route.public:
            self._authorize(headers)
        body = b""
        if method == "POST":
            _check_content_type(headers)
            body = await self._body(receive)
        return await handler(Request(scope, receive, body, params))

    def _authorize(self, headers: Headers, offered: Sequence[str] = ()) -> None:
        if not self._keys:
            return
        # Anthropic's clients send the key as x-api-key; OpenAI's as a bearer token; a
        # browser's WebSocket, which cannot set headers, as a subprotocol.
        given = headers.get("x-api-key", "")
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        if not given and scheme.lower() == "bearer":
            given = bearer
        if not given:
            given = next(
                (p[len(_KEY_PROTOCOL) :] for p in offered if p.startswith(_KEY_PROTOCOL)), ""
            )
        if not given:
            raise Unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or "
                "'x-api-key: <key>').",
                code="missing_api_key",
                headers={"www-authenticate": "Bearer"},
            )
        # Compare with every key, always: the time taken says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given.encode(), key.encode())
        if not matched:
            raise Unauthorized(
                "Incorrect API key provided.",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        limit = self.config.max_body_size
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("The client went away while sending the request.")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"The request body exceeds {limit} bytes.", code="request_too_large"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- WebSocket --------------------------------------------------------------------

    def _websocket_label(self, path: str) -> str:
        return path if path in self._websockets else OTHER

    async def _handshake(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before its handshake was answered
        app = self._websockets.get(scope["path"])
        headers = Headers(scope=scope)
        try:
            if app is None:
                raise NotFound(f"Unknown WebSocket URL: {scope['path']}.", code="unknown_url")
            origin = headers.get("origin")
            if self._origins and "*" not in self._origins and origin not in (None, *self._origins):
                raise Forbidden(f"Origin {origin!r} is not allowed.", code="origin_not_allowed")
            self._authorize(headers, scope.get("subprotocols") or [])
        except APIError as error:
            await _deny(scope, send, error)
            return
        replayed = [message]

        async def receive_after_connect() -> Message:
            return replayed.pop() if replayed else await receive()

        await app(scope, receive_after_connect, send)


async def _deny(scope: Scope, send: Send, error: APIError) -> None:
    """Refuse a WebSocket handshake with ``error`` as an HTTP answer, where the server can."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send(
        {"type": "websocket.http.response.start", "status": error.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": body})


def _error_response(exc: APIError, body: ErrorBody) -> ASGIApp:
    return JSONResponse(body(exc), exc.status, headers=exc.headers)


def _api_keys(config: Config) -> tuple[str, ...]:
    keys = [k.strip() for k in (config.api_keys or "").split(",")]
    if config.api_key_file:
        with open(config.api_key_file, encoding="utf-8") as lines:
            keys += [line.strip() for line in lines]
    return tuple(k for k in keys if k and not k.startswith("#"))


def _check_content_type(headers: Headers) -> None:
    kind = headers.get("content-type")
    if kind is not None and kind.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {kind!r}.", code="unsupported_media_type"
        )
