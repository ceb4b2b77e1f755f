"""WebSocket streaming: many requests on one socket, each answered with the documents its
SSE stream would carry.

Client -> server, text messages holding one JSON object::

    {"type": "request", "id": "<client's id>", "body": {<the JSON of the HTTP POST>}}
    {"type": "cancel", "id": "<client's id>"}

Server -> client::

    {"id": "...", "event": <the JSON document of one SSE data: line>}
    {"id": "...", "done": true}                      the response is complete
    {"id": "...", "done": true, "cancelled": true}   after a cancel
    {"id": "...", "error": {<the API's error object>}}  the request failed; it is over

The events are the SSE stream's, its last event included where the API has one (Anthropic's
``message_stop``); a sentinel that is no JSON (OpenAI's ``[DONE]``) becomes the ``done``
message. A body that asks for ``"stream": false`` gets its whole answer as one ``event``. One task
receives and one task sends; each request runs in its own task and hands its messages to
the sender through a small bounded queue, so a client that stops reading blocks the
sender, then its requests, which stop reading their sequences' channels: the engine pauses
those sequences only (and drops them after its stall timeout). Closing the socket cancels
every request on it.

Protocol errors close the socket: a binary message 1003, a message that is not a request
or cancel object 1008; Hypercorn closes with 1009 a message over its
``websocket_max_message_size`` and answers pings (and sends them, with
``websocket_ping_interval``). A request beyond ``max_requests`` at once, or reusing the id
of a running one, is answered with an error message.

Subprotocols: the socket accepts with the first offered subprotocol that starts with
``sluice.`` (browsers fail a handshake that offered protocols and got none back); the app
reads an API key from ``sluice.key.<key>`` before this transport runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from starlette.types import Receive, Scope, Send

from stream.documents import Document, StreamEncoder
from stream.errors import APIError, InvalidRequest

__all__ = ["OpenRequest", "Opened", "Refused", "WebSocketEndpoint"]

_log = logging.getLogger("sluice.websocket")

E = TypeVar("E")

#: Messages queued for the sender per socket before requests wait.
_OUTBOX = 16
_UNSUPPORTED_DATA = 1003
_POLICY_VIOLATION = 1008


class Refused(Exception):
    """A request answered with an error and no generation; ``body`` is the API's error
    document (``{"error": {...}}``)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.body = body


@dataclass(frozen=True, slots=True)
class Opened(Generic[E]):
    """A submitted request as this transport reads it."""

    encoder: StreamEncoder[E]
    next_event: Callable[[], Awaitable[E]]
    #: Ends the generation; called once the request is over, however it ended.
    close: Callable[[], None]
    #: For a request that asked for one whole answer: collects it (the document's data),
    #: raising :class:`Refused` for an answer the API reports as an error.
    whole: Callable[[], Awaitable[bytes]] | None = None


#: Plans and submits one request body. :raises Refused: it cannot be served.
OpenRequest = Callable[[bytes], Awaitable[Opened[Any]]]


class _ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _message(request_id: str, key: str, value: bytes) -> str:
    # ``value`` is compact JSON already: splice it rather than parse and dump it again.
    return '{"id":' + json.dumps(request_id) + ',"' + key + '":' + value.decode() + "}"


def _error_object(document: bytes) -> bytes:
    """The error object inside an API's error document (``{"error": {...}}``), or all of it."""
    try:
        parsed = json.loads(document)
    except ValueError:
        return json.dumps({"message": document.decode(errors="replace")}).encode()
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return json.dumps(parsed["error"], ensure_ascii=False).encode()
    return document


def _refused_error(body: dict[str, Any]) -> bytes:
    """As :func:`_error_object` for an error document still in hand as a dict (no
    dump-parse-dump round trip)."""
    error = body.get("error")
    return json.dumps(error if isinstance(error, dict) else body, ensure_ascii=False).encode()


