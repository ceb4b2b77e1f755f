"""gpt-oss: OpenAI's harmony format, where channels separate reasoning, calls and the answer.

The template ends the prompt with ``<|start|>assistant``; the model then writes messages of a
header and a body: ``<|channel|>analysis<|message|>...<|end|>`` (reasoning), then
``<|start|>assistant<|channel|>final<|message|>...`` (the answer, ended by ``<|return|>``) or a
call, ``<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{...}``
ended by ``<|call|>`` (the recipient may also come before the channel). Routing:

- ``analysis`` -> reasoning; ``final`` -> content; ``commentary`` without a recipient (a
  preamble to the user) -> content;
- a message to ``functions.<name>`` of a known function -> a call, its body the arguments;
  to anything else (built-in ``browser`` or ``python`` tools, unknown functions) -> reasoning,
  since no client could run it;
- text before any header, when the model ignores the format, is content.

All these markers are special tokens. ``<|return|>`` and ``<|call|>`` are end-of-generation
tokens in llama.cpp's gpt-oss vocabulary, so the output normally ends there rather than
showing them: the end of the output ends the message (and the call). One call per answer.

History: the template renders one call per assistant turn (the history shape splits turns
with more, each followed by its result) and wants arguments as an object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from ..params import Grammar
from ..tools import Tool, ToolChoice
from .family import CallSyntax, Family, ForcedCalls, gbnf_literal, json_text, names_of
from .markup import WHITESPACE, partial_suffix
from .pieces import CallArgs, CallBegin, CallEnd, ContentText, ReasoningText, SyntaxEvent

__all__ = ["HARMONY", "Harmony"]

START: Final = "<|start|>"
END: Final = "<|end|>"
MESSAGE: Final = "<|message|>"
CHANNEL: Final = "<|channel|>"
CONSTRAIN: Final = "<|constrain|>"
RETURN: Final = "<|return|>"
CALL: Final = "<|call|>"
_CONSUMED_ENDS: Final = (END, RETURN, CALL)
_NEXT_HEADERS: Final = (START, CHANNEL)
_MAX_HEADER: Final = 256
_CHANNEL_NAME: Final = re.compile(re.escape(CHANNEL) + r"\s*(\w+)")
_RECIPIENT: Final = re.compile(r"\bto=([^\s<]+)")
_HEADER_STARTS: Final = ("<|", "to=", " to=")


class Harmony(Family):
    """gpt-oss' harmony channels (module notes)."""

    name = "harmony"
    reasoning = None
    framed = True

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return _HarmonyParser(names_of(tools))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        forced = ForcedCalls.of(tools, choice)
        calls = "\n".join(
            f"tool-call-{i} ::= {gbnf_literal(_header(tool.name))} tool-args-{i} "
            + gbnf_literal(CALL)
            for i, tool in forced.tools
        )
        # One call: <|call|> (an end-of-generation token) ends the answer.
        return Grammar(f"{forced.rules}root ::= {forced.alternatives('tool-call')}\n{calls}\n")

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, object]]]) -> str:
        # Each call ends its message (and, for the model, the generation).
        return f"{START}assistant".join(
            f"{_header(name)}{json_text(args)}{CALL}" for name, args in calls
        )

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL)

    @property
    def end_of_reasoning(self) -> str:
        # Ends the analysis message; the model then opens the next one (a call or the answer).
        return f"{END}{START}assistant"


def _header(name: str) -> str:
    return f"{CHANNEL}commentary to=functions.{name} {CONSTRAIN}json{MESSAGE}"


_Route = Literal["reasoning", "content", "call"]


class _HarmonyParser:
    def __init__(self, names: frozenset[str]) -> None:
        self._names = names
        self._buffer = ""
        self._state: Literal["header", "body"] = "header"
        self._route: _Route = "content"
        self._reasoned = False  # reasoning was sent: the next message's is set apart
        self._fresh = False  # nothing of this message sent yet

    def push(self, text: str) -> list[SyntaxEvent]:
        self._buffer += text
        return self._run(final=False, truncated=False)

    def finish(self, *, truncated: bool = False) -> list[SyntaxEvent]:
        return self._run(final=True, truncated=truncated)

    def _run(self, *, final: bool, truncated: bool) -> list[SyntaxEvent]:
        events: list[SyntaxEvent] = []
        while self._header(events, final) if self._state == "header" else self._body(events, final):
            pass
        return events

    def _header(self, events: list[SyntaxEvent], final: bool) -> bool:
        buffer = self._buffer
        end = buffer.find(MESSAGE)
        if end >= 0 and end <= _MAX_HEADER:
            self._open(events, buffer[:end])
            self._buffer = buffer[end + len(MESSAGE) :]
            return True
        rest = buffer.lstrip(WHITESPACE)
        header_like = any(
            rest.startswith(start) or start.startswith(rest) for start in _HEADER_STARTS
        )
        if header_like and len(buffer) <= _MAX_HEADER:
            if final:
                self._buffer = ""  # a header the output ended in: markup, nothing to show
            return False
        # Not harmony at all: text with no header is the answer.
        self._state, self._route = "body", "content"
        return True

    def _open(self, events: list[SyntaxEvent], header: str) -> None:
        channel = _CHANNEL_NAME.search(header)
        recipient = _RECIPIENT.search(header)
        self._state, self._fresh = "body", True
        if recipient is not None:
            name = recipient.group(1).removeprefix("functions.")
            if recipient.group(1).startswith("functions.") and name in self._names:
                events.append(CallBegin(name))
                self._route = "call"
            else:
                self._route = "reasoning"
        elif channel is not None and channel.group(1) == "analysis":
            self._route = "reasoning"
        else:
            self._route = "content"

    def _body(self, events: list[SyntaxEvent], final: bool) -> bool:
        buffer = self._buffer
        hits = [(at, m) for m in (*_CONSUMED_ENDS, *_NEXT_HEADERS) if (at := buffer.find(m)) >= 0]
        if hits:
            at, marker = min(hits)
            self._emit(events, buffer[:at])
            self._close(events)
            consumed = at + len(marker) if marker in _CONSUMED_ENDS else at
            self._buffer, self._state = buffer[consumed:], "header"
            return True
        held = partial_suffix(buffer, (*_CONSUMED_ENDS, *_NEXT_HEADERS))
        self._emit(events, buffer[: len(buffer) - held])
        self._buffer = buffer[len(buffer) - held :]
        if final:
            self._buffer = ""  # a marker cut in two is markup
            self._close(events)
        return False

    def _emit(self, events: list[SyntaxEvent], text: str) -> None:
        if not text:
            return
        fresh, self._fresh = self._fresh, False
        if self._route == "call":
            events.append(CallArgs(text))
        elif self._route == "reasoning":
            if fresh and self._reasoned:
                text = "\n\n" + text
            events.append(ReasoningText(text))
            self._reasoned = True
        else:
            events.append(ContentText(text))

    def _close(self, events: list[SyntaxEvent]) -> None:
        if self._route == "call":
            events.append(CallEnd())
        self._route = "content"


HARMONY: Final = Harmony()
