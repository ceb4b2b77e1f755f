"""One choice's life inside the engine: prompt reading, decoding, stopping."""

from __future__ import annotations

import enum
from collections import deque
from typing import Protocol

from .chat_output import ChatOutputReader
from .detokenizer import Detokenizer
from .events import (
    Delta,
    Event,
    Finished,
    FinishReason,
    SequenceSink,
    TokenChoice,
    TokenLogprobs,
    Usage,
)
from .logprobs import TokenLogprob
from .params import GenerationRequest
from .sampling import Sampler
from .stop import StopMatcher

__all__ = ["Phase", "Pieces", "Sequence"]


class Phase(enum.Enum):
    QUEUED = "queued"
    #: Waits for its group's first choice to read the shared prompt.
    FORK = "fork"
    PROMPT = "prompt"
    DECODE = "decode"
    DONE = "done"


class Pieces(Protocol):
    def piece(self, token: int, *, special: bool = False) -> bytes: ...


class _LogprobAligner:
    """Hands out each token's logprobs together with the text that completes its bytes.

    Text reaches the client later than tokens (split characters, held-back stop-string
    prefixes), so entries wait until the emitted text covers their bytes; at the end, tokens
    that contributed any emitted byte are included and the rest (a matched stop) dropped.
    """

    def __init__(self, pieces: Pieces) -> None:
        self._pieces = pieces
        self._waiting: deque[tuple[int, int, TokenLogprobs]] = deque()
        self._produced = 0  # bytes of all sampled tokens
        self._emitted = 0  # bytes of text sent

    def add(self, logprob: TokenLogprob) -> None:
        data = self._pieces.piece(logprob.token)
        start = self._produced
        self._produced += len(data)
        chosen = TokenChoice(data.decode("utf-8", "replace"), data, logprob.logprob)
        top = tuple(self._choice(token, value) for token, value in logprob.top)
        self._waiting.append((start, self._produced, TokenLogprobs(chosen, top)))

    def _choice(self, token: int, logprob: float) -> TokenChoice:
        data = self._pieces.piece(token, special=True)
        return TokenChoice(data.decode("utf-8", "replace"), data, logprob)

    def release(self, text: str, *, final: bool) -> tuple[TokenLogprobs, ...]:
        self._emitted += len(text.encode("utf-8"))
        ready: list[TokenLogprobs] = []
        while self._waiting:
            start, end, entry = self._waiting[0]
            if end <= self._emitted or (final and start < self._emitted):
                ready.append(entry)
                self._waiting.popleft()
            else:
                break
        if final:
            self._waiting.clear()
        return tuple(ready)