class WebSocketEndpoint:
    """An ASGI WebSocket app serving one API's requests (see the module notes);
    ``error_body`` shapes the errors this transport makes itself, as the API's documents."""

    def __init__(
        self,
        open_request: OpenRequest,
        *,
        max_requests: int,
        error_body: Callable[[APIError], dict[str, Any]] = APIError.body,
    ) -> None:
        self._open = open_request
        self._max_requests = max_requests
        self._error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        offered: list[str] = scope.get("subprotocols") or []
        chosen = next((p for p in offered if p.startswith("sluice.")), None)
        await send({"type": "websocket.accept", "subprotocol": chosen})
        outbox, sending = anyio.create_memory_object_stream[str](_OUTBOX)
        running: dict[str, anyio.CancelScope] = {}
        close: tuple[int, str] | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._send_all, sending, send)
            with outbox:
                try:
                    await self._receive_all(receive, tasks, outbox, running)
                except _ProtocolError as exc:
                    close = (exc.code, exc.reason)
            # The client left or broke the protocol: nobody reads the rest.
            tasks.cancel_scope.cancel()
        if close is not None:
            code, reason = close
            await send({"type": "websocket.close", "code": code, "reason": reason})

    async def _send_all(self, sending: Any, send: Send) -> None:
        async with sending:
            async for text in sending:
                await send({"type": "websocket.send", "text": text})

    async def _receive_all(
        self,
        receive: Receive,
        tasks: TaskGroup,
        outbox: MemoryObjectSendStream[str],
        running: dict[str, anyio.CancelScope],
    ) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raise _ProtocolError(_UNSUPPORTED_DATA, "send JSON text messages, not binary")
            kind, request_id, body = _parse(text)
            if kind == "cancel":
                scope = running.get(request_id)
                if scope is not None:
                    scope.cancel()
                continue
            if request_id in running:
                await outbox.send(self._refusal(request_id, "duplicate_id", "is still running"))
                continue
            if len(running) >= self._max_requests:
                detail = f"would exceed {self._max_requests} requests running on this socket"
                await outbox.send(self._refusal(request_id, "too_many_requests", detail))
                continue
            scope = anyio.CancelScope()
            running[request_id] = scope
            tasks.start_soon(self._run, request_id, body, scope, outbox.clone(), running)

    async def _run(
        self,
        request_id: str,
        body: bytes,
        scope: anyio.CancelScope,
        outbox: MemoryObjectSendStream[str],
        running: dict[str, anyio.CancelScope],
    ) -> None:
        with outbox:
            try:
                with scope:
                    await self._answer(request_id, body, outbox)
                if scope.cancelled_caught:
                    done = '{"id":' + json.dumps(request_id) + ',"done":true,"cancelled":true}'
                    await outbox.send(done)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the socket is closing
            finally:
                running.pop(request_id, None)

    async def _answer(
        self, request_id: str, body: bytes, outbox: MemoryObjectSendStream[str]
    ) -> None:
        try:
            opened = await self._open(body)
        except Refused as exc:
            await outbox.send(_message(request_id, "error", _refused_error(exc.body)))
            return
        try:
            if opened.whole is not None:
                try:
                    data = await opened.whole()
                except Refused as exc:
                    await outbox.send(_message(request_id, "error", _refused_error(exc.body)))
                    return
                await outbox.send(_message(request_id, "event", data))
                await outbox.send(_message(request_id, "done", b"true"))
                return
            encoder = opened.encoder
            if await self._forward(request_id, encoder.opening(), outbox):
                return
            while True:
                try:
                    event = await opened.next_event()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    failure = encoder.error("the generation ended unexpectedly")
                    await self._forward(request_id, [failure], outbox)
                    return
                if await self._forward(request_id, encoder.encode(event), outbox):
                    return
        except Exception:
            _log.exception("a WebSocket request failed while streaming")
            failure = opened.encoder.error("internal error while streaming")
            await self._forward(request_id, [failure], outbox)
        finally:
            opened.close()

    def _refusal(self, request_id: str, code: str, detail: str) -> str:
        error = InvalidRequest(f"Request {request_id!r} {detail}.", param="id", code=code)
        document = json.dumps(self._error_body(error), ensure_ascii=False).encode()
        return _message(request_id, "error", _error_object(document))

    async def _forward(
        self,
        request_id: str,
        documents: Sequence[Document],
        outbox: MemoryObjectSendStream[str],
    ) -> bool:
        """Send the documents' messages; True once one of them ended the response."""
        for document in documents:
            if document.kind == "event":
                await outbox.send(_message(request_id, "event", document.data))
            elif document.kind == "error":
                await outbox.send(_message(request_id, "error", _error_object(document.data)))
                return True
            else:
                if document.data.startswith(b"{"):
                    # The API's own last event (Anthropic's message_stop), not a sentinel
                    # like OpenAI's [DONE]: its clients expect it.
                    await outbox.send(_message(request_id, "event", document.data))
                await outbox.send(_message(request_id, "done", b"true"))
                return True
        return False


def _parse(text: str) -> tuple[str, str, bytes]:
    """The kind, id and (for a request) body of a client message.

    :raises _ProtocolError: not a request or cancel object with a string id.
    """
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise _ProtocolError(_POLICY_VIOLATION, "a message is not JSON") from None
    if not isinstance(message, dict):
        raise _ProtocolError(_POLICY_VIOLATION, "a message is not a JSON object")
    kind = message.get("type")
    request_id = message.get("id")
    if kind not in ("request", "cancel"):
        raise _ProtocolError(_POLICY_VIOLATION, "'type' must be 'request' or 'cancel'")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 256:
        raise _ProtocolError(_POLICY_VIOLATION, "'id' must be a string of 1 to 256 characters")
    if kind == "cancel":
        return kind, request_id, b""
    body = message.get("body")
    if not isinstance(body, dict):
        raise _ProtocolError(_POLICY_VIOLATION, "a request's 'body' must be a JSON object")
    return kind, request_id, json.dumps(body).encode()
