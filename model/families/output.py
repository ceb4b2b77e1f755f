"""One output's text, streamed, into typed pieces: reasoning, content, tool calls.

The pipeline is the family's reasoning splitter, then its call syntax, then the call ledger:

- Reasoning comes first, as :class:`ReasoningText` (see :mod:`model.families.reasoning`).
- Calls are recognised only when the request has tools; each gets the next index and a fresh
  id when it starts (:class:`ToolCallStart`, the name), then its arguments stream as JSON text
  (:class:`ToolCallArguments`).
- Whitespace that begins the answer is held until something else comes: dropped before a
  call, sent before content.
- A call to a function already called in this answer is held while its arguments so far match
  an earlier call's (whitespace outside strings aside), and released as soon as they differ.
  One that ends identical is dropped and reported as :class:`DuplicateCall`, so the engine can
  end the answer there; cut off by ``max_tokens`` while still matching, it is dropped silently.
- ``finish(truncated=True)`` (the output was cut short) drops held markup instead of sending
  it as content: an unfinished call head never becomes content.

Any split of an output into pushes gives the same pieces, up to how text is divided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..tool_calls import new_call_id
from ..tools import Tool
from .family import CallSyntax, Family
from .markup import WHITESPACE, canonical_json
from .pieces import (
    CallArgs,
    CallBegin,
    CallEnd,
    ContentText,
    DuplicateCall,
    ParsedOutput,
    Piece,
    ReasoningText,
    SyntaxEvent,
    ToolCall,
    ToolCallArguments,
    ToolCallStart,
)
from .reasoning import ReasoningSplitter

__all__ = ["OutputParser", "parse_output"]


class _Call:
    __slots__ = ("arguments", "held", "index", "name")

    def __init__(self, name: str, held: bool) -> None:
        self.name = name
        self.arguments = ""
        self.held = held
        self.index = -1


class OutputParser:
    """Streams one output of ``family`` into :data:`~model.families.pieces.Piece` values.

    ``tools``: the functions the answer may call (``None`` or empty: calls are not recognised,
    their markup stays content, except in framed families where it is dropped). ``prompt``:
    the rendered prompt text, whose end tells whether the template already opened a reasoning
    block (or other markup). ``new_id`` makes call ids.
    """

    def __init__(
        self,
        family: Family,
        tools: Sequence[Tool] | None = None,
        *,
        prompt: str = "",
        new_id: Callable[[], str] = new_call_id,
    ) -> None:
        markers = family.reasoning
        self._splitter = (
            ReasoningSplitter(markers, inside=markers.open_at_end(prompt)) if markers else None
        )
        self._syntax: CallSyntax | None = (
            family.syntax(tools or (), prompt) if tools or family.framed else None
        )
        self._new_id = new_id
        self._lead: str | None = ""  # leading whitespace of the answer; None once it began
        self._done: dict[str, list[str]] = {}  # canonical arguments of finished calls, by name
        self._call: _Call | None = None
        self._calls = 0
        self._truncated = False
        self._reasoning_last = False  # the last piece sent was reasoning

    @property
    def calls(self) -> int:
        """Calls started so far (duplicates not counted)."""
        return self._calls

    @property
    def in_reasoning(self) -> bool:
        """Whether the output so far ends inside the reasoning (a think block still open, or
        a harmony analysis message): a token pushed that leaves this true, or whose push
        returned :class:`ReasoningText`, is a reasoning token."""
        if self._splitter is not None:
            return self._splitter.inside
        return self._reasoning_last

    def push(self, text: str) -> list[Piece]:
        """Pieces for ``text``, the next piece of output; what may still be markup is held."""
        if self._splitter is None:
            return self._answer([ContentText(text)], final=False)
        pieces: list[Piece] = []
        for part in self._splitter.push(text):
            if isinstance(part, ReasoningText):
                pieces.append(part)
            else:
                pieces += self._answer([part], final=False)
        return pieces

    def finish(self, *, truncated: bool = False) -> list[Piece]:
        """Pieces for whatever was held, at the end of the output; ``truncated``: the output
        was cut short (``max_tokens``, the context), not ended by the model."""
        self._truncated = truncated
        pieces: list[Piece] = []
        parts = self._splitter.finish(truncated=truncated) if self._splitter else []
        for part in parts:
            if isinstance(part, ReasoningText):
                pieces.append(part)
            else:
                pieces += self._answer([part], final=False)
        pieces += self._answer([], final=True)
        if self._lead:
            pieces.append(ContentText(self._lead))
            self._lead = None
        return pieces

    def _answer(self, parts: list[ContentText], *, final: bool) -> list[Piece]:
        events: list[SyntaxEvent] = []
        if self._syntax is None:
            events += parts
        else:
            for part in parts:
                events += self._syntax.push(part.text)
            if final:
                events += self._syntax.finish(truncated=self._truncated)
        pieces: list[Piece] = []
        for event in events:
            self._ledger(event, pieces)
        if pieces:
            self._reasoning_last = isinstance(pieces[-1], ReasoningText)
        return pieces

    def _ledger(self, event: SyntaxEvent, pieces: list[Piece]) -> None:
        if isinstance(event, ContentText):
            if self._lead is None:
                pieces.append(event)
                return
            self._lead += event.text
            if self._lead.strip(WHITESPACE):
                pieces.append(ContentText(self._lead))
                self._lead = None
        elif isinstance(event, ReasoningText):
            pieces.append(event)
        elif isinstance(event, CallBegin):
            self._lead = None
            call = self._call = _Call(event.name, event.name in self._done)
            if not call.held:
                self._release(call, pieces)
        elif isinstance(event, CallArgs):
            call = self._require_call()
            call.arguments += event.fragment
            if not call.held:
                pieces.append(ToolCallArguments(call.index, event.fragment))
                return
            so_far = canonical_json(call.arguments)
            if not any(done.startswith(so_far) for done in self._done[call.name]):
                self._release(call, pieces)
        else:
            assert isinstance(event, CallEnd)
            call = self._require_call()
            self._call = None
            canonical = canonical_json(call.arguments)
            earlier = self._done.setdefault(call.name, [])
            if call.held and canonical in earlier:
                pieces.append(DuplicateCall(call.name))
                return
            if call.held and self._truncated:
                return  # cut off while repeating an earlier call
            if call.held:
                self._release(call, pieces)
            earlier.append(canonical)

    def _require_call(self) -> _Call:
        if self._call is None:
            raise AssertionError("call syntax sent arguments outside a call")
        return self._call

    def _release(self, call: _Call, pieces: list[Piece]) -> None:
        call.held = False
        call.index = self._calls
        self._calls += 1
        pieces.append(ToolCallStart(call.index, self._new_id(), call.name))
        if call.arguments:
            pieces.append(ToolCallArguments(call.index, call.arguments))


def parse_output(
    family: Family,
    tools: Sequence[Tool] | None,
    text: str,
    *,
    prompt: str = "",
    truncated: bool = False,
    new_id: Callable[[], str] = new_call_id,
) -> ParsedOutput:
    """A whole output, exactly as :class:`OutputParser` reads any split of it."""
    parser = OutputParser(family, tools, prompt=prompt, new_id=new_id)
    reasoning: list[str] = []
    content: list[str] = []
    calls: list[list[str]] = []
    duplicate = False
    for piece in [*parser.push(text), *parser.finish(truncated=truncated)]:
        if isinstance(piece, ReasoningText):
            reasoning.append(piece.text)
        elif isinstance(piece, ContentText):
            content.append(piece.text)
        elif isinstance(piece, ToolCallStart):
            calls.append([piece.id, piece.name, ""])
        elif isinstance(piece, ToolCallArguments):
            calls[piece.index][2] += piece.fragment
        else:
            duplicate = True
    return ParsedOutput(
        "".join(reasoning), "".join(content), [ToolCall(*call) for call in calls], duplicate
    )
