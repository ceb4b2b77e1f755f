"""Finding tool calls in model output, streamed or whole, in the generic format of
:mod:`model.tools`: ``<tool_call>{"name": "<function>", "arguments": {...}}</tool_call>``.

A call is recognised once its head is complete: ``<tool_call>``, ``{``, ``"name"``, ``:``, a
valid (and, when names are given, known) function name, ``,``, ``"arguments"`` (or
``"parameters"``), ``:`` and the ``{`` opening the arguments, with up to 32 whitespace
characters between tokens. Until then the text is held back; once it cannot be a head, it is
content. From then on it is a call, whatever follows: the argument text streams out as it
arrives (so a client sees the name first, then argument fragments) and ends where its braces
balance, before a ``<`` outside a JSON string, or at the end of the output (then truncated, as
OpenAI's arguments can be). After it, ``}``, ``</tool_call>`` and the whitespace around them
are dropped when present, so a forced-call grammar's output is nothing but calls; anything
else there is content again. No other text is ever dropped: an unfinished head, a stray
``<tool`` or a block of the wrong shape is content.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from .events import ToolCallDelta

__all__ = [
    "CLOSE_TAG",
    "OPEN_TAG",
    "ContentText",
    "ToolCall",
    "ToolCallArguments",
    "ToolCallParser",
    "ToolCallStart",
    "ToolEvent",
    "join_tool_calls",
    "new_call_id",
]

OPEN_TAG: Final = "<tool_call>"
CLOSE_TAG: Final = "</tool_call>"
_NAME_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_-")
_WHITESPACE: Final = " \t\r\n"
_MAX_WS: Final = 32
_WS, _FUNCTION, _ARGS = object(), object(), object()
_HEAD: Final = (
    (OPEN_TAG,), _WS, ("{",), _WS, ('"name"',), _WS, (":",), _WS, ('"',), _FUNCTION, ('"',), _WS,
    (",",), _WS, ('"arguments"', '"parameters"'), _WS, (":",), _WS, _ARGS,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A whole call, as a non-streamed response carries it."""

    id: str
    name: str
    #: JSON text as the model wrote it (OpenAI's ``function.arguments``).
    arguments: str


@dataclass(frozen=True, slots=True)
class ContentText:
    """Output text that is not part of a call."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A call begins; ``index`` counts the calls of one output from 0."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArguments:
    """The next piece of call ``index``'s arguments (JSON text)."""

    index: int
    fragment: str


ToolEvent = ContentText | ToolCallStart | ToolCallArguments


def new_call_id() -> str:
    """``call_`` and 24 random hex digits."""
    return f"call_{secrets.token_hex(12)}"


def join_tool_calls(parts: Iterable[ToolCallDelta]) -> dict[int, list[ToolCall]]:
    """Whole calls per choice from their streamed parts, as a non-streamed answer carries
    them: each call's start (``id`` and ``name``), then its argument fragments in order."""
    calls: dict[int, list[list[str]]] = {}
    for part in parts:
        choice = calls.setdefault(part.index, [])
        if part.id is not None:
            choice.append([part.id, part.name or "", ""])
        choice[part.call][2] += part.arguments
    return {index: [ToolCall(*call) for call in found] for index, found in calls.items()}


