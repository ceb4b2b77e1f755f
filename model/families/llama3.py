"""Llama 3.1 / 3.2 / 3.3: a bare JSON object with ``"parameters"``, or after ``<|python_tag|>``.

The model answers a call with nothing but ``{"name": "<function>", "parameters": {...}}``
(``"arguments"`` and a leading ``"type": "function"`` are accepted too), or writes
``<|python_tag|>`` (a special token) before such an object. A bare object counts as a call only
where the answer so far is whitespace (after an earlier call, ``;`` may separate the next); in
the middle of prose it is content. ``<|python_tag|>`` not followed by a call is dropped (the
text after it stays): Llama's built-in tool syntax (``brave_search.call(...)``) and raw code
for its code interpreter are not recognised, since requests declare functions only.

History: the templates allow one call per assistant turn (the history shape splits turns with
more); results are written as ``ipython`` turns. A forced answer holds one call, or several
separated by newlines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..params import Grammar
from ..tools import Tool, ToolChoice
from .blocks import BlockParser, BlockSyntax
from .family import CallSyntax, Family, ForcedCalls, gbnf_literal, json_text, names_of
from .markup import ArgsStart, Lit, Name, Ws

__all__ = ["LLAMA3", "PYTHON_TAG", "Llama3"]

PYTHON_TAG: Final = "<|python_tag|>"
_NAMED: Final = (
    Lit('"name"'), Ws(), Lit(":"), Ws(), Lit('"'), Name(), Lit('"'), Ws(), Lit(","), Ws(),
    Lit('"parameters"', '"arguments"'), Ws(), Lit(":"), Ws(), ArgsStart(),
)  # fmt: skip
_TYPED: Final = (Lit('"type"'), Ws(), Lit(":"), Ws(), Lit('"function"'), Ws(), Lit(","), Ws())
_OBJECTS: Final = ((Lit("{"), Ws(), *_NAMED), (Lit("{"), Ws(), *_TYPED, *_NAMED))
_SYNTAX: Final = BlockSyntax(
    openers=(PYTHON_TAG,),
    heads=tuple((Lit(PYTHON_TAG), Ws(), *steps) for steps in _OBJECTS),
    tail=((Ws(),), (Lit("}"),), (Ws(),), (Lit(";"),), (Ws(),)),
    start_heads=_OBJECTS,
    special_openers=True,
)


class Llama3(Family):
    """Llama 3.x JSON calls (module notes)."""

    name = "llama3"

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return BlockParser(_SYNTAX, names_of(tools))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        forced = ForcedCalls.of(tools, choice)
        calls = "\n".join(
            f"tool-call-{i} ::= {gbnf_literal(_head(tool.name))} tool-args-{i} {gbnf_literal('}')}"
            for i, tool in forced.tools
        )
        return Grammar(
            f"{forced.rules}root ::= {forced.repeat('tool-call', gbnf_literal(chr(10)))}\n"
            f"tool-call ::= {forced.alternatives('tool-call')}\n{calls}\n"
        )

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        return "\n".join(
            f'{{"name": "{name}", "parameters": {json_text(args)}}}' for name, args in calls
        )

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (PYTHON_TAG,)


def _head(name: str) -> str:
    return f'{{"name": "{name}", "parameters": '


LLAMA3: Final = Llama3()
