"""DeepSeek V3 / R1 / V3.1: calls between ``<｜tool▁calls▁begin｜>`` markers.

- ``deepseek-r1`` (V3-0324, R1, R1-0528): ``<｜tool▁call▁begin｜>function<｜tool▁sep｜><name>``,
  a newline, the arguments in a ```` ```json ```` fence, ``<｜tool▁call▁end｜>``;
- ``deepseek-v3.1``: ``<｜tool▁call▁begin｜><name><｜tool▁sep｜>{...}<｜tool▁call▁end｜>``;

calls separated by newlines (or nothing) inside ``<｜tool▁calls▁begin｜>`` ...
``<｜tool▁calls▁end｜>``. Each parser reads both layouts, with or without the outer markers; the
name decides the forced-call grammar. The markers are special tokens: one not followed by a call
is dropped. Reasoning: ``<think>...</think>``; R1's templates open the block in the prompt.

History: the templates write earlier calls and results (``<｜tool▁output▁begin｜>``) themselves.
DeepSeek's R1 distills' templates (Qwen, Llama) write them but never declare ``tools``: those
templates get the ``generic`` family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..params import Grammar
from ..tools import Tool, ToolChoice
from .blocks import BlockParser, BlockSyntax
from .family import CallSyntax, Family, ForcedCalls, gbnf_literal, json_text, names_of
from .markup import ArgsStart, Lit, Name, Step, Ws

__all__ = ["DEEPSEEK_R1", "DEEPSEEK_V31", "DeepSeek"]

CALLS_BEGIN: Final = "<｜tool▁calls▁begin｜>"
CALLS_END: Final = "<｜tool▁calls▁end｜>"
CALL_BEGIN: Final = "<｜tool▁call▁begin｜>"
CALL_END: Final = "<｜tool▁call▁end｜>"
SEP: Final = "<｜tool▁sep｜>"
_FENCE: Final = "```json"
_CALLS: Final[tuple[tuple[Step, ...], ...]] = (
    (Lit("function"), Lit(SEP), Name(), Ws(), Lit(_FENCE), Ws(), ArgsStart()),
    (Lit("function"), Lit(SEP), Name(), Ws(), ArgsStart()),
    (Name(), Lit(SEP), Ws(), ArgsStart()),
)
_SYNTAX: Final = BlockSyntax(
    openers=(CALLS_BEGIN, CALL_BEGIN),
    heads=(
        *((Lit(CALLS_BEGIN), Ws(), Lit(CALL_BEGIN), *call) for call in _CALLS),
        *((Lit(CALL_BEGIN), *call) for call in _CALLS),
    ),
    tail=((Ws(),), (Lit("```"),), (Ws(),), (Lit(CALL_END),), (Ws(),)),
    next_heads=tuple((Lit(CALL_BEGIN), *call) for call in _CALLS),
    end=((Lit(CALLS_END),), (Ws(),)),
    special_openers=True,
)


class DeepSeek(Family):
    """DeepSeek calls (module notes); ``v31``: V3.1's layout, without type and fence."""

    def __init__(self, *, v31: bool = False) -> None:
        self.name = "deepseek-v3.1" if v31 else "deepseek-r1"
        self.v31 = v31

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return BlockParser(_SYNTAX, names_of(tools))

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        forced = ForcedCalls.of(tools, choice)
        calls = "\n".join(
            f"tool-call-{i} ::= {gbnf_literal(self._head(tool.name))} tool-args-{i} "
            + gbnf_literal(self._tail())
            for i, tool in forced.tools
        )
        repeated = forced.repeat("tool-call", "" if self.v31 else gbnf_literal("\n"))
        return Grammar(
            f"{forced.rules}root ::= {gbnf_literal(CALLS_BEGIN)} {repeated} "
            f"{gbnf_literal(CALLS_END)}\ntool-call ::= {forced.alternatives('tool-call')}\n"
            f"{calls}\n"
        )

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        written = (f"{self._head(name)}{json_text(args)}{self._tail()}" for name, args in calls)
        return f"{CALLS_BEGIN}{('' if self.v31 else chr(10)).join(written)}{CALLS_END}"

    def _head(self, name: str) -> str:
        if self.v31:
            return f"{CALL_BEGIN}{name}{SEP}"
        return f"{CALL_BEGIN}function{SEP}{name}\n{_FENCE}\n"

    def _tail(self) -> str:
        return CALL_END if self.v31 else f"\n```{CALL_END}"

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP)


DEEPSEEK_R1: Final = DeepSeek()
DEEPSEEK_V31: Final = DeepSeek(v31=True)
