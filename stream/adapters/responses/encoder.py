"""Engine events -> the Responses API's ``response`` object and its typed stream events.

A stream follows the OpenAI API reference's *Streaming events*: ``response.created`` and
``response.in_progress`` open it; each output item is announced
(``response.output_item.added``), filled (a ``reasoning`` item through
``response.reasoning_text.delta``; a ``message`` through ``response.content_part.added`` and
``response.output_text.delta``; a ``function_call`` through
``response.function_call_arguments.delta``), closed (``*.done`` events up to
``response.output_item.done``); ``response.completed``, ``response.incomplete`` (the output
limit) or ``response.failed`` (a server end) closes the stream, with no ``[DONE]`` after it.
Every event carries the SSE ``event:`` name and a ``sequence_number`` from 0, which a
resumable transport can use to replay the events after one
(``GET /v1/responses/{id}?stream=true&starting_after=N``).

The model's reasoning (read by its family) is a ``reasoning`` item before the answer: its
text in ``content`` as one ``reasoning_text`` part, ``summary`` empty (Sluice writes no
summaries), no ``encrypted_content``; its tokens are counted in
``usage.output_tokens_details.reasoning_tokens``.

A whole response is the same events folded into the final ``response`` object, so both
answers agree. A completed or incomplete response is handed to ``on_done`` (the store).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from model.events import Delta, Event, Finished, ToolCallDelta, Usage
from stream.documents import Document, json_document
from stream.errors import APIError, DeadlineExceeded, Unavailable

from ..choices import SERVER_ENDS

__all__ = ["ResponsesEncoder", "usage_object"]

_END = Document(b"", "end")  # no sentinel: the final response event ends the stream
_DELTA = "response.output_text.delta"
_DELTA_HEAD = b'{"type":"response.output_text.delta","sequence_number":'
_DELTA_TAIL = b',"logprobs":[]}'
# The stdlib's C encoder for one JSON string, as json.dumps(text, ensure_ascii=False) writes it.
_json_string = json.encoder.encode_basestring


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


class ResponsesEncoder:
    """Builds every document of one response (see the module notes).

    ``echo``: the request fields the response object repeats; ``on_done``: called with the
    final response object once it is completed or incomplete (not when it fails).
    """

    def __init__(
        self,
        model: str,
        echo: Mapping[str, Any],
        *,
        on_done: Callable[[dict[str, Any]], None] = lambda response: None,
    ) -> None:
        self.model = model
        self.id = f"resp_{secrets.token_hex(24)}"
        self.created_at = int(time.time())
        self._echo = dict(echo)
        self._on_done = on_done
        self._sequence = 0
        #: Output items so far; the last may still be open.
        self.output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        #: Text or argument fragments of the open item.
        self._texts: list[str] = []
        self._final: dict[str, Any] | None = None
        self._delta_middle = b""

    # -- the response object ------------------------------------------------------------

    def response(
        self,
        status: str,
        *,
        usage: Usage | None = None,
        error: dict[str, Any] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        """The ``response`` object as it stands, with ``status``."""
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "completed_at": int(time.time()) if status == "completed" else None,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": None if incomplete is None else {"reason": incomplete},
            "model": self.model,
            "output": [dict(item) for item in self.output],
            **self._echo,
            "usage": None if usage is None else usage_object(usage),
        }

    # -- events -------------------------------------------------------------------------

    def _event(self, kind: str, payload: dict[str, Any]) -> Document:
        document = json_document({"type": kind, "sequence_number": self._sequence, **payload})
        document.event = kind
        self._sequence += 1
        return document

    def _start(self, item: dict[str, Any]) -> list[Document]:
        self.output.append(item)
        self._open = item
        index = len(self.output) - 1
        added = self._event("response.output_item.added", {"output_index": index, "item": item})
        if item["type"] != "message":
            return [added]
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            added,
            self._event(
                "response.content_part.added",
                {"item_id": item["id"], "output_index": index, "content_index": 0, "part": part},
            ),
        ]

    def _close(self, status: str) -> list[Document]:
        """Close the open item, if any, as ``completed`` or ``incomplete``."""
        item = self._open
        if item is None:
            return []
        self._open = None
        index = len(self.output) - 1
        place = {"item_id": item["id"], "output_index": index}
        documents = []
        if item["type"] == "reasoning":
            text = "".join(self._texts)
            item["content"] = [{"type": "reasoning_text", "text": text}]
            documents.append(
                self._event(
                    "response.reasoning_text.done", {**place, "content_index": 0, "text": text}
                )
            )
        elif item["type"] == "message":
            text = "".join(self._texts)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"] = [part]
            documents += [
                self._event(
                    "response.output_text.done",
                    {**place, "content_index": 0, "text": text, "logprobs": []},
                ),
                self._event(
                    "response.content_part.done", {**place, "content_index": 0, "part": part}
                ),
            ]
        else:
            item["arguments"] = "".join(self._texts)
            documents.append(
                self._event(
                    "response.function_call_arguments.done",
                    {**place, "name": item["name"], "arguments": item["arguments"]},
                )
            )
        item["status"] = status
        documents.append(
            self._event("response.output_item.done", {"output_index": index, "item": dict(item)})
        )
        return documents

    def opening(self) -> Sequence[Document]:
        """``response.created`` and ``response.in_progress``, before any token."""
        created = self.response("in_progress")
        return [
            self._event("response.created", {"response": created}),
            self._event("response.in_progress", {"response": created}),
        ]

    def encode(self, event: Event) -> Sequence[Document]:
        """The events for one engine event; the last ones end with the final response."""
        if isinstance(event, Delta):
            documents = self._reasoning(event.reasoning) if event.reasoning else []
            if not event.text:
                return documents  # reasoning only, or a token whose text is still held back
            if self._open is None or self._open["type"] != "message":
                documents += self._close("completed")
                item = {
                    "id": f"msg_{secrets.token_hex(24)}",
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
                documents += self._start(item)
                self._texts = []
                # Every text delta of this item is the same bytes around its sequence
                # number and text: build them once (the token path's cost).
                at = f'"item_id":"{item["id"]}","output_index":{len(self.output) - 1}'
                self._delta_middle = f',{at},"content_index":0,"delta":'.encode()
            self._texts.append(event.text)
            data = b"".join(
                (
                    _DELTA_HEAD,
                    str(self._sequence).encode(),
                    self._delta_middle,
                    _json_string(event.text).encode(),
                    _DELTA_TAIL,
                )
            )
            self._sequence += 1
            documents.append(Document(data, "event", _DELTA))
            return documents
        if isinstance(event, ToolCallDelta):
            documents = []
            if event.id is not None:  # a new call starts
                documents += self._close("completed")
                item = {
                    "id": f"fc_{secrets.token_hex(24)}",
                    "type": "function_call",
                    "status": "in_progress",
                    "call_id": event.id,
                    "name": event.name or "",
                    "arguments": "",
                }
                documents += self._start(item)
                self._texts = []
            if event.arguments:
                self._texts.append(event.arguments)
                place = {"item_id": self._open_id, "output_index": len(self.output) - 1}
                documents.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        {**place, "delta": event.arguments},
                    )
                )
            return documents
        return self._finish(event)

    def _reasoning(self, text: str) -> list[Document]:
        documents = []
        if self._open is None or self._open["type"] != "reasoning":
            documents += self._close("completed")
            item = {
                "id": f"rs_{secrets.token_hex(24)}",
                "type": "reasoning",
                "status": "in_progress",
                "summary": [],
                "content": [],
            }
            documents += self._start(item)
            self._texts = []
        self._texts.append(text)
        place = {"item_id": self._open_id, "output_index": len(self.output) - 1}
        documents.append(
            self._event(
                "response.reasoning_text.delta", {**place, "content_index": 0, "delta": text}
            )
        )
        return documents

    @property
    def _open_id(self) -> str:
        assert self._open is not None
        return str(self._open["id"])

    def _finish(self, event: Finished) -> list[Document]:
        if event.reason in SERVER_ENDS:
            default, _, code = SERVER_ENDS[event.reason]
            return self._failed(event.message or default, code or "server_error", event.usage)
        incomplete = event.reason == "length"
        documents = self._close("incomplete" if incomplete else "completed")
        status = "incomplete" if incomplete else "completed"
        final = self.response(
            status,
            usage=event.usage,
            incomplete="max_output_tokens" if incomplete else None,
        )
        self._final = final
        self._on_done(final)
        documents.append(self._event(f"response.{status}", {"response": final}))
        documents.append(_END)
        return documents

    def _failed(self, message: str, code: str, usage: Usage | None = None) -> list[Document]:
        documents = self._close("incomplete")
        return [*documents, self._failure(message, code, usage)]

    def _failure(self, message: str, code: str, usage: Usage | None = None) -> Document:
        failed = self.response("failed", usage=usage, error={"code": code, "message": message})
        document = self._event("response.failed", {"response": failed})
        document.kind = "error"
        return document

    def error(self, message: str) -> Document:
        """``response.failed`` for a failure after the stream started (an item still open
        stays ``in_progress``: one document, so no sequence number is skipped)."""
        return self._failure(message, "server_error")

    # -- whole ----------------------------------------------------------------------------

    def whole(self, events: Sequence[Event]) -> Document:
        """The final ``response`` object.

        :raises APIError: the generation ended for a server reason: 503 when cancelled, 504
            past its deadline, 500 on an engine failure (as the chat route answers them).
        """
        finished = events[-1] if events else None
        if not isinstance(finished, Finished):
            raise APIError("the generation ended unexpectedly")
        if finished.reason in SERVER_ENDS:
            default, _, code = SERVER_ENDS[finished.reason]
            raise _WHOLE_ERRORS[finished.reason](finished.message or default, code=code)
        for event in events:
            self.encode(event)
        assert self._final is not None
        return json_document(self._final)


_WHOLE_ERRORS: dict[str, type[APIError]] = {
    "cancelled": Unavailable,
    "deadline": DeadlineExceeded,
    "error": APIError,
}
