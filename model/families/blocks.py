"""A streaming parser for tool-call syntaxes whose calls are JSON arguments inside markup.

Most families write a call as some markup naming the function, the arguments as one JSON
object, and more markup after it; some group several calls in one block (a JSON array, a
DeepSeek tool-calls section). :class:`BlockSyntax` describes such a syntax and
:class:`BlockParser` runs it over streamed text:

- In text, an *opener* (``<tool_call>``, ``[TOOL_CALLS]``, ...) may begin a block; text that
  could still become one is held back, everything else is content at once. Some syntaxes also
  have *start heads*, calls without an opener that count only where the answer so far is
  whitespace (Llama's bare JSON object).
- From the opener, a *head* must match (markup, the function's name, up to the ``{`` of the
  arguments). Until it does the text is held; once it cannot, the opener is content (or, for
  openers that are special tokens and so never prose, dropped) and the search goes on after it.
- The arguments stream out as they arrive and end where their brackets balance, before a
  ``stop`` character outside a JSON string, or at the end of the output.
- After them, the *tail* groups (closing markup) are dropped where present, each optional;
  then either a *next head* continues the block with another call, or the *end* groups close
  it and text resumes.

At the end of the output, held text is content, except when the output was cut short
(``truncated``): then a call's unfinished head and a partial marker are dropped, so no markup
ever reaches the content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .markup import WHITESPACE, JsonExtent, Step, Ws, match_any, match_steps, partial_suffix
from .pieces import CallArgs, CallBegin, CallEnd, ContentText, SyntaxEvent

__all__ = ["BlockParser", "BlockSyntax", "Steps"]

Steps = tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class BlockSyntax:
    """One family's call syntax (see the module notes for the roles of the parts)."""

    openers: tuple[str, ...]
    heads: tuple[Steps, ...]
    tail: tuple[Steps, ...] = ()
    next_heads: tuple[Steps, ...] = ()
    end: tuple[Steps, ...] = ()
    start_heads: tuple[Steps, ...] = ()
    #: Characters that, outside a JSON string, end the arguments early.
    stop: str = "<"
    #: The openers are special tokens: an opener not followed by a call is dropped.
    special_openers: bool = False


_State = Literal["text", "head", "args", "tail", "next", "end"]


class BlockParser:
    """Streams text through a :class:`BlockSyntax`; ``names``: the callable functions
    (``None``: any valid name)."""

    def __init__(self, syntax: BlockSyntax, names: frozenset[str] | None) -> None:
        self._syntax = syntax
        self._names = names
        self._buffer = ""
        self._state: _State = "text"
        self._at_start = bool(syntax.start_heads)
        self._opener = ""
        self._group = 0
        self._extent = JsonExtent(syntax.stop)
        self._steps = {
            "text": self._text,
            "head": self._head,
            "args": self._args,
            "tail": self._tail,
            "next": self._next,
            "end": self._end,
        }

    def push(self, text: str) -> list[SyntaxEvent]:
        self._buffer += text
        return self._run(final=False, truncated=False)

    def finish(self, *, truncated: bool = False) -> list[SyntaxEvent]:
        return self._run(final=True, truncated=truncated)

    def _run(self, *, final: bool, truncated: bool) -> list[SyntaxEvent]:
        events: list[SyntaxEvent] = []
        while self._steps[self._state](events, final, truncated):
            pass
        return events

    def _content(self, events: list[SyntaxEvent], text: str) -> None:
        if text:
            events.append(ContentText(text))
            if text.strip(WHITESPACE):
                self._at_start = False

    def _begin(self, events: list[SyntaxEvent], name: str, end: int) -> None:
        events.append(CallBegin(name))
        self._buffer = self._buffer[end:]
        self._state = "args"
        self._extent = JsonExtent(self._syntax.stop)

    def _text(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        buffer = self._buffer
        if self._at_start:
            skip = len(buffer) - len(buffer.lstrip(WHITESPACE))
            if skip == len(buffer):
                if final:
                    self._content(events, buffer)
                    self._buffer = ""
                return False
            found = match_any(buffer, skip, self._syntax.start_heads, self._names)
            if found.status == "more" and not final:
                return False
            if found.status == "more" and truncated:
                self._buffer = ""  # an unfinished call, cut off
                return False
            if found.status == "yes":
                self._content(events, buffer[:skip])
                self._begin(events, found.name, found.end)
                return True
            self._at_start = False
        openers = self._syntax.openers
        hits = [(at, opener) for opener in openers if (at := buffer.find(opener)) >= 0]
        if not hits:
            keep = 0 if final else partial_suffix(buffer, openers)
            if final and truncated:
                buffer = buffer[: len(buffer) - partial_suffix(buffer, openers)]
            self._content(events, buffer[: len(buffer) - keep])
            self._buffer = buffer[len(buffer) - keep :]
            return False
        start, self._opener = min(hits)
        self._content(events, buffer[:start])
        self._buffer = buffer[start:]
        self._state = "head"
        return True

    def _head(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        found = match_any(self._buffer, 0, self._syntax.heads, self._names)
        if found.status == "yes":
            self._begin(events, found.name, found.end)
            return True
        if found.status == "more" and not final:
            return False
        if found.status == "more" and truncated:
            self._buffer = ""
            return False
        # Not a call after all: the opener is text (or dropped markup); look on after it.
        if not self._syntax.special_openers:
            self._content(events, self._opener)
        self._buffer = self._buffer[len(self._opener) :]
        self._state = "text"
        return True

    def _args(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        used, done = self._extent.feed(self._buffer)
        if used:
            events.append(CallArgs(self._buffer[:used]))
            self._buffer = self._buffer[used:]
        if not done and not final:
            return False
        events.append(CallEnd())
        self._state, self._group = "tail", 0
        return True

    def _tail(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        if not self._drop_groups(self._syntax.tail, final, truncated):
            return False
        self._state = "next"
        return True

    def _next(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        if self._syntax.next_heads:
            found = match_any(self._buffer, 0, self._syntax.next_heads, self._names)
            if found.status == "yes":
                self._begin(events, found.name, found.end)
                return True
            if found.status == "more" and not final:
                return False
            if found.status == "more" and truncated:
                self._buffer = ""
                return False
        self._state, self._group = "end", 0
        return True

    def _end(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        if not self._drop_groups(self._syntax.end, final, truncated):
            return False
        self._state = "text"
        self._at_start = bool(self._syntax.start_heads)
        return True

    def _drop_groups(self, groups: Sequence[Steps], final: bool, truncated: bool) -> bool:
        """Drop each group of markup present, in order; False while one is undecided."""
        while self._group < len(groups):
            group = groups[self._group]
            if group == (Ws(),):
                self._buffer = self._buffer.lstrip(WHITESPACE)
                if not self._buffer and not final:
                    return False
                self._group += 1
                continue
            found = match_steps(self._buffer, 0, group, self._names)
            if found.status == "more" and not final:
                return False
            if found.status == "more" and truncated:
                self._buffer = ""  # markup cut off
                return True
            if found.status == "more":
                # At the end, a character that is nothing settles whitespace still open.
                found = match_steps(self._buffer + "\0", 0, group, self._names)
            if found.status == "yes":
                self._buffer = self._buffer[found.end :]
            self._group += 1
        return True
