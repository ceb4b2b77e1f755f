"""Reading a chat answer by its model family: reasoning, content and tool calls as events.

A chat request carries a :class:`ChatOutput`: the served model's family (detected from the
chat template, or forced by ``--tool-format``), the functions the answer may call, and what
the sequence needs to read the family's markup. A :class:`ChatOutputReader` turns the answer's
text, as the detokenizer and the stop matcher release it, into engine events:

- reasoning (a think block, harmony's analysis channel) -> :attr:`Delta.reasoning`;
- the answer -> :attr:`Delta.text`; the family's calls -> :class:`ToolCallDelta` s;
- a call repeating an earlier one of the same answer sets :attr:`ChatOutputReader.duplicate`:
  the sequence ends there with ``tool_calls``;
- at the end, ``truncated`` (``max_tokens``, the context) drops held markup, so a call cut
  off never becomes content.

A token counts as reasoning when its text went to the reasoning or left the output inside
the reasoning block. With a thinking budget, once that many reasoning tokens were sampled
inside the block, the family's :attr:`~model.families.Family.end_of_reasoning` tokens are
forced into the sequence (see :meth:`model.sampling.Sampler.force`), and the answer begins.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import Delta, Event, TokenLogprobs, ToolCallDelta
from .families import (
    ContentText,
    DuplicateCall,
    Family,
    OutputParser,
    ReasoningText,
    ToolCallStart,
)
from .tools import Tool

__all__ = ["ChatOutput", "ChatOutputReader"]


@dataclass(frozen=True, slots=True)
class ChatOutput:
    """How one chat answer is read (see the module notes)."""

    family: Family
    #: Functions the answer may call; empty: calls are not recognised.
    tools: tuple[Tool, ...] = ()
    #: The rendered prompt's last text, special tokens as written: whether the template
    #: opened a think block (or other markup) for the answer.
    prompt_end: str = ""
    #: Tokens rendered as their special text (the family's own markers), so the parser sees
    #: them; every other control token stays invisible.
    marker_tokens: frozenset[int] = frozenset()
    #: Tokens that end the answer besides the vocabulary's end-of-generation ones.
    end_tokens: frozenset[int] = frozenset()
    #: Reasoning tokens allowed inside the think block; None: no limit.
    thinking_budget: int | None = None
    #: The tokens of ``family.end_of_reasoning``, forced when the budget is spent.
    end_of_reasoning: tuple[int, ...] = ()

    def reader(self) -> ChatOutputReader:
        return ChatOutputReader(self)


class ChatOutputReader:
    """One answer's parser and its counts (engine thread only)."""

    def __init__(self, output: ChatOutput) -> None:
        self.output = output
        self._parser = OutputParser(output.family, output.tools, prompt=output.prompt_end)
        #: Calls started so far.
        self.calls = 0
        #: Tokens spent reasoning so far.
        self.reasoning_tokens = 0
        #: The answer repeated one of its calls: it should end now.
        self.duplicate = False
        #: The budget was spent and the end of the reasoning was forced.
        self.closed = False

    @property
    def in_reasoning(self) -> bool:
        """Whether the text so far ends inside the reasoning."""
        return self._parser.in_reasoning

    def budget_spent(self) -> bool:
        """Whether the end of the reasoning must be forced now (once)."""
        budget = self.output.thinking_budget
        return (
            budget is not None
            and not self.closed
            and self.in_reasoning
            and self.reasoning_tokens >= budget
            and bool(self.output.end_of_reasoning)
        )

    def events(
        self,
        text: str,
        tokens: int,
        index: int,
        logprobs: tuple[TokenLogprobs, ...] = (),
        *,
        final: bool = False,
        truncated: bool = False,
    ) -> list[Event]:
        """Events for ``text`` (released output carrying ``tokens`` sampled tokens);
        ``final``: the output ends here, ``truncated``: cut short rather than ended."""
        pieces = self._parser.push(text) if text else []
        if final:
            pieces += self._parser.finish(truncated=truncated)
        if tokens and (self.in_reasoning or any(isinstance(p, ReasoningText) for p in pieces)):
            self.reasoning_tokens += tokens
        events: list[Event] = []
        content = reasoning = ""
        for piece in pieces:
            if isinstance(piece, ContentText):
                content += piece.text
            elif isinstance(piece, ReasoningText):
                reasoning += piece.text
            elif isinstance(piece, DuplicateCall):
                self.duplicate = True
            else:
                if content or reasoning:
                    events.append(Delta(content, 0, index, reasoning=reasoning))
                    content = reasoning = ""
                if isinstance(piece, ToolCallStart):
                    self.calls += 1
                    events.append(ToolCallDelta(index, piece.index, piece.id, piece.name, ""))
                else:
                    events.append(ToolCallDelta(index, piece.index, None, None, piece.fragment))
        if content or reasoning or logprobs or tokens:
            events.append(Delta(content, tokens, index, logprobs, reasoning))
        return events
