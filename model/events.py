"""What a sequence tells its consumer, and what the engine needs from that consumer.

These types are pure data: the HTTP side imports them without touching llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "Delta",
    "Dispatch",
    "Event",
    "FinishReason",
    "Finished",
    "SequenceSink",
    "TokenChoice",
    "TokenLogprobs",
    "ToolCallDelta",
    "Usage",
]

#: ``stop`` and ``length`` are OpenAI's; the others end a stream early for a server reason.
FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "deadline", "error"]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    #: Completion tokens spent reasoning (a think block, harmony's analysis channel).
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TokenChoice:
    """One token as a client sees it in logprobs: its text, raw bytes and log-probability."""

    text: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    chosen: TokenChoice
    #: The most likely tokens at that position, best first.
    top: tuple[TokenChoice, ...]


@dataclass(frozen=True, slots=True)
class Delta:
    """New output text of choice ``index``, and how many sampled tokens it accounts for.

    ``logprobs`` (when asked for) covers exactly the tokens whose bytes this text completes.
    ``reasoning``: new reasoning text (a chat answer read by its model family), apart from
    the answer's ``text``.
    """

    text: str
    tokens: int
    index: int = 0
    logprobs: tuple[TokenLogprobs, ...] = ()
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Part of tool call ``call`` of choice ``index``: its start (``id`` and ``name`` set,
    empty ``arguments``) or the next fragment of its JSON arguments."""

    index: int
    call: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class Finished:
    """Choice ``index`` is complete; a request with ``n`` choices gets ``n`` of these."""

    reason: FinishReason
    usage: Usage
    #: For the server's reasons (cancelled, deadline, error): a client-safe description.
    message: str = ""
    index: int = 0
    #: For ``stop`` at a stop string (not an end-of-generation token): that string.
    stop_sequence: str | None = None


Event = Delta | ToolCallDelta | Finished


class SequenceSink(Protocol):
    """The consumer side of one sequence, as seen from the engine thread.

    ``accepting`` is read by the engine thread before each step: when it is False the
    sequence is paused (its KV stays) and other sequences carry on. ``gone`` tells the
    engine the consumer left, so the sequence is dropped and its slot freed.
    """

    @property
    def accepting(self) -> bool: ...

    @property
    def gone(self) -> bool: ...


#: Hands one decode step's events to the consumers' side in one call. It is called from
#: the engine thread, must be thread-safe and must never block.
Dispatch = Callable[[Sequence[tuple[SequenceSink, Event]]], None]
