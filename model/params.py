"""Validated generation parameters: what a request asks of the engine.

Pure data, built by the HTTP layer after validation; the engine trusts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .chat_output import ChatOutput

__all__ = ["GenerationRequest", "Grammar", "SamplingParams"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick each next token. Defaults follow the OpenAI API."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    #: How many recent tokens the penalties look at.
    penalty_last_n: int = 64
    logit_bias: Mapping[int, float] = field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def penalized(self) -> bool:
        return (
            self.repeat_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


@dataclass(frozen=True, slots=True)
class Grammar:
    """A llama.cpp GBNF grammar the output must match (structured output, forced tools)."""

    text: str
    root: str = "root"
    #: The request parameter that asked for it, named when it ends a sequence early.
    param: str = "response_format"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One sequence to generate: a tokenized prompt and when to stop."""

    prompt: tuple[int, ...]
    sampling: SamplingParams = SamplingParams()
    #: Upper bound on generated tokens; the context size bounds it too.
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    #: Keep going past end-of-generation tokens (benchmarks, and llama.cpp server parity).
    ignore_eos: bool = False
    #: ``time.monotonic()`` after which the generation ends (queued or running).
    deadline: float | None = None
    #: Independent choices generated from one reading of the prompt.
    n: int = 1
    #: None: no logprobs; otherwise how many top alternatives to report per token (0-20).
    logprobs: int | None = None
    grammar: Grammar | None = None
    #: How a chat answer is read by its model family (reasoning, the family's calls); None:
    #: plain text output.
    output: ChatOutput | None = None
