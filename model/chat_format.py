"""A served model's chat conventions: its family, how tools and history reach its template,
and what reading its answers needs from its vocabulary.

Chosen once, when the model loads: the family is detected from the chat template's source
(:func:`~model.families.detect_family`) unless ``--tool-format`` names one; the history shape
is probed through the template (:func:`~model.families.history_shape`); the family's markers
that are special tokens in the vocabulary are found, so that the detokenizer renders exactly
those (and no other control token) for the parser.

With ``--reasoning-format none`` the answer is read without the family's reasoning markers: a
think block stays in ``content`` as the model wrote it (harmony's analysis channel, part of its
call syntax, is still reasoning).

Tools reach the prompt natively when the template declares ``tools``; otherwise the family's
tools prompt (:func:`~model.families.tools_prompt`: Sluice's generic one for ``generic`` and
Hermes) goes into the system message. Earlier calls and results are written in the history
shape, or flattened into the generic format when the template cannot write them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from .chat_output import ChatOutput
from .families import Family, HistoryShape, detect_family, family_by_name, history_shape
from .families import tools_prompt as family_tools_prompt
from .llama import LlamaModel
from .template import ChatTemplate
from .tools import Tool, ToolChoice, template_supports_tools

__all__ = ["ChatFormat", "ReasoningFormat"]

#: Special tokens that end an answer in a family although vocabularies may not mark them as
#: end of generation: harmony's call and return, Llama 3's end of a message to a tool.
_ENDS: Final[dict[str, tuple[str, ...]]] = {
    "harmony": ("<|call|>", "<|return|>"),
    "llama3": ("<|eom_id|>",),
}
ReasoningFormat = Literal["auto", "none"]
#: Prompt tokens rendered to see how the template left the answer's start.
_PROMPT_END_TOKENS: Final = 16


class ChatFormat:
    """One loaded model's chat conventions (see the module notes).

    ``tool_format``: a family name that overrides detection (validated by the caller:
    :func:`~model.families.family_by_name` raises :class:`~model.families.FamilyError`);
    ``reasoning_budget``: the default thinking budget in tokens (None: unlimited);
    ``reasoning_format`` ``none``: reasoning markers are not read (see the module notes).
    """

    def __init__(
        self,
        model: LlamaModel,
        template: ChatTemplate,
        *,
        tool_format: str | None = None,
        reasoning_budget: int | None = None,
        reasoning_format: ReasoningFormat = "auto",
    ) -> None:
        self.model = model
        self.family: Family = (
            family_by_name(tool_format) if tool_format else detect_family(template.source)
        )
        self.native_tools = template_supports_tools(template.source)
        self.shape: HistoryShape = history_shape(template, self.family)
        self.reasoning_budget = reasoning_budget
        markers = set(self.family.markers)
        ends = set(_ENDS.get(self.family.name, ()))
        specials = model.special_tokens()
        self.marker_tokens = frozenset(t.id for t in specials if t.text in markers)
        self.end_tokens = frozenset(t.id for t in specials if t.text in ends)
        self.reader_family = self.family
        if reasoning_format == "none" and self.family.reasoning is not None:
            self.reader_family = copy.copy(self.family)
            self.reader_family.reasoning = None
        closing = self.reader_family.end_of_reasoning
        self.end_of_reasoning = tuple(
            model.tokenize(closing, add_special=False, parse_special=True) if closing else ()
        )

    def messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Tool],
        choice: ToolChoice | None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """``messages`` as the template should get them, and the tools it gets natively
        (None: none, or they are described in the system message)."""
        calling = bool(tools) and choice is not None and choice.mode != "none"
        history = any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)
        shaped = self.shape.apply(messages, self.family) if history else [dict(m) for m in messages]
        if not calling:
            return shaped, None
        assert choice is not None
        if self.native_tools:
            return shaped, [tool.spec() for tool in tools]
        section = family_tools_prompt(self.family, tools, choice)
        if shaped and shaped[0].get("role") == "system":
            head = shaped[0].get("content") or ""
            shaped[0] = {**shaped[0], "content": f"{head}\n\n{section}" if head else section}
            return shaped, None
        return [{"role": "system", "content": section}, *shaped], None

    def output(
        self,
        prompt: Sequence[int],
        tools: Sequence[Tool] = (),
        *,
        thinking_budget: int | None = None,
    ) -> ChatOutput:
        """How the answer to ``prompt`` is read; ``tools``: the functions it may call;
        ``thinking_budget`` (None: the server's default)."""
        budget = self.reasoning_budget if thinking_budget is None else thinking_budget
        end = self.model.text_of(prompt[-_PROMPT_END_TOKENS:], special=True)
        return ChatOutput(
            self.reader_family,
            tuple(tools),
            end,
            self.marker_tokens,
            self.end_tokens,
            budget,
            self.end_of_reasoning,
        )
