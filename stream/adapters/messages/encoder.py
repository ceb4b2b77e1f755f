"""Engine events as Anthropic ``message`` objects and Messages API stream events.

A stream is ``message_start``; per content block ``content_block_start``,
``content_block_delta`` (``text_delta``; ``input_json_delta`` with ``partial_json`` for a
``tool_use`` block; ``thinking_delta`` for a ``thinking`` block, then one ``signature_delta``)
and ``content_block_stop``; then ``message_delta`` (``stop_reason``,
``stop_sequence``, usage) and ``message_stop``. A failure after the start is an ``error``
event in Anthropic's error shape, and the stream ends.

Deviations: ``message_start`` reports the whole prompt as ``input_tokens`` (which tokens the
KV cache already held is known only once the engine placed the request); ``message_delta``
then carries the final ``input_tokens`` and ``cache_read_input_tokens``, whose sum is the
prompt, as in Anthropic's usage. Tool-use ids are ``toolu_`` and 24 hex digits. A thinking
block's ``signature`` is empty: nothing is signed, and thinking blocks sent back are dropped
unchecked (:mod:`.request`). Reasoning tokens are not counted apart (Anthropic's usage has no
field for them).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from model.events import Delta, Event, Finished, ToolCallDelta, Usage
from stream.documents import Document, json_document
from stream.errors import APIError, DeadlineExceeded, Unavailable

from .errors import error_payload

__all__ = ["PING", "MessagesEncoder", "usage_object"]

#: The heartbeat of a Messages API stream.
PING = Document(b'{"type":"ping"}', event="ping")

#: The engine's server ends: (client-safe default message, the error type of a stream's
#: ``error`` event, the error class of a whole answer).
_SERVER_ENDS: dict[str, tuple[str, str, type[APIError]]] = {
    "cancelled": ("the generation was cancelled by the server", "overloaded_error", Unavailable),
    "deadline": ("the request deadline passed", "timeout_error", DeadlineExceeded),
    "error": ("internal error while generating", "api_error", APIError),
}


def usage_object(usage: Usage) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` excludes the tokens read from the KV cache."""
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


def _tool_use_id(call_id: str) -> str:
    return "toolu_" + call_id.rpartition("_")[2]


def _event(name: str, payload: dict[str, Any], kind: Any = "event") -> Document:
    document = json_document({"type": name, **payload}, kind)
    document.event = name
    return document


