"""The generation pipeline, generic over API adapters: plan -> submit -> respond.

1. *plan*: the JSON body is parsed by the adapter, the registry names the model, and the
   adapter plans the request on it (prompt, limits, constraint, encoder) on a worker thread,
   since rendering, tokenizing and compiling grammars would otherwise stall every stream;
2. *submit*: the engine queues the generation, its events flowing into a bounded
   :class:`~stream.bridge.Channel` (a full wait queue is ``CapacityExceeded``: 429);
3. *respond*: the SSE transport streams the encoder's documents, or the whole transport
   collects the events and answers one body.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from starlette.types import ASGIApp

from model.registry import ModelRegistry

from .body import lone_surrogate
from .bridge import Channel
from .errors import InvalidRequest
from .metrics import Metrics
from .plan import Adapter, APIRequest, Limits, Plan
from .routes import Handler, Request
from .transports.sse import SSEResponse
from .transports.whole import whole_response

__all__ = ["Generation", "Pipeline", "parse_json"]

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
    ``heartbeat_interval``: seconds of silence before an SSE comment frame.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: Metrics,
        *,
        limits: Limits,
        stream_buffer: int,
        heartbeat_interval: float,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._limits = limits
        self._stream_buffer = stream_buffer
        self._heartbeat_interval = heartbeat_interval

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
        generation = await self.start(adapter, request.body)
        plan, channel = generation.plan, generation.channel
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
