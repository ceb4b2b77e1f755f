"""Per-family output conventions: reasoning blocks, tool-call syntaxes, forced-call grammars.

A *family* is how a line of models writes its answers: how reasoning is marked, how a tool
call is written (``<tool_call>`` JSON, Qwen3-Coder's XML, Llama's bare JSON, Mistral's
``[TOOL_CALLS]``, DeepSeek's markers, gpt-oss' harmony channels, ...), and what its template
wants for earlier calls. One module per family; this package's API:

- :func:`detect_family` (from a chat template's source) and :func:`family_by_name` (a flag);
- :class:`OutputParser` / :func:`parse_output`: generated text -> :data:`Piece` values
  (reasoning, content, tool-call starts and argument fragments, duplicate calls);
- ``family.grammar(tools, choice)``: the grammar of a forced answer (``required`` or a named
  function) in the family's syntax;
- :func:`history_shape` / :meth:`HistoryShape.apply`: earlier calls and results in the shape a
  template renders; :func:`tools_prompt` for templates that do not declare tools;
- ``family.markers``: the markup whose tokens must be rendered for the parser to see them.
"""

from __future__ import annotations

from .family import MAX_FORCED_CALLS, Family
from .history import FLATTENED, HistoryShape, history_shape
from .output import OutputParser, parse_output
from .pieces import (
    ContentText,
    DuplicateCall,
    ParsedOutput,
    Piece,
    ReasoningText,
    ToolCall,
    ToolCallArguments,
    ToolCallStart,
)
from .prompt import tools_prompt
from .reasoning import ReasoningMarkers
from .registry import FAMILIES, FamilyError, detect_family, family_by_name

__all__ = [
    "FAMILIES",
    "FLATTENED",
    "MAX_FORCED_CALLS",
    "ContentText",
    "DuplicateCall",
    "Family",
    "FamilyError",
    "HistoryShape",
    "OutputParser",
    "ParsedOutput",
    "Piece",
    "ReasoningMarkers",
    "ReasoningText",
    "ToolCall",
    "ToolCallArguments",
    "ToolCallStart",
    "detect_family",
    "family_by_name",
    "history_shape",
    "parse_output",
    "tools_prompt",
]
