"""Mistral and Magistral: ``[TOOL_CALLS]``, in either of Mistral's two layouts.

- ``mistral``: ``[TOOL_CALLS]<function>[ARGS]{...}``, one marker per call (Mistral Small 3.2,
  Devstral, Magistral, Ministral 3), optionally with ``[CALL_ID]<id>`` before ``[ARGS]``.
- ``mistral-array``: ``[TOOL_CALLS][{"name": "<function>", "arguments": {...}, "id": "..."}, ...]``
  (Mistral Nemo, Mistral 7B v0.3, the older tokenizers).

Each parser reads both layouts; the name decides the forced-call grammar. ``[TOOL_CALLS]``,
``[ARGS]`` and ``[CALL_ID]`` are special tokens: a marker not followed by a call is dropped.
Reasoning: ``magistral`` (detected when the template mentions ``[THINK]``) reads
``[THINK]...[/THINK]`` (special tokens too); the others ``<think>...</think>`` (Magistral Small
2506 wrote plain tags).

History: templates write earlier calls themselves; most want the call ids of exactly nine
letters and digits (the history shape rewrites ids consistently), and tool results follow as
``[TOOL_RESULTS]``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..params import Grammar
from ..tools import Tool, ToolChoice
from .blocks import BlockParser, BlockSyntax
from .family import CallSyntax, Family, ForcedCalls, gbnf_literal, json_text, names_of
from .markup import ArgsStart, Lit, Name, Skip, Ws
from .reasoning import THINK, ReasoningMarkers

__all__ = ["MAGISTRAL", "MISTRAL", "MISTRAL_ARRAY", "Mistral"]

TOOL_CALLS: Final = "[TOOL_CALLS]"
ARGS: Final = "[ARGS]"
CALL_ID: Final = "[CALL_ID]"
MAGISTRAL_THINK: Final = ReasoningMarkers("[THINK]", "[/THINK]")
_ID_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_-")
_OBJECT: Final = (
    Lit("{"), Ws(), Lit('"name"'), Ws(), Lit(":"), Ws(), Lit('"'), Name(), Lit('"'), Ws(),
    Lit(","), Ws(), Lit('"arguments"'), Ws(), Lit(":"), Ws(), ArgsStart(),
)  # fmt: skip
_SYNTAX: Final = BlockSyntax(
    openers=(TOOL_CALLS,),
    heads=(
        (Lit(TOOL_CALLS), Ws(), Name(), Lit(ARGS), Ws(), ArgsStart()),
        (
            Lit(TOOL_CALLS),
            Ws(),
            Name(),
            Lit(CALL_ID),
            Skip(_ID_CHARS),
            Lit(ARGS),
            Ws(),
            ArgsStart(),
        ),
        (Lit(TOOL_CALLS), Ws(), Lit("["), Ws(), *_OBJECT),
    ),
    tail=(
        (Ws(),),
        (Lit(","), Ws(), Lit('"id"'), Ws(), Lit(":"), Ws(), Lit('"'), Skip(_ID_CHARS), Lit('"')),
        (Ws(),),
        (Lit("}"),),
        (Ws(),),
    ),
    next_heads=((Lit(","), Ws(), *_OBJECT),),
    end=((Lit("]"),), (Ws(),)),
    stop="",
    special_openers=True,
)


class Mistral(Family):
    """``[TOOL_CALLS]`` calls (module notes): ``mistral``, ``mistral-array`` (the older
    JSON-array layout) or ``magistral`` (reasoning in ``[THINK]``)."""

    def __init__(self, name: str, *, array: bool = False, reasoning: ReasoningMarkers = THINK):
        self.name = name
        self.array = array
        self.reasoning = reasoning

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return BlockParser(_SYNTAX, names_of(tools))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        forced = ForcedCalls.of(tools, choice)
        if self.array:
            calls = "\n".join(
                f"tool-call-{i} ::= {gbnf_literal(_object_head(tool.name))} tool-args-{i} "
                + gbnf_literal("}")
                for i, tool in forced.tools
            )
            root = (
                f"root ::= {gbnf_literal(TOOL_CALLS + '[')} "
                f"{forced.repeat('tool-call', gbnf_literal(', '))} {gbnf_literal(']')}"
            )
        else:
            calls = "\n".join(
                f"tool-call-{i} ::= {gbnf_literal(TOOL_CALLS + tool.name + ARGS)} tool-args-{i}"
                for i, tool in forced.tools
            )
            root = f"root ::= {forced.repeat('tool-call')}"
        return Grammar(
            f"{forced.rules}{root}\ntool-call ::= {forced.alternatives('tool-call')}\n{calls}\n"
        )

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        if self.array:
            objects = (f"{_object_head(name)}{json_text(args)}}}" for name, args in calls)
            return f"{TOOL_CALLS}[{', '.join(objects)}]"
        return "".join(f"{TOOL_CALLS}{name}{ARGS}{json_text(args)}" for name, args in calls)

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (TOOL_CALLS, ARGS, CALL_ID)

    @property
    def end_of_reasoning(self) -> str:
        return (
            MAGISTRAL_THINK.close if self.reasoning == MAGISTRAL_THINK else super().end_of_reasoning
        )


def _object_head(name: str) -> str:
    return f'{{"name": "{name}", "arguments": '


MISTRAL: Final = Mistral("mistral")
MISTRAL_ARRAY: Final = Mistral("mistral-array", array=True)
MAGISTRAL: Final = Mistral("magistral", reasoning=MAGISTRAL_THINK)
