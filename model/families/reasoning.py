"""Splitting a reasoning block off the front of an answer, streamed.

A reasoning model writes its thoughts first, between an open and a close marker (``<think>``
and ``</think>``; Magistral's ``[THINK]`` and ``[/THINK]``), then its answer. Some templates
open the block themselves at the end of the prompt (Qwen3.5, DeepSeek-R1, QwQ): then the output
starts inside it. Rules:

- The block counts only at the start of the output (after whitespace); an open marker later
  on is answer text, as is a close marker outside a block.
- The reasoning is trimmed of whitespace at both ends, and the answer of the whitespace that
  follows the close marker (templates write ``</think>\\n\\n``).
- An output that ends inside the block is all reasoning; a partial marker at the end of the
  output is markup and is dropped.
- Granite wraps the answer after its thoughts in ``<response>...</response>``: with
  ``answer_open`` / ``answer_close`` set, those tags are dropped from the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .markup import WHITESPACE, partial_suffix
from .pieces import ContentText, ReasoningText

__all__ = ["THINK", "ReasoningMarkers", "ReasoningSplitter"]


@dataclass(frozen=True, slots=True)
class ReasoningMarkers:
    """How a family marks its reasoning block (see the module notes)."""

    open: str
    close: str
    answer_open: str = ""
    answer_close: str = ""

    def open_at_end(self, prompt: str) -> bool:
        """Whether ``prompt`` (the rendered prompt text) ends inside a reasoning block."""
        return prompt.rfind(self.open) > max(-1, prompt.rfind(self.close))

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(m for m in (self.open, self.close, self.answer_open, self.answer_close) if m)


THINK = ReasoningMarkers("<think>", "</think>")

_State = Literal["start", "think", "after", "answer"]


class ReasoningSplitter:
    """Streams output into reasoning and answer text (``ContentText``: the answer, still to be
    searched for calls). ``inside``: the prompt opened the block (see
    :meth:`ReasoningMarkers.open_at_end`)."""

    def __init__(self, markers: ReasoningMarkers, *, inside: bool = False) -> None:
        self._markers = markers
        self._state: _State = "think" if inside else "start"
        self._fresh = True  # nothing of the reasoning sent yet: leading whitespace is dropped
        self._buffer = ""

    @property
    def inside(self) -> bool:
        """Whether the text so far ends inside the reasoning block."""
        return self._state == "think"

    def push(self, text: str) -> list[ContentText | ReasoningText]:
        self._buffer += text
        return self._run(final=False, truncated=False)

    def finish(self, *, truncated: bool = False) -> list[ContentText | ReasoningText]:
        return self._run(final=True, truncated=truncated)

    def _run(self, *, final: bool, truncated: bool) -> list[ContentText | ReasoningText]:
        out: list[ContentText | ReasoningText] = []
        markers = self._markers
        while True:
            buffer = self._buffer
            if self._state == "start":
                rest = buffer.lstrip(WHITESPACE)
                if rest.startswith(markers.open):
                    self._buffer, self._state = rest[len(markers.open) :], "think"
                    continue
                undecided = not rest or markers.open.startswith(rest)
                if undecided and not final:
                    return out
                if undecided and truncated:
                    self._buffer = ""  # whitespace, or a marker cut off
                    return out
                opening = markers.answer_open
                opens_answer = bool(opening) and (
                    rest.startswith(opening) or (bool(rest) and opening.startswith(rest))
                )
                self._state = "after" if opens_answer else "answer"
                continue
            if self._state == "think":
                end = buffer.find(markers.close)
                if end >= 0:
                    self._reason(out, buffer[:end].rstrip(WHITESPACE))
                    self._buffer, self._state = buffer[end + len(markers.close) :], "after"
                    continue
                held = partial_suffix(buffer, (markers.close,))
                if final:
                    text = buffer[: len(buffer) - held] if truncated else buffer
                    self._reason(out, text.rstrip(WHITESPACE))
                    self._buffer = ""
                    return out
                text = buffer[: len(buffer) - held].rstrip(WHITESPACE)
                self._reason(out, text)
                self._buffer = buffer[len(text) :]
                return out
            if self._state == "after":
                rest = buffer.lstrip(WHITESPACE)
                opening = markers.answer_open
                if opening and rest.startswith(opening):
                    rest = rest[len(opening) :].lstrip(WHITESPACE)
                elif (not rest or (opening and opening.startswith(rest))) and not final:
                    self._buffer = rest
                    return out
                elif opening and rest and opening.startswith(rest) and truncated:
                    rest = ""
                self._buffer, self._state = rest, "answer"
                continue
            return self._answer(out, final, truncated)

    def _reason(self, out: list[ContentText | ReasoningText], text: str) -> None:
        if self._fresh:
            text = text.lstrip(WHITESPACE)
        if text:
            out.append(ReasoningText(text))
            self._fresh = False

    def _answer(
        self, out: list[ContentText | ReasoningText], final: bool, truncated: bool
    ) -> list[ContentText | ReasoningText]:
        buffer, closing = self._buffer, self._markers.answer_close
        held = 0
        if closing:
            buffer = buffer.replace(closing, "")
            held = partial_suffix(buffer, (closing,))
            if final:
                buffer = buffer[: len(buffer) - held] if truncated else buffer
                held = 0
        text = buffer[: len(buffer) - held]
        if text:
            out.append(ContentText(text))
        self._buffer = buffer[len(buffer) - held :]
        return out