class Sequence:
    """Engine-thread state of one choice of a request. Only the engine thread touches it."""

    def __init__(
        self,
        request: GenerationRequest,
        sink: SequenceSink,
        pieces: Pieces,
        index: int = 0,
    ) -> None:
        self.request = request
        self.sink = sink
        self.index = index
        self.phase = Phase.QUEUED
        #: Index of the slot (and llama.cpp sequence id) while it holds one.
        self.slot = -1
        self._sampler: Sampler | None = None
        #: The other choices of the request, which fork from this one after its prompt.
        self.forks: list[Sequence] = []
        #: Prompt tokens in the KV cache so far (reused from an earlier request, or read).
        self.prompt_pos = 0
        self.cached_tokens = 0
        self.generated = 0
        self.last_token = -1
        #: Admission number, for first-come, first-served prompt reading.
        self.order = 0
        #: Engine clock when its consumer stopped accepting; None while it reads.
        self.paused_since: float | None = None
        output = request.output
        self._reader: ChatOutputReader | None = output.reader() if output else None
        if output is not None and output.marker_tokens:
            markers = output.marker_tokens
            self._detokenizer = Detokenizer(lambda t: pieces.piece(t, special=t in markers))
        else:
            self._detokenizer = Detokenizer(pieces.piece)
        self._stop = StopMatcher(request.stop)
        self._logprobs = _LogprobAligner(pieces) if request.logprobs is not None else None

    @property
    def sampler(self) -> Sampler | None:
        """The sequence's sampler while it holds a slot (the engine sets it)."""
        return self._sampler

    @sampler.setter
    def sampler(self, sampler: Sampler | None) -> None:
        self._sampler = sampler
        if sampler is not None and self._reader is not None:
            # A grammar applies from the end of the reasoning (which the prompt may open).
            sampler.grammar_held = self._reader.in_reasoning
            self._close_reasoning()

    def _close_reasoning(self) -> None:
        reader, sampler = self._reader, self._sampler
        if reader is None or sampler is None:
            return
        if reader.budget_spent():
            reader.closed = True
            sampler.force(reader.output.end_of_reasoning)
        # Released once, for good: a grammar that saw part of the answer must see all of it
        # (harmony's reasoning is a channel, which a grammar may itself allow).
        sampler.grammar_held = sampler.grammar_held and reader.in_reasoning

    @property
    def prompt(self) -> tuple[int, ...]:
        return self.request.prompt

    def expired(self, now: float) -> bool:
        deadline = self.request.deadline
        return deadline is not None and now >= deadline

    def deadline_message(self) -> str:
        where = "in the queue" if self.phase is Phase.QUEUED else f"after {self.generated} tokens"
        return f"the request deadline passed {where}"

    def usage(self) -> Usage:
        reasoning = self._reader.reasoning_tokens if self._reader else 0
        return Usage(len(self.prompt), self.generated, self.cached_tokens, reasoning)

    def on_token(
        self, token: int, *, eog: bool, room: int, logprob: TokenLogprob | None = None
    ) -> list[Event]:
        """Account for one sampled token; ``room`` is how many more fit in the context."""
        output = self.request.output
        eog = eog or (output is not None and token in output.end_tokens)
        if eog and not self.request.ignore_eos:
            # The end-of-generation token is not output: it is neither shown nor counted.
            return self._end("stop", "", tokens=0)
        self.generated += 1
        self.last_token = token
        if self._logprobs is not None and logprob is not None:
            self._logprobs.add(logprob)
        text, stopped = self._stop.push(self._detokenizer.push(token))
        if stopped:
            return self._events(text, "stop", tokens=1)
        limit = self.request.max_tokens
        if (limit is not None and self.generated >= limit) or room <= 0:
            return self._end("length", text, tokens=1)
        events = self._emit(text, 1, final=False)
        if self._reader is not None:
            if self._reader.duplicate:
                # The answer began to repeat its calls: it is over.
                self.phase = Phase.DONE
                events += self._emit("", 0, final=True, truncated=True)
                events.append(Finished("tool_calls", self.usage(), index=self.index))
                return events
            self._close_reasoning()
        return events

    def finish(self, reason: FinishReason, message: str = "") -> list[Event]:
        """End early (cancelled, deadline, error): nothing held back is sent."""
        self.phase = Phase.DONE
        return [Finished(reason, self.usage(), message, self.index)]

    def _end(self, reason: FinishReason, text: str, *, tokens: int) -> list[Event]:
        # A natural end: bytes and stop-string prefixes held back are real output now,
        # unless the very last bytes complete a stop string after all.
        cut = reason == "length"
        tail, stopped = self._stop.push(self._detokenizer.flush(cut=cut))
        if not stopped:
            tail += self._stop.flush()
            stopped = self._stop.matched
        return self._events(text + tail, "stop" if stopped else reason, tokens=tokens)

    def _events(self, text: str, reason: FinishReason, *, tokens: int) -> list[Event]:
        """The last text (``tokens``: whether it carries this step's token) and the finish."""
        self.phase = Phase.DONE
        events = self._emit(text, tokens, final=True, truncated=reason == "length")
        calls = self._reader.calls if self._reader else 0
        if calls and reason == "stop":
            reason = "tool_calls"
        matched = self._stop.which if reason == "stop" else None
        events.append(Finished(reason, self.usage(), index=self.index, stop_sequence=matched))
        return events

    def _emit(self, text: str, tokens: int, *, final: bool, truncated: bool = False) -> list[Event]:
        """Output text as events: content, or (a chat answer read by its family) reasoning
        and tool-call parts too."""
        entries = self._logprobs.release(text, final=final) if self._logprobs else ()
        if self._reader is not None:
            return self._reader.events(
                text, tokens, self.index, entries, final=final, truncated=truncated
            )
        return [Delta(text, tokens, self.index, entries)] if text or entries or tokens else []
