"""Hermes and Qwen 2.5 / 3 (and Granite 4, QwQ, SmolLM3): ``<tool_call>`` around a JSON object.

``<tool_call>\\n{"name": "<function>", "arguments": {...}}\\n</tool_call>``, one block per call;
``"parameters"`` is accepted for ``"arguments"``. Reasoning in ``<think>...</think>``. This is
also Sluice's generic format (:mod:`model.tools`), which templates without tool support get:
the ``generic`` family parses the same syntax.

History: these templates write earlier calls and ``tool`` results themselves (as
``<tool_response>`` blocks); the arguments must be an object for most of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..params import Grammar
from ..tool_calls import CLOSE_TAG, OPEN_TAG
from ..tools import Tool, ToolChoice, tool_call_grammar
from .blocks import BlockParser, BlockSyntax
from .family import CallSyntax, Family, json_text, names_of
from .markup import ArgsStart, Lit, Name, Ws

__all__ = ["GENERIC", "HERMES", "Hermes"]

_SYNTAX: Final = BlockSyntax(
    openers=(OPEN_TAG,),
    heads=(
        (
            Lit(OPEN_TAG), Ws(), Lit("{"), Ws(), Lit('"name"'), Ws(), Lit(":"), Ws(), Lit('"'),
            Name(), Lit('"'), Ws(), Lit(","), Ws(), Lit('"arguments"', '"parameters"'), Ws(),
            Lit(":"), Ws(), ArgsStart(),
        ),
    ),
    tail=((Ws(),), (Lit("}"),), (Ws(),), (Lit(CLOSE_TAG), Ws())),
)  # fmt: skip


class Hermes(Family):
    """``<tool_call>`` JSON (module notes); ``name`` ``hermes``, or ``generic`` for Sluice's
    own format in templates without tools."""

    def __init__(self, name: str = "hermes") -> None:
        self.name = name

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return BlockParser(_SYNTAX, names_of(tools))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        return tool_call_grammar(tools, choice)

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        return "\n".join(
            f'{OPEN_TAG}\n{{"name": "{name}", "arguments": {json_text(args)}}}\n{CLOSE_TAG}'
            for name, args in calls
        )

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (OPEN_TAG, CLOSE_TAG)


HERMES: Final = Hermes()
GENERIC: Final = Hermes("generic")
