"""One request's life inside the engine: prompt reading, decoding, stopping."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable

from .detokenizer import Detokenizer
from .events import Delta, Event, Finished, FinishReason, SequenceSink, Usage
from .params import GenerationRequest
from .sampling import Sampler
from .stop import StopMatcher

__all__ = ["Phase", "Sequence", "SequenceHandle"]


class Phase(enum.Enum):
    QUEUED = "queued"
    PROMPT = "prompt"
    DECODE = "decode"
    DONE = "done"


class SequenceHandle:
    """What a submitter holds: a way to cancel. Events go to the sink it submitted."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._cancelled = threading.Event()
        self._wake = wake

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop generating; the engine frees the slot at its next step. Idempotent."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._wake()


class Sequence:
    """Engine-thread state of one generation. Only the engine thread touches it."""

    def __init__(
        self,
        request: GenerationRequest,
        sink: SequenceSink,
        handle: SequenceHandle,
        piece: Callable[[int], bytes],
    ) -> None:
        self.request = request
        self.sink = sink
        self.handle = handle
        self.phase = Phase.QUEUED
        #: Index of the slot (and llama.cpp sequence id) while it holds one.
        self.slot = -1
        self.sampler: Sampler | None = None
        #: Prompt tokens in the KV cache so far (reused from an earlier request, or read).
        self.prompt_pos = 0
        self.cached_tokens = 0
        self.generated = 0
        self.last_token = -1
        #: Admission number, for first-come, first-served prompt reading.
        self.order = 0
        #: Engine clock when its consumer stopped accepting; None while it reads.
        self.paused_since: float | None = None
        self._detokenizer = Detokenizer(piece)
        self._stop = StopMatcher(request.stop)

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
        return Usage(len(self.prompt), self.generated, self.cached_tokens)

    def on_token(self, token: int, *, eog: bool, room: int) -> list[Event]:
        """Account for one sampled token; ``room`` is how many more fit in the context."""
        if eog and not self.request.ignore_eos:
            # The end-of-generation token is not output: it is neither shown nor counted.
            return self._end("stop", "")
        self.generated += 1
        self.last_token = token
        text, stopped = self._stop.push(self._detokenizer.push(token))
        if stopped:
            return self._events(text, "stop")
        limit = self.request.max_tokens
        if (limit is not None and self.generated >= limit) or room <= 0:
            return self._end("length", text)
        return [Delta(text, 1)] if text else []

    def finish(self, reason: FinishReason, message: str = "") -> list[Event]:
        """End early (cancelled, error): nothing held back is sent."""
        self.phase = Phase.DONE
        return [Finished(reason, self.usage(), message)]

    def _end(self, reason: FinishReason, text: str) -> list[Event]:
        # A natural end: bytes and stop-string prefixes held back are real output now,
        # unless the very last bytes complete a stop string after all.
        cut = reason == "length"
        tail, stopped = self._stop.push(self._detokenizer.flush(cut=cut))
        if not stopped:
            tail += self._stop.flush()
            stopped = self._stop.matched
        return self._events(text + tail, "stop" if stopped else reason)

    def _events(self, text: str, reason: FinishReason) -> list[Event]:
        self.phase = Phase.DONE
        events: list[Event] = [Delta(text, 0)] if text else []
        events.append(Finished(reason, self.usage()))
        return events
