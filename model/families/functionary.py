"""Functionary (MeetKai) v3.1 and v3.2.

- ``functionary-v3.1`` (Llama 3.1 based): ``<function=<name>>{...}</function>`` per call.
- ``functionary-v3.2``: every message starts with ``>>>`` and a recipient line: ``all`` for
  text to the user, a function's name for a call whose JSON arguments follow
  (``>>>get_weather\\n{"city": "Paris"}``). The template ends the prompt with ``>>>``, so the
  output begins with a recipient. A recipient that is neither ``all`` nor a known function
  (the ``python`` code interpreter) has its message kept as content, its header dropped.

Neither marks reasoning. History: v3.1's template writes arguments as JSON objects, v3.2's
concatenates them as strings; the history shape finds which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from ..params import Grammar
from ..tools import Tool, ToolChoice
from .blocks import BlockParser, BlockSyntax
from .family import CallSyntax, Family, ForcedCalls, gbnf_literal, json_text, names_of
from .markup import NAME_CHARS, WHITESPACE, ArgsStart, JsonExtent, Lit, Name, Ws, partial_suffix
from .pieces import CallArgs, CallBegin, CallEnd, ContentText, SyntaxEvent

__all__ = ["FUNCTIONARY_V31", "FUNCTIONARY_V32", "FunctionaryV31", "FunctionaryV32"]

RECIPIENT: Final = ">>>"
_ALL: Final = "all"
_MAX_RECIPIENT: Final = 64
_V31: Final = BlockSyntax(
    openers=("<function=",),
    heads=((Lit("<function="), Name(), Lit(">"), Ws(), ArgsStart()),),
    tail=((Ws(),), (Lit("</function>"),), (Ws(),)),
)


class FunctionaryV31(Family):
    """``<function=name>{...}</function>`` calls (module notes)."""

    name = "functionary-v3.1"
    reasoning = None

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return BlockParser(_V31, names_of(tools))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        forced = ForcedCalls.of(tools, choice)
        calls = "\n".join(
            f"tool-call-{i} ::= {gbnf_literal(f'<function={tool.name}>')} tool-args-{i} "
            + gbnf_literal("</function>")
            for i, tool in forced.tools
        )
        return Grammar(
            f"{forced.rules}root ::= {forced.repeat('tool-call')}\n"
            f"tool-call ::= {forced.alternatives('tool-call')}\n{calls}\n"
        )

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        return "".join(f"<function={name}>{json_text(args)}</function>" for name, args in calls)

    @property
    def call_markers(self) -> tuple[str, ...]:
        return ("<function=", "</function>")


class FunctionaryV32(Family):
    """``>>>recipient`` messages (module notes)."""

    name = "functionary-v3.2"
    reasoning = None
    framed = True

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return _RecipientParser(names_of(tools), header=prompt.endswith(RECIPIENT))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        # The template's generation prompt already wrote the first ">>>".
        forced = ForcedCalls.of(tools, choice)
        calls = "\n".join(
            f"tool-call-{i} ::= {gbnf_literal(tool.name + chr(10))} tool-args-{i}"
            for i, tool in forced.tools
        )
        return Grammar(
            f"{forced.rules}root ::= {forced.repeat('tool-call', gbnf_literal(RECIPIENT))}\n"
            f"tool-call ::= {forced.alternatives('tool-call')}\n{calls}\n"
        )

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        return "".join(f"{RECIPIENT}{name}\n{json_text(args)}" for name, args in calls)

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (RECIPIENT,)


class _RecipientParser:
    def __init__(self, names: frozenset[str], *, header: bool) -> None:
        self._names = names
        self._buffer = ""
        self._state: Literal["header", "text", "args", "after"] = "header" if header else "text"
        self._extent = JsonExtent()

    def push(self, text: str) -> list[SyntaxEvent]:
        self._buffer += text
        return self._run(final=False, truncated=False)

    def finish(self, *, truncated: bool = False) -> list[SyntaxEvent]:
        return self._run(final=True, truncated=truncated)

    def _run(self, *, final: bool, truncated: bool) -> list[SyntaxEvent]:
        events: list[SyntaxEvent] = []
        while True:
            buffer = self._buffer
            if self._state == "header":
                end = buffer.find("\n")
                head = buffer if end < 0 else buffer[:end]
                named = head.strip(WHITESPACE)
                looks = len(head) <= _MAX_RECIPIENT and all(c in NAME_CHARS for c in named)
                if end < 0 and looks and not final:
                    return events
                if end < 0 and looks and truncated:
                    self._buffer = ""
                    return events
                if end >= 0 and looks and named in self._names:
                    events.append(CallBegin(named))
                    self._buffer, self._state = buffer[end + 1 :], "args"
                    self._extent = JsonExtent()
                    continue
                if end >= 0 and looks:  # "all", or a recipient that is no function
                    buffer = buffer[end + 1 :]
                self._buffer, self._state = buffer, "text"
                continue
            if self._state == "text":
                start = buffer.find(RECIPIENT)
                if start >= 0:
                    self._content(events, buffer[:start])
                    self._buffer, self._state = buffer[start + len(RECIPIENT) :], "header"
                    continue
                held = partial_suffix(buffer, (RECIPIENT,))
                if final:
                    held, buffer = 0, buffer[: len(buffer) - held] if truncated else buffer
                self._content(events, buffer[: len(buffer) - held])
                self._buffer = buffer[len(buffer) - held :]
                return events
            if self._state == "args":
                used, done = self._extent.feed(buffer)
                if used:
                    events.append(CallArgs(buffer[:used]))
                self._buffer = buffer[used:]
                if not done and not final:
                    return events
                events.append(CallEnd())
                self._state = "after"
                continue
            # After a call's arguments, only whitespace until the next recipient.
            self._buffer = buffer.lstrip(WHITESPACE)
            if not self._buffer and not final:
                return events
            self._state = "text"
            if not self._buffer:
                return events

    @staticmethod
    def _content(events: list[SyntaxEvent], text: str) -> None:
        if text:
            events.append(ContentText(text))


FUNCTIONARY_V31: Final = FunctionaryV31()
FUNCTIONARY_V32: Final = FunctionaryV32()