class MessagesEncoder:
    """Every document of one Messages API response (see the module notes).

    ``input_tokens``: the prompt's length; ``stop_sequences``: the client's, so that a
    template's own stop strings end a turn as ``end_turn``; ``thinking``: reasoning becomes
    thinking blocks with its text (``shown``) or without (``omitted``), or is dropped.
    """

    def __init__(
        self,
        model: str,
        *,
        input_tokens: int,
        stop_sequences: Sequence[str],
        thinking: Literal["shown", "omitted", "none"] = "none",
    ) -> None:
        self.model = model
        self.thinking = thinking
        self.id = f"msg_{secrets.token_hex(12)}"
        self._input_tokens = input_tokens
        self._stop_sequences = frozenset(stop_sequences)
        self._index = -1
        self._open: str | None = None  # the type of the block being streamed

    def _message(self, content: list[dict[str, Any]], finished: Finished | None) -> dict[str, Any]:
        reason, sequence = self._stop_reason(finished) if finished else (None, None)
        usage = Usage(self._input_tokens, 0) if finished is None else finished.usage
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": self.model,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage_object(usage),
        }

    def _stop_reason(self, finished: Finished) -> tuple[str, str | None]:
        if finished.reason == "length":
            return "max_tokens", None
        if finished.reason == "tool_calls":
            return "tool_use", None
        if finished.stop_sequence in self._stop_sequences:
            return "stop_sequence", finished.stop_sequence
        return "end_turn", None

    # -- streamed ---------------------------------------------------------------------

    def opening(self) -> Sequence[Document]:
        return [_event("message_start", {"message": self._message([], None)})]

    def _start(self, block: dict[str, Any]) -> list[Document]:
        documents = self._close()
        self._index += 1
        self._open = block["type"]
        documents.append(
            _event("content_block_start", {"index": self._index, "content_block": block})
        )
        return documents

    def _close(self) -> list[Document]:
        if self._open is None:
            return []
        documents = []
        if self._open == "thinking":
            documents.append(self._delta({"type": "signature_delta", "signature": ""}))
        self._open = None
        documents.append(_event("content_block_stop", {"index": self._index}))
        return documents

    def _thinking(self, text: str) -> list[Document]:
        if self.thinking == "none":
            return []
        documents = [] if self._open == "thinking" else self._start(_thinking_block())
        if self.thinking == "shown":
            documents.append(self._delta({"type": "thinking_delta", "thinking": text}))
        return documents

    def _delta(self, delta: dict[str, Any]) -> Document:
        return _event("content_block_delta", {"index": self._index, "delta": delta})

    def encode(self, event: Event) -> Sequence[Document]:
        if isinstance(event, Delta):
            documents = self._thinking(event.reasoning) if event.reasoning else []
            if not event.text:
                return documents
            if self._open != "text":
                documents += self._start({"type": "text", "text": ""})
            documents.append(self._delta({"type": "text_delta", "text": event.text}))
            return documents
        if isinstance(event, ToolCallDelta):
            documents = []
            if event.id is not None:
                block = {
                    "type": "tool_use",
                    "id": _tool_use_id(event.id),
                    "name": event.name or "",
                    "input": {},
                }
                documents = self._start(block)
            if event.arguments:
                documents.append(
                    self._delta({"type": "input_json_delta", "partial_json": event.arguments})
                )
            return documents
        if event.reason in _SERVER_ENDS:
            default, error_type, _ = _SERVER_ENDS[event.reason]
            return (_error(error_type, event.message or default),)
        reason, sequence = self._stop_reason(event)
        documents = self._close()
        documents.append(
            _event(
                "message_delta",
                {
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": usage_object(event.usage),
                },
            )
        )
        documents.append(_event("message_stop", {}, "end"))
        return documents

    def error(self, message: str) -> Document:
        return _error("api_error", message)

    # -- whole ------------------------------------------------------------------------

    def whole(self, events: Sequence[Event]) -> Document:
        """The ``message`` object.

        :raises APIError: the generation ended for a server reason: 503 when cancelled, 504
            past its deadline, 500 on an engine failure.
        """
        finished = events[-1] if events else None
        if not isinstance(finished, Finished):
            raise APIError("the generation ended unexpectedly")
        if finished.reason in _SERVER_ENDS:
            default, _, error = _SERVER_ENDS[finished.reason]
            raise error(finished.message or default)
        content: list[dict[str, Any]] = []
        arguments: list[str] = []
        for event in events:
            if isinstance(event, Delta) and event.reasoning and self.thinking != "none":
                if not content or content[-1]["type"] != "thinking":
                    content.append(_thinking_block())
                if self.thinking == "shown":
                    content[-1]["thinking"] += event.reasoning
            if isinstance(event, Delta) and event.text:
                if not content or content[-1]["type"] != "text":
                    content.append({"type": "text", "text": ""})
                content[-1]["text"] += event.text
            elif isinstance(event, ToolCallDelta):
                if event.id is not None:
                    block = {"type": "tool_use", "id": _tool_use_id(event.id)}
                    content.append({**block, "name": event.name or "", "input": {}})
                    arguments.append("")
                arguments[-1] += event.arguments
        calls = (block for block in content if block["type"] == "tool_use")
        for block, text in zip(calls, arguments, strict=True):
            block["input"] = _input(text)
        return json_document(self._message(content, finished))


def _thinking_block() -> dict[str, Any]:
    return {"type": "thinking", "thinking": "", "signature": ""}


def _error(error_type: str, message: str) -> Document:
    document = json_document(error_payload(error_type, message), "error")
    document.event = "error"
    return document


def _input(arguments: str) -> Any:
    # The tool-call parser hands on complete JSON objects; anything else is kept readable.
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}
