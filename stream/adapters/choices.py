"""OpenAI's choice-based responses, shared by chat and legacy completions.

One :class:`ChoicesEncoder` per response fixes its id, ``created`` and model, and turns
engine events into documents: a streamed chunk per event (``chat.completion.chunk`` /
``text_completion``), the usage chunk when asked for, ``[DONE]`` once every choice finished;
or the whole object. The chat and completion encoders fill in how a choice looks.

Deviation: legacy ``logprobs.text_offset`` counts characters from the start of the
completion (Sluice never echoes the prompt).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from model.events import Delta, Event, Finished, TokenChoice, TokenLogprobs, ToolCallDelta, Usage
from stream.documents import Document, json_document
from stream.errors import APIError, DeadlineExceeded, Unavailable, error_object

__all__ = ["SERVER_ENDS", "ChoicesEncoder", "logprob_entry", "usage_object"]

#: Engine finishes that are errors to a client: (default message, type, code). ``cancelled``
#: only reaches a client still listening when the server ended the generation.
SERVER_ENDS: dict[str, tuple[str, str, str | None]] = {
    "cancelled": ("the generation was cancelled by the server", "server_error", None),
    "deadline": ("the request deadline passed", "timeout", "deadline_exceeded"),
    "error": ("internal error while generating", "server_error", None),
}
#: The HTTP error a whole (non-streamed) answer gets for each server end.
_WHOLE_ERRORS: dict[str, type[APIError]] = {
    "cancelled": Unavailable,
    "deadline": DeadlineExceeded,
    "error": APIError,
}
_DONE = Document(b"[DONE]", "end")
# The stdlib's C encoder for one JSON string: json.dumps(text, ensure_ascii=False) without
# building a JSONEncoder per call (the token path's largest cost).
_json_string = json.encoder.encode_basestring


def usage_object(usage: Usage) -> dict[str, Any]:
    shaped: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
    if usage.reasoning_tokens:
        shaped["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return shaped


def logprob_entry(choice: TokenChoice) -> dict[str, Any]:
    return {"token": choice.text, "logprob": choice.logprob, "bytes": list(choice.bytes)}


class ChoicesEncoder:
    """Builds every document of one response (see the module notes).

    ``n`` choices; ``logprobs``: whether they carry log-probabilities; ``include_usage``:
    ``stream_options.include_usage``.
    """

    #: Prefix of the response id.
    id_prefix: ClassVar[str]
    #: ``object`` of a streamed chunk and of the whole response.
    chunk_object: ClassVar[str]
    whole_object: ClassVar[str]

    def __init__(
        self, model: str, *, include_usage: bool = False, n: int = 1, logprobs: bool = False
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self.n = n
        self.logprobs = logprobs
        self.id = f"{self.id_prefix}-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self._finished: dict[int, Finished] = {}
        # A plain text chunk is the same bytes around a JSON string each time: build them
        # once, leaving one string encoding per token on the hot path.
        marker = "\x00"
        sample = json_document(self._chunk(self._choice(0, marker, None))).data
        self._text_head, self._text_tail = sample.split(_json_string(marker).encode())

    # -- what a choice looks like (the subclasses') ----------------------------------

    def _choice(
        self,
        index: int,
        text: str | None,
        finish: str | None,
        *,
        role: bool = False,
        logprobs: tuple[TokenLogprobs, ...] = (),
    ) -> dict[str, Any]:
        """One choice of a chunk: ``text`` None is no text at all; ``role`` announces it."""
        raise NotImplementedError

    def _tool_call(self, event: ToolCallDelta) -> dict[str, Any]:
        """The chunk choice carrying part of a tool call."""
        raise NotImplementedError(f"{type(self).__name__} has no tool calls")

    def _whole_choice(
        self, index: int, events: Sequence[Event], finished: Finished
    ) -> dict[str, Any]:
        """Choice ``index`` of the whole response, from every event of the response."""
        raise NotImplementedError

    def _reasoning(self, event: Delta) -> dict[str, Any] | None:
        """The chunk choice of a delta with reasoning text; None: the API shows none."""
        return None

    # -- pieces -----------------------------------------------------------------------

    def _chunk(self, *choices: dict[str, Any]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self.chunk_object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": list(choices),
        }
        if self.include_usage:
            # The API reference: with include_usage every other chunk has a null usage.
            chunk["usage"] = None
        return chunk

    def _usage(self) -> Usage:
        finished = list(self._finished.values())
        return Usage(
            finished[0].usage.prompt_tokens,
            sum(f.usage.completion_tokens for f in finished),
            finished[0].usage.cached_tokens,
            sum(f.usage.reasoning_tokens for f in finished),
        )

    # -- streamed ---------------------------------------------------------------------

    def opening(self) -> Sequence[Document]:
        """Sent with the headers; nothing unless the API announces its choices."""
        return ()

    def encode(self, event: Event) -> Sequence[Document]:
        """The documents for one engine event; the last is ``[DONE]`` or an error."""
        if type(event) is Delta:
            if event.reasoning:
                shaped = self._reasoning(event)
                return (json_document(self._chunk(shaped)),) if shaped else ()
            if event.index or self.logprobs:
                if not event.text and not event.logprobs:
                    return ()  # a token whose text is still held back
                choice = self._choice(event.index, event.text, None, logprobs=event.logprobs)
                return (json_document(self._chunk(choice)),)
            if not event.text:
                return ()
            text = _json_string(event.text).encode()
            return (Document(self._text_head + text + self._text_tail),)
        if isinstance(event, ToolCallDelta):
            return (json_document(self._chunk(self._tool_call(event))),)
        assert isinstance(event, Finished)
        if event.reason in SERVER_ENDS:
            default, kind, code = SERVER_ENDS[event.reason]
            return (
                json_document(error_object(event.message or default, kind, code=code), "error"),
            )
        self._finished[event.index] = event
        last = self._choice(event.index, None, event.reason)
        documents = [json_document(self._chunk(last))]
        if len(self._finished) < self.n:
            return documents
        if self.include_usage:
            usage_chunk = self._chunk()
            usage_chunk["usage"] = usage_object(self._usage())
            documents.append(json_document(usage_chunk))
        documents.append(_DONE)
        return documents

    def error(self, message: str) -> Document:
        return json_document(error_object(message, "server_error"), "error")

    # -- whole ------------------------------------------------------------------------

    def whole(self, events: Sequence[Event]) -> Document:
        """The whole response object.

        :raises APIError: the generation ended for a server reason: 503 when cancelled, 504
            past its deadline, 500 on an engine failure.
        """
        finished = events[-1] if events else None
        if isinstance(finished, Finished) and finished.reason in SERVER_ENDS:
            default, _, code = SERVER_ENDS[finished.reason]
            raise _WHOLE_ERRORS[finished.reason](finished.message or default, code=code)
        choices = []
        for index in range(self.n):
            end = next(e for e in events if isinstance(e, Finished) and e.index == index)
            self._finished[index] = end
            choices.append(self._whole_choice(index, events, end))
        return json_document(
            {
                "id": self.id,
                "object": self.whole_object,
                "created": self.created,
                "model": self.model,
                "system_fingerprint": None,
                "choices": choices,
                "usage": usage_object(self._usage()),
            }
        )
