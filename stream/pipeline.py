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
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp

from model.errors import ModelError
from model.events import Event
from model.registry import ModelRegistry

from .bridge import Channel
from .errors import APIError, InvalidRequest, from_model_error
from .metrics import Metrics
from .plan import Adapter, APIRequest, Limits, Plan
from .resume.store import owner_of
from .routes import Handler, Request
from .transports.resumable import ResumableSSE, parse_event_id
from .transports.sse import SSEResponse
from .transports.websocket import Opened, Refused, WebSocketEndpoint
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
    """The JSON object of a request body. :raises InvalidRequest: not UTF-8, not JSON, too
    deeply nested, or not an object."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise InvalidRequest("The JSON body of your request is nested too deeply.") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})."
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
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
            return self._resumable.resume(stream, after, self._owner(headers))
        generation = await self.start(adapter, request.body)
        plan, channel = generation.plan, generation.channel
        resumable = self._resumable_default if plan.resumable is None else plan.resumable
        if plan.stream and resumable and self._resumable is not None:
            return self._resumable.start(
                channel.receive, plan.encoder, close=channel.close, owner=self._owner(headers)
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
        headers = Headers(scope=request.scope)
        stream = request.params["id"]
        after = 0
        last_event_id = headers.get("last-event-id")
        if last_event_id is not None:
            named, after = parse_event_id(last_event_id)
            if named != stream:
                raise InvalidRequest(
                    f"Last-Event-ID names stream {named!r}, not {stream!r}.",
                    code="invalid_last_event_id",
                )
        if self._resumable is None:
            raise InvalidRequest("This server keeps no resumable streams.")
        return self._resumable.resume(stream, after, self._owner(headers))

    def _owner(self, headers: Headers) -> str | None:
        if not self._owned:
            return None
        # The app has checked the key already (x-api-key first, as there); only its digest
        # is kept.
        key = headers.get("x-api-key") or headers.get("authorization", "").partition(" ")[2]
        return owner_of(key)

    def websocket(self, adapter: Adapter[R]) -> ASGIApp:
        """The WebSocket endpoint of ``adapter``'s API (on the API's own path)."""

        async def open_request(body: bytes) -> Opened[Event]:
            try:
                generation = await self.start(adapter, body)
            except APIError as exc:
                raise Refused(exc.body()) from None
            except ModelError as exc:
                raise Refused(from_model_error(exc).body()) from None
            except Exception:
                # A bug, not the client's doing: said once in the log, and to the client in
                # the API's shape, while the socket's other requests go on.
                _log.exception("unexpected error starting a WebSocket request")
                failure = APIError("The server had an error while processing your request.")
                raise Refused(failure.body()) from None
            plan, channel = generation.plan, generation.channel
            if plan.stream:
                return Opened(plan.encoder, channel.receive, channel.close)

            async def whole() -> bytes:
                events = await channel.drain()
                try:
                    return plan.encoder.whole(events).data
                except APIError as exc:
                    raise Refused(exc.body()) from None

            return Opened(plan.encoder, channel.receive, channel.close, whole)

        return WebSocketEndpoint(open_request, max_requests=self._websocket_requests)

    async def start(self, adapter: Adapter[R], body: bytes) -> Generation:
        """Plan and submit one request body: the first two steps, for any transport.

        The caller owns the returned channel and must close it when done reading. Raises
        as :meth:`generate`.
        """
        parsed = adapter.parse(parse_json(body))
        served = self._registry.get(parsed.model)
        started = time.perf_counter()
        plan = await anyio.to_thread.run_sync(adapter.plan, parsed, served, self._limits)
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
