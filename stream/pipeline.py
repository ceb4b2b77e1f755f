"""The generation pipeline, generic over API adapters: plan -> submit -> respond.

1. *plan*: the JSON body is parsed by the adapter, the registry names the model, and the
   adapter plans the request on it (prompt, limits, constraint, encoder) on a worker thread,
   since rendering, tokenizing and compiling grammars would otherwise stall every stream;
2. *submit*: the engine queues the generation, its events flowing into a bounded
   :class:`~stream.bridge.Channel` (a full wait queue is ``CapacityExceeded``: 429);
3. *respond*: the SSE transport streams the encoder's documents (the resumable one when the
   request or the server asks, which also answers a ``Last-Event-ID`` instead of planning),
   or the whole transport collects the events and answers one body. The WebSocket
   transport runs the first two steps per message (:meth:`Pipeline.websocket`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from model.errors import ModelError
from model.events import Event
from model.registry import ModelRegistry

from .body import lone_surrogate
from .bridge import Channel
from .errors import APIError, InvalidRequest, from_model_error
from .keys import presented_key
from .metrics import Metrics
from .plan import Adapter, APIRequest, Limits, Plan
from .resume.store import owner_of
from .routes import ErrorBody, Handler, Request
from .transports.resumable import ResumableSSE, parse_event_id
from .transports.sse import SSEResponse
from .transports.websocket import Opened, OpenRequest, Refused, WebSocketEndpoint
from .transports.whole import whole_response

__all__ = ["Generation", "Pipeline", "parse_json"]

_log = logging.getLogger("sluice")

R = TypeVar("R", bound=APIRequest)


@dataclass(frozen=True, slots=True)
class Generation:
    """A submitted request: its plan (with the encoder) and the channel its events arrive on."""

    plan: Plan
    channel: Channel


def parse_json(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body (RFC 8259: UTF-8 only).

    :raises InvalidRequest: not UTF-8 (UTF-16 and UTF-32 included, which ``json.loads`` on
        bytes would guess), not JSON, an integer of more than 4300 digits (Python's limit on
        int-string conversion), too deeply nested, not an object, or a string (a key or a
        value, anywhere) holding a lone UTF-16 surrogate escape such as ``"\\ud83d"``, which
        is not text: ``param`` names its path (``messages[0].content``).
    """
    # A NUL byte cannot appear in JSON text outside a string, nor raw inside one: it is the
    # mark of UTF-16 or UTF-32, whose ASCII would otherwise decode as "valid" UTF-8.
    if b"\x00" in body:
        raise InvalidRequest("The request body is not valid UTF-8 (UTF-16 or UTF-32?).")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidRequest("The JSON body of your request is nested too deeply.") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})."
        ) from None
    except ValueError:  # int("1" * 5000): the int-string conversion limit
        raise InvalidRequest(
            "The JSON body of your request holds an integer of more than 4300 digits."
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    where = lone_surrogate(data)
    if where is not None:
        raise InvalidRequest(
            f"'{where}' contains a lone UTF-16 surrogate escape (a string must be valid Unicode).",
            param=where,
        )
    return data


class Pipeline:
    """Runs every generation route (see the module notes).

    ``stream_buffer``: events buffered per request before its sequence pauses;
    ``heartbeat_interval``: seconds of silence before an SSE comment frame; ``resumable``:
    the transport of resumable streams (None: none are), ``resumable_default`` whether a
    stream is resumable when its request does not say, ``owned`` whether a stream records
    the API key that started it (only that key may resume it); ``websocket_requests``:
    requests one WebSocket may run at once.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: Metrics,
        *,
        limits: Limits,
        stream_buffer: int,
        heartbeat_interval: float,
        resumable: ResumableSSE | None = None,
        resumable_default: bool = False,
        owned: bool = False,
        websocket_requests: int = 8,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._limits = limits
        self._stream_buffer = stream_buffer
        self._heartbeat_interval = heartbeat_interval
        self._resumable = resumable
        self._resumable_default = resumable_default
        self._owned = owned
        self._websocket_requests = websocket_requests

    def handler(self, adapter: Adapter[R]) -> Handler:
        """The route handler of ``adapter``'s API."""

        async def handle(request: Request) -> ASGIApp:
            return await self.generate(adapter, request)

        return handle

    async def generate(self, adapter: Adapter[R], request: Request) -> ASGIApp:
        """Plan, submit and respond to one HTTP request.

        :raises stream.errors.APIError: the body or a limit is wrong (400), or a server
            end of a whole answer (503, 504, 500).
        :raises model.errors.ModelError: no model to serve, the input cannot be served, or
            the wait queue is full.
        """
        headers = Headers(scope=request.scope)
        last_event_id = headers.get("last-event-id")
        if last_event_id is not None and self._resumable is not None:
            # A reconnection: the id decides, whatever the (repeated) body says.
            stream, after = parse_event_id(last_event_id)
            return self._resumable.resume(stream, after, self._owner(request.scope))
        generation = await self.start(adapter, request.body)
        plan, channel = generation.plan, generation.channel
        resumable = self._resumable_default if plan.resumable is None else plan.resumable
        if plan.stream and resumable and self._resumable is not None:
            return self._resumable.start(
                channel.receive,
                plan.encoder,
                close=channel.close,
                owner=self._owner(request.scope),
                stream_id=plan.stream_id,
            )
        if plan.stream:
            return SSEResponse(
                channel.receive,
                plan.encoder,
                heartbeat_interval=self._heartbeat_interval,
                heartbeat=plan.heartbeat,
                on_close=channel.close,
            )
        return await whole_response(
            request.receive, channel.drain, plan.encoder, on_close=channel.close
        )

    async def resume(self, request: Request) -> ASGIApp:
        """``GET`` on a resumable stream's URL (``{id}``): its events after the request's
        ``Last-Event-ID``, or all of them.

        :raises stream.errors.APIError: 404 unknown (or another key's), 410 expired, 400 a
            ``Last-Event-ID`` of another stream.
        """
        return self.resume_after(request.params["id"], 0, request)

    def resume_after(self, stream: str, after: int, request: Request) -> ASGIApp:
        """The events of ``stream`` after event ``after``, or after the request's
        ``Last-Event-ID`` when it sends one (a reconnecting ``EventSource`` says where it
        is now). Raises as :meth:`resume`."""
        last_event_id = Headers(scope=request.scope).get("last-event-id")
        if last_event_id is not None:
            named, after = parse_event_id(last_event_id)
            if named != stream:
                raise InvalidRequest(
                    f"Last-Event-ID names stream {named!r}, not {stream!r}.",
                    code="invalid_last_event_id",
                )
        if self._resumable is None:
            raise InvalidRequest("This server keeps no resumable streams.")
        return self._resumable.resume(stream, after, self._owner(request.scope))

    def _owner(self, scope: Scope) -> str | None:
        # The app has checked the key already; only its digest is kept.
        return owner_of(presented_key(scope)) if self._owned else None

    def websocket(
        self,
        adapter_for: Callable[[str | None], Adapter[R]],
        *,
        error_body: ErrorBody = APIError.body,
    ) -> ASGIApp:
        """The WebSocket endpoint of an API (on the API's own path): ``adapter_for`` gives
        a socket's adapter from its owner (a digest of the handshake's key, None when keys
        are off); errors read as ``error_body`` makes them (the API's shape). Streams over a
        WebSocket are not resumable: a request asking for it is refused."""

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            opener = self._opener(adapter_for(self._owner(scope)), error_body)
            socket = WebSocketEndpoint(
                opener, max_requests=self._websocket_requests, error_body=error_body
            )
            await socket(scope, receive, send)

        return endpoint

    def _opener(self, adapter: Adapter[R], error_body: ErrorBody) -> OpenRequest:
        async def open_request(body: bytes) -> Opened[Event]:
            try:
                generation = await self.start(adapter, body, resumable=False)
            except APIError as exc:
                raise Refused(error_body(exc)) from None
            except ModelError as exc:
                raise Refused(error_body(from_model_error(exc))) from None
            except Exception:
                # A bug, not the client's doing: said once in the log, and to the client in
                # the API's shape, while the socket's other requests go on.
                _log.exception("unexpected error starting a WebSocket request")
                failure = APIError("The server had an error while processing your request.")
                raise Refused(error_body(failure)) from None
            plan, channel = generation.plan, generation.channel
            if plan.stream:
                return Opened(plan.encoder, channel.receive, channel.close)

            async def whole() -> bytes:
                events = await channel.drain()
                try:
                    return plan.encoder.whole(events).data
                except APIError as exc:
                    raise Refused(error_body(exc)) from None

            return Opened(plan.encoder, channel.receive, channel.close, whole)

        return open_request

    async def start(
        self, adapter: Adapter[R], body: bytes, *, resumable: bool = True
    ) -> Generation:
        """Plan and submit one request body: the first two steps, for any transport;
        ``resumable``: whether the transport can make a stream resumable (a request asking
        for it on one that cannot is a 400 naming ``stream_options.resumable``).

        The caller owns the returned channel and must close it when done reading. Raises
        as :meth:`generate`.
        """
        parsed = adapter.parse(parse_json(body))
        served = self._registry.get(parsed.model)
        started = time.perf_counter()
        plan = await anyio.to_thread.run_sync(adapter.plan, parsed, served, self._limits)
        if plan.resumable and not resumable:
            raise InvalidRequest(
                "'stream_options.resumable' is not supported over a WebSocket (its requests "
                "end when the socket closes): leave it out, or stream over HTTP to resume.",
                param="stream_options.resumable",
            )
        channel = Channel(
            self._stream_buffer,
            served.wake,
            finals=plan.generation.n,
            observe=self._metrics.generation(started),
        )
        try:
            served.submit(plan.generation, channel)
        except BaseException:
            channel.close()
            raise
        return Generation(plan, channel)
