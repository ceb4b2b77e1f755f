"""Granite 3.x: ``<|tool_call|>`` and a JSON array of calls.

``<|tool_call|>[{"name": "<function>", "arguments": {...}}, ...]``; ``<|tool_call|>`` is a special
token, dropped when no call follows. With thinking on, Granite 3.2 / 3.3 write
``<think>...</think><response>...</response>``: the response tags are dropped from the answer.
(Granite 4 uses Hermes' ``<tool_call>`` and is detected as ``hermes``.)

History: Granite 3.3's template renders neither ``tool_calls`` nor anything but the content of
an assistant turn, so the history shape writes earlier calls into the content in this syntax;
``tool`` results are rendered as ``tool`` turns by the template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..params import Grammar
from ..tools import Tool, ToolChoice
from .blocks import BlockParser, BlockSyntax
from .family import CallSyntax, Family, ForcedCalls, gbnf_literal, json_text, names_of
from .markup import ArgsStart, Lit, Name, Ws
from .reasoning import ReasoningMarkers

__all__ = ["GRANITE", "Granite"]

TOOL_CALL: Final = "<|tool_call|>"
_OBJECT: Final = (
    Lit("{"), Ws(), Lit('"name"'), Ws(), Lit(":"), Ws(), Lit('"'), Name(), Lit('"'), Ws(),
    Lit(","), Ws(), Lit('"arguments"'), Ws(), Lit(":"), Ws(), ArgsStart(),
)  # fmt: skip
_SYNTAX: Final = BlockSyntax(
    openers=(TOOL_CALL,),
    heads=((Lit(TOOL_CALL), Ws(), Lit("["), Ws(), *_OBJECT),),
    tail=((Ws(),), (Lit("}"),), (Ws(),)),
    next_heads=((Lit(","), Ws(), *_OBJECT),),
    end=((Lit("]"),), (Ws(),)),
    special_openers=True,
)


class Granite(Family):
    """Granite 3.x calls (module notes)."""

    name = "granite"
    reasoning = ReasoningMarkers("<think>", "</think>", "<response>", "</response>")

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return BlockParser(_SYNTAX, names_of(tools))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        forced = ForcedCalls.of(tools, choice)
        calls = "\n".join(
            f"tool-call-{i} ::= {gbnf_literal(_head(tool.name))} tool-args-{i} " + gbnf_literal("}")
            for i, tool in forced.tools
        )
        return Grammar(
            f"{forced.rules}root ::= {gbnf_literal(TOOL_CALL + '[')} "
            f"{forced.repeat('tool-call', gbnf_literal(', '))} {gbnf_literal(']')}\n"
            f"tool-call ::= {forced.alternatives('tool-call')}\n{calls}\n"
        )

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        objects = ", ".join(f"{_head(name)}{json_text(args)}}}" for name, args in calls)
        return f"{TOOL_CALL}[{objects}]"

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (TOOL_CALL,)


def _head(name: str) -> str:
    return f'{{"name": "{name}", "arguments": '


GRANITE: Final = Granite()
