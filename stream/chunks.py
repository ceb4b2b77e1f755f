"""OpenAI response shapes: streamed chunks and whole responses, chat and legacy completions.

Deviation: legacy ``logprobs.text_offset`` counts characters from the start of the
completion (Sluice never echoes the prompt).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from typing import Any, Literal

from model.events import Delta, Event, Finished, TokenChoice, TokenLogprobs, ToolCallDelta, Usage

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


def _entry(choice: TokenChoice) -> dict[str, Any]:
    return {"token": choice.text, "logprob": choice.logprob, "bytes": list(choice.bytes)}


class Shaper:
    """Builds every object of one response (id, created and model fixed per response)."""

    def __init__(
        self,
        kind: Kind,
        model: str,
        *,
        include_usage: bool = False,
        n: int = 1,
        logprobs: bool = False,
    ) -> None:
        self.kind = kind
        self.model = model
        self.include_usage = include_usage
        self.n = n
        self.logprobs = logprobs
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.id = f"{prefix}-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self._object = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self._finished: dict[int, Finished] = {}
        self._offsets = [0] * n  # legacy text_offset, per choice
        # A plain text chunk is the same bytes around a JSON string each time: build them
        # once, leaving one json.dumps per token on the hot path.
        marker = "\x00"
        head, tail = data_frame(self._chunk(self._choice(0, marker, None))).split(
            json.dumps(marker).encode()
        )
        self._text_head, self._text_tail = head, tail

    # -- pieces -----------------------------------------------------------------------

    def _chunk(self, *choices: dict[str, Any]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self._object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": list(choices),
        }
        if self.include_usage:
            # The API reference: with include_usage every other chunk has a null usage.
            chunk["usage"] = None
        return chunk

    def _choice(
        self,
        index: int,
        text: str | None,
        finish: str | None,
        *,
        role: bool = False,
        logprobs: tuple[TokenLogprobs, ...] = (),
    ) -> dict[str, Any]:
        shaped = self._logprobs(index, logprobs) if self.logprobs else None
        if self.kind == "completion":
            return {"index": index, "text": text or "", "logprobs": shaped, "finish_reason": finish}
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return {"index": index, "delta": delta, "logprobs": shaped, "finish_reason": finish}

    def _logprobs(self, index: int, entries: tuple[TokenLogprobs, ...]) -> dict[str, Any]:
        if self.kind == "chat":
            content = [
                {**_entry(e.chosen), "top_logprobs": [_entry(t) for t in e.top]} for e in entries
            ]
            return {"content": content, "refusal": None}
        offsets = []
        for entry in entries:
            offsets.append(self._offsets[index])
            self._offsets[index] += len(entry.chosen.text)
        return {
            "tokens": [e.chosen.text for e in entries],
            "token_logprobs": [e.chosen.logprob for e in entries],
            "top_logprobs": [{t.text: t.logprob for t in e.top} for e in entries],
            "text_offset": offsets,
        }

    def _usage(self) -> Usage:
        finished = list(self._finished.values())
        return Usage(
            finished[0].usage.prompt_tokens,
            sum(f.usage.completion_tokens for f in finished),
            finished[0].usage.cached_tokens,
        )

    # -- streamed ---------------------------------------------------------------------

    def opening(self) -> bytes:
        """Sent with the headers: chat streams announce the role of each choice first."""
        if self.kind != "chat":
            return b""
        return b"".join(
            data_frame(self._chunk(self._choice(i, "", None, role=True))) for i in range(self.n)
        )

    def _tool_call_delta(self, event: ToolCallDelta) -> dict[str, Any]:
        call: dict[str, Any] = {"index": event.call}
        if event.id is not None:
            call.update(id=event.id, type="function")
        function: dict[str, Any] = {"arguments": event.arguments}
        if event.name is not None:
            function["name"] = event.name
        call["function"] = function
        delta = {"tool_calls": [call]}
        return {"index": event.index, "delta": delta, "logprobs": None, "finish_reason": None}

    def frame(self, event: Event) -> tuple[bytes, bool]:
        """SSE bytes for one engine event, and whether the stream is complete."""
        if isinstance(event, ToolCallDelta):
            return data_frame(self._chunk(self._tool_call_delta(event))), False
        if isinstance(event, Delta):
            if not event.text and not event.logprobs:
                return b"", False  # a token whose text is still held back
            if event.index or self.logprobs:
                choice = self._choice(event.index, event.text, None, logprobs=event.logprobs)
                return data_frame(self._chunk(choice)), False
            text = json.dumps(event.text, ensure_ascii=False).encode()
            return self._text_head + text + self._text_tail, False
        if event.reason in SERVER_ENDS:
            default, kind, code = SERVER_ENDS[event.reason]
            return data_frame(error_object(event.message or default, kind, code=code)), True
        self._finished[event.index] = event
        last = None if self.kind == "chat" else ""
        body = data_frame(self._chunk(self._choice(event.index, last, event.reason)))
        if len(self._finished) < self.n:
            return body, False
        if self.include_usage:
            usage_chunk = self._chunk()
            usage_chunk["usage"] = usage_object(self._usage())
            body += data_frame(usage_chunk)
        return body + DONE, True

    # -- whole ------------------------------------------------------------------------

    def response(self, events: list[Event]) -> dict[str, Any]:
        """The non-streamed object; callers check for a server end first."""
        choices = []
        for index in range(self.n):
            deltas = [e for e in events if isinstance(e, Delta) and e.index == index]
            finished = next(e for e in events if isinstance(e, Finished) and e.index == index)
            self._finished[index] = finished
            text = "".join(d.text for d in deltas)
            entries = tuple(entry for d in deltas for entry in d.logprobs)
            shaped = self._logprobs(index, entries) if self.logprobs else None
            if self.kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
                calls = _whole_calls(e for e in events if isinstance(e, ToolCallDelta))
                if calls.get(index):
                    message["tool_calls"] = calls[index]
                    message["content"] = text or None
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": shaped,
                        "finish_reason": finished.reason,
                    }
                )
            else:
                choices.append(
                    {
                        "index": index,
                        "text": text,
                        "logprobs": shaped,
                        "finish_reason": finished.reason,
                    }
                )
        return {
            "id": self.id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            "usage": usage_object(self._usage()),
        }


def _whole_calls(parts: Iterable[ToolCallDelta]) -> dict[int, list[dict[str, Any]]]:
    """Tool-call deltas reassembled per choice, as a non-streamed message carries them."""
    calls: dict[int, list[dict[str, Any]]] = {}
    for part in parts:
        choice = calls.setdefault(part.index, [])
        if part.id is not None:
            function = {"name": part.name, "arguments": ""}
            choice.append({"id": part.id, "type": "function", "function": function})
        choice[part.call]["function"]["arguments"] += part.arguments
    return calls
