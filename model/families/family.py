"""What every model family provides, and the grammar pieces their forced calls share."""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..grammar import GrammarError, json_schema_grammar, json_schema_rules
from ..params import Grammar
from ..tools import Tool, ToolChoice, ToolError
from .pieces import SyntaxEvent
from .reasoning import THINK, ReasoningMarkers

__all__ = [
    "MAX_FORCED_CALLS",
    "CallSyntax",
    "Family",
    "ForcedCalls",
    "gbnf_literal",
    "json_text",
    "names_of",
]

#: Calls a forced ``required`` answer may make when parallel calls are allowed.
MAX_FORCED_CALLS: Final = 4


class CallSyntax(Protocol):
    """A family's streaming call parser for one output (see :mod:`model.families.blocks`)."""

    def push(self, text: str) -> list[SyntaxEvent]: ...

    def finish(self, *, truncated: bool = False) -> list[SyntaxEvent]: ...


@dataclass(frozen=True, slots=True)
class ForcedCalls:
    """The functions a forced answer may call, with their argument rules already written.

    ``tools``: (index in the request, tool) pairs; ``rules``: GBNF rules in which
    ``tool-args-<index>`` matches that tool's arguments; ``most``: how many calls in a row.
    """

    tools: tuple[tuple[int, Tool], ...]
    rules: str
    most: int

    @classmethod
    def of(cls, tools: Sequence[Tool], choice: ToolChoice) -> ForcedCalls:
        """:raises ValueError: ``choice`` forces no call.
        :raises ToolError: a chosen function's parameters cannot be enforced."""
        if choice.mode != "required":
            raise ValueError(f"tool_choice {choice.mode!r} forces no call")
        chosen = tuple((i, t) for i, t in enumerate(tools) if choice.function in (None, t.name))
        for i, tool in chosen:
            try:
                json_schema_grammar(tool.parameters)
            except GrammarError as exc:
                at = f"tools[{i}].function.parameters"
                raise ToolError(f"{at} cannot be enforced: {exc}", at) from exc
        rules = json_schema_rules({f"tool-args-{i}": tool.parameters for i, tool in chosen})
        most = MAX_FORCED_CALLS if choice.function is None and choice.parallel else 1
        return cls(chosen, rules, most)

    def alternatives(self, rule: str) -> str:
        """``rule-<index>`` for each chosen tool, as GBNF alternatives."""
        return " | ".join(f"{rule}-{i}" for i, _ in self.tools)

    def repeat(self, item: str, separator: str = "") -> str:
        """``item`` once, then up to ``most - 1`` more after ``separator`` (a GBNF literal)."""
        if self.most == 1:
            return item
        if not separator:
            return f"{item}{{1,{self.most}}}"
        return f"{item} ({separator} {item}){{0,{self.most - 1}}}"


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def names_of(tools: Sequence[Tool]) -> frozenset[str]:
    return frozenset(tool.name for tool in tools)


class Family(abc.ABC):
    """One model family's output conventions.

    ``name`` is what a server flag selects it by; ``reasoning`` how its reasoning block is
    marked (``None`` when it has none, or the call syntax itself separates it, as harmony
    does); ``framed``: all its output is in the syntax's markup (harmony's channels,
    functionary's recipients), so the syntax parses even answers without tools.
    """

    name: str = ""
    reasoning: ReasoningMarkers | None = THINK
    framed: bool = False

    @abc.abstractmethod
    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        """A fresh parser for one output; ``prompt``: the rendered prompt text, for families
        whose template already began the answer's markup (functionary's ``>>>``)."""

    @abc.abstractmethod
    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        """A grammar holding the answer to calls in this family's syntax: one call for a named
        function (or without parallel calls), up to :data:`MAX_FORCED_CALLS` otherwise.

        :raises ValueError: ``choice`` forces no call.
        :raises ToolError: a chosen function's parameters cannot be enforced.
        """

    @abc.abstractmethod
    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        """``(name, arguments)`` calls as this family's model writes them."""

    @property
    @abc.abstractmethod
    def call_markers(self) -> tuple[str, ...]:
        """The markup strings of the call syntax."""

    @property
    def end_of_reasoning(self) -> str:
        """Text that ends the reasoning when forced into the output (a thinking budget spent),
        so that the answer begins; "" for a family without reasoning."""
        return f"\n{self.reasoning.close}\n\n" if self.reasoning is not None else ""

    @property
    def markers(self) -> tuple[str, ...]:
        """Every markup string this family's output may hold: tokens with this text must be
        rendered (``special=True``) for the parser to see them."""
        reasoning = self.reasoning.markers if self.reasoning is not None else ()
        return (*reasoning, *self.call_markers)

    def __repr__(self) -> str:
        return f"<family {self.name}>"


def json_text(value: Mapping[str, Any]) -> str:
    """Arguments as families' templates write them: ``json.dumps`` defaults, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False)
