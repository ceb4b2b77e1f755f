"""OpenAI response shapes: streamed chunks and whole responses, chat and legacy completions."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

from model.events import Delta, Event, Finished, Usage

from .errors import error_object
from .sse import DONE, data_frame

__all__ = ["SERVER_ENDS", "Shaper", "usage_object"]

Kind = Literal["chat", "completion"]

#: Engine finishes that are errors to a client: (default message, type, code). ``cancelled``
#: only reaches a client still listening when the server ended the generation.
SERVER_ENDS: dict[str, tuple[str, str, str | None]] = {
    "cancelled": ("the generation was cancelled by the server", "server_error", None),
    "deadline": ("the request deadline passed", "timeout", "deadline_exceeded"),
    "error": ("internal error while generating", "server_error", None),
}


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


class Shaper:
    """Builds every object of one response (id, created and model fixed per response)."""

    def __init__(self, kind: Kind, model: str, *, include_usage: bool = False) -> None:
        self.kind = kind
        self.model = model
        self.include_usage = include_usage
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.id = f"{prefix}-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self._object = "chat.completion.chunk" if kind == "chat" else "text_completion"
        # A text chunk is the same bytes around a JSON string each time: build them once,
        # leaving one json.dumps per token on the hot path.
        marker = "\x00"
        head, tail = data_frame(self._chunk(self._choice(marker, None))).split(
            json.dumps(marker).encode()
        )
        self._text_head, self._text_tail = head, tail

    # -- streamed ---------------------------------------------------------------------

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self._object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [choice],
        }
        if self.include_usage:
            # The API reference: with include_usage every other chunk has a null usage.
            chunk["usage"] = None
        return chunk

    def _choice(self, text: str | None, finish: str | None, *, role: bool = False) -> Any:
        if self.kind == "completion":
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def opening(self) -> bytes:
        """Sent with the headers: chat streams announce the role before any token."""
        if self.kind != "chat":
            return b""
        return data_frame(self._chunk(self._choice("", None, role=True)))

    def frame(self, event: Event) -> tuple[bytes, bool]:
        """SSE bytes for one engine event, and whether the stream is complete."""
        if isinstance(event, Delta):
            if not event.text:
                return b"", False
            text = json.dumps(event.text, ensure_ascii=False).encode()
            return self._text_head + text + self._text_tail, False
        if event.reason in SERVER_ENDS:
            default, kind, code = SERVER_ENDS[event.reason]
            return data_frame(error_object(event.message or default, kind, code=code)), True
        body = data_frame(
            self._chunk(self._choice(None if self.kind == "chat" else "", event.reason))
        )
        if self.include_usage:
            usage_chunk = self._chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = usage_object(event.usage)
            body += data_frame(usage_chunk)
        return body + DONE, True

    # -- whole ------------------------------------------------------------------------

    def response(self, events: list[Event]) -> dict[str, Any]:
        """The non-streamed object; raises nothing, callers check for a server end first."""
        text = "".join(e.text for e in events if isinstance(e, Delta))
        finished = next(e for e in reversed(events) if isinstance(e, Finished))
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finished.reason,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finished.reason}
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [choice],
            "usage": usage_object(finished.usage),
        }
