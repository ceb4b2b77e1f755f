"""What an API adapter hands a transport: documents, and the encoders that make them.

An encoder turns one response's engine events into :class:`Document`\\ s in its API's shape
(OpenAI chunks, later Anthropic or Responses events); a transport frames each document for
its wire (an SSE frame, a WebSocket message, a whole JSON body) and knows nothing else of
the API. Both sides import this module and never each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "Document",
    "DocumentKind",
    "Encoder",
    "StreamEncoder",
    "WholeEncoder",
    "json_document",
]

E = TypeVar("E", contravariant=True)

#: ``event``: a part of the response; ``error``: the response failed and ends here;
#: ``end``: the response is complete (the API's terminator, e.g. OpenAI's ``[DONE]``).
DocumentKind = Literal["event", "error", "end"]


@dataclass(slots=True)
class Document:
    """One piece of a response, already serialized.

    ``data`` is JSON text on one line (compact JSON never holds a raw line break), or for an
    ``end`` document the API's terminator as SSE carries it (``[DONE]``; empty: none; or the
    API's own last event, a JSON object), which other transports replace by, or send before,
    their own end marker. ``event`` names the document for APIs
    that type their events (SSE ``event:``); ``id`` positions it in a resumable stream (SSE
    ``id:``). Not frozen: one is built per token, and a frozen dataclass pays a
    ``setattr`` per field; treat it as immutable all the same.
    """

    data: bytes
    kind: DocumentKind = "event"
    event: str | None = None
    id: str | None = None


def json_document(payload: Any, kind: DocumentKind = "event") -> Document:
    """``payload`` as compact UTF-8 JSON: one line (JSON escapes every line break), and no
    ``NaN`` or ``Infinity``, which JSON lacks (ValueError)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Document(text.encode(), kind)


class StreamEncoder(Protocol[E]):
    """Encodes one streamed response."""

    def opening(self) -> Sequence[Document]:
        """Documents that go out with the headers, before any event."""
        ...

    def encode(self, event: E) -> Sequence[Document]:
        """Documents for one event, possibly none; after an ``end`` or ``error`` document
        the response is complete."""
        ...

    def error(self, message: str) -> Document:
        """An ``error`` document for a failure on the server's side after the response
        started (``message`` is client-safe)."""
        ...


class WholeEncoder(Protocol[E]):
    """Encodes one response answered at once."""

    def whole(self, events: Sequence[E]) -> Document:
        """The response body for every event of the response, in order.

        :raises stream.errors.APIError: the events end in a failure the API reports with an
            error status (a passed deadline, a cancelled or failed generation).
        """
        ...


class Encoder(StreamEncoder[E], WholeEncoder[E], Protocol[E]):
    """Both: an adapter's encoder serves either kind of response."""