class ToolCallParser:
    """Splits streamed output into content and calls in the generic format (module notes).

    ``names``: the functions that may be called (``None``: any valid name). ``new_id`` makes
    call ids (``call_`` and 24 hex digits by default).
    """

    def __init__(
        self, names: Collection[str] | None = None, *, new_id: Callable[[], str] = new_call_id
    ) -> None:
        self._names = None if names is None else frozenset(names)
        self._new_id = new_id
        self._buffer = ""
        self._state: Literal["content", "head", "arguments", "tail"] = "content"
        self._index = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def push(self, text: str) -> list[ToolEvent]:
        """Events for ``text``, the next piece of output; text that may begin a call is held."""
        self._buffer += text
        return self._run(final=False)

    def finish(self) -> list[ToolEvent]:
        """Events for whatever was held, at the end of the output."""
        return self._run(final=True)

    def _run(self, *, final: bool) -> list[ToolEvent]:
        events: list[ToolEvent] = []

        def content(text: str) -> None:
            if text:
                events.append(ContentText(text))

        while True:
            buffer = self._buffer
            if self._state == "content":
                start = buffer.find(OPEN_TAG)
                if start < 0:
                    keep = 0 if final else _partial_suffix(buffer, OPEN_TAG)
                    content(buffer[: len(buffer) - keep])
                    self._buffer = buffer[len(buffer) - keep :]
                    return events
                content(buffer[:start])
                self._buffer, self._state = buffer[start:], "head"
            elif self._state == "head":
                end, name = _scan_head(buffer, self._names)
                if end == 0 and not final:
                    return events
                if end <= 0:  # not a call after all: the tag is text, look on after it
                    content(OPEN_TAG)
                    self._buffer, self._state = buffer[len(OPEN_TAG) :], "content"
                    continue
                events.append(ToolCallStart(self._index, self._new_id(), name))
                self._buffer, self._state = buffer[end:], "arguments"
                self._depth, self._in_string, self._escaped = 0, False, False
            elif self._state == "arguments":
                used, done = self._scan_arguments(buffer)
                if used:
                    events.append(ToolCallArguments(self._index, buffer[:used]))
                self._buffer = buffer[used:]
                if not done and not final:
                    return events
                self._state = "tail"
            else:
                used, done = _scan_tail(buffer)
                if not done and not final:
                    return events
                self._buffer, self._state = buffer[used:], "content"
                self._index += 1

    def _scan_arguments(self, buffer: str) -> tuple[int, bool]:
        for i, char in enumerate(buffer):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth <= 0:
                    return i + 1, True
            elif char == "<":  # never outside a JSON string: the arguments broke off here
                return i, True
        return len(buffer), False


def _scan_head(buffer: str, names: frozenset[str] | None) -> tuple[int, str]:
    # (-1, "") cannot begin a call; (0, "") could still; (end, name): a call's head, the
    # arguments starting at ``end``.
    pos, name = 0, ""
    for step in _HEAD:
        if step is _WS:
            end = pos
            while end < len(buffer) and buffer[end] in _WHITESPACE:
                end += 1
            if end - pos > _MAX_WS:
                return -1, ""
            if end == len(buffer):
                return 0, ""
            pos = end
        elif step is _FUNCTION:
            end = pos
            while end < len(buffer) and buffer[end] in _NAME_CHARS:
                end += 1
            name = buffer[pos:end]
            if len(name) > 64 or (names is not None and not any(n.startswith(name) for n in names)):
                return -1, ""
            if end == len(buffer):
                return 0, ""
            if not name or (names is not None and name not in names):
                return -1, ""
            pos = end
        elif step is _ARGS:
            return (pos, name) if buffer[pos] == "{" else (-1, "")
        else:
            assert isinstance(step, tuple)
            rest = buffer[pos : pos + max(map(len, step))]
            literal = next((lit for lit in step if rest.startswith(lit)), None)
            if literal is None:
                return (0, "") if any(lit.startswith(rest) for lit in step) else (-1, "")
            pos += len(literal)
    raise AssertionError("unreachable: the head ends with the arguments")


def _scan_tail(buffer: str) -> tuple[int, bool]:
    # After the arguments: whitespace, the call object's "}", whitespace, the closing tag and
    # whitespace. Returns how much of that to drop, and whether that is settled.
    pos = 0
    for part in (None, "}", None, CLOSE_TAG, None):
        if part is None:
            end = pos
            while end < len(buffer) and buffer[end] in _WHITESPACE and end - pos <= _MAX_WS:
                end += 1
            if end - pos > _MAX_WS:
                return pos, True
            if end == len(buffer):
                return end, False
            pos = end
        elif buffer.startswith(part, pos):
            pos += len(part)
        elif part.startswith(buffer[pos:]):
            return pos, False
        elif part == CLOSE_TAG:
            return pos, True
    return pos, True


def _partial_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
