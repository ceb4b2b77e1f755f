"""What an output parser makes of generated text: typed pieces, in output order.

``ContentText``, ``ToolCallStart`` and ``ToolCallArguments`` are :mod:`model.tool_calls`' own
types, so the engine's existing handling of them carries over unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tool_calls import ContentText, ToolCall, ToolCallArguments, ToolCallStart

__all__ = [
    "CallArgs",
    "CallBegin",
    "CallEnd",
    "ContentText",
    "DuplicateCall",
    "ParsedOutput",
    "Piece",
    "ReasoningText",
    "SyntaxEvent",
    "ToolCall",
    "ToolCallArguments",
    "ToolCallStart",
]


@dataclass(frozen=True, slots=True)
class ReasoningText:
    """Text of the model's reasoning (a think block, harmony's analysis channel)."""

    text: str


@dataclass(frozen=True, slots=True)
class DuplicateCall:
    """The model repeated an earlier call of this answer (same function, same arguments up to
    whitespace); the repeat was dropped. The answer can end here."""

    name: str


Piece = ReasoningText | ContentText | ToolCallStart | ToolCallArguments | DuplicateCall


@dataclass(frozen=True, slots=True)
class CallBegin:
    """A family's syntax found a call of ``name``; its arguments follow."""

    name: str


@dataclass(frozen=True, slots=True)
class CallArgs:
    """The next piece of the current call's arguments, as JSON text."""

    fragment: str


@dataclass(frozen=True, slots=True)
class CallEnd:
    """The current call's arguments are over (complete, or cut off)."""


#: What a family's call syntax reports; :class:`model.families.output.OutputParser` turns these
#: into :data:`Piece` values (ids, indices, duplicates).
SyntaxEvent = ContentText | ReasoningText | CallBegin | CallArgs | CallEnd


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    """A whole output, as the pieces of any split of it add up."""

    reasoning: str
    content: str
    calls: list[ToolCall]
    #: Whether a repeated call was dropped.
    duplicate: bool = False
