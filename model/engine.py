"""The engine thread: owns the llama.cpp context and runs every sequence in one batch.

Each step is one ``llama_decode`` holding the next token of every decoding sequence plus
prompt chunks of sequences still reading their prompt, under a per-step token budget, so
a long prompt never stalls running streams. Requests wait in a bounded first-come,
first-served queue for a free slot. A sequence whose consumer is not accepting is skipped
(its KV stays) and dropped if that lasts past ``stall_timeout``; one whose consumer left,
that was cancelled, or whose deadline passed ends at the next step. The events of a step
go out in one :data:`~model.events.Dispatch` call, which never blocks: the engine never
waits on a client.

A sequence whose grammar cannot go on (no token fits, or its grammar work passed
``grammar_token_limit``; see :mod:`model.sampling`) ends with an error naming the constraint,
and every other sequence goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import llama_cpp

from .errors import CapacityExceeded
from .events import Dispatch, Event, SequenceSink
from .llama import Batch, LlamaContext, LlamaModel, ModelLoadError
from .logprobs import token_logprob
from .params import GenerationRequest
from .sampling import Candidates, ConstraintFailed, Sampler
from .sequence import Phase, Sequence

__all__ = ["Engine", "EngineOptions", "EngineStats", "QueueFull"]

_log = logging.getLogger("sluice.engine")


class QueueFull(CapacityExceeded):
    """Every slot is busy and the wait queue is at its limit."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    #: Sequences decoded together; each has its own KV stream of ``ctx_size`` tokens.
    slots: int = 4
    #: Context per sequence (prompt plus completion), in tokens.
    ctx_size: int = 4096
    #: Tokens per decode step, shared by decoding sequences and prompt chunks.
    batch_size: int = 512
    #: Prompt tokens read per step while other sequences are decoding, so a long prompt
    #: slows running streams by a bounded amount instead of stalling them.
    prefill_chunk: int = 128
    threads: int = 2
    #: Requests waiting for a slot before new ones are refused.
    max_queue: int = 64
    #: Seconds a paused sequence (its client not reading) keeps its slot before it is dropped.
    stall_timeout: float = 30.0
    #: CPU seconds sampling one token of a constrained sequence may take (twice in a row).
    grammar_token_limit: float = 0.25
    #: Seconds :meth:`Engine.close` waits for the engine thread.
    close_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class EngineStats:
    active: int
    queued: int
    #: Decode steps so far: a clock that counts work, not seconds.
    steps: int
    slots: int
    ctx_size: int
    #: Sequences that ever got a slot.
    admitted: int
    #: Times a sequence was paused because its client was not reading.
    pauses: int
    #: Sequences dropped because their client stopped reading for too long.
    stalled: int
    #: Sequences ended by their deadline.
    expired: int
    #: Sequences ended because their client went away.
    gone: int
    #: Sequences ended by :meth:`Engine.cancel_all` (shutdown).
    evicted: int
    #: KV cells holding tokens, over all slots (idle slots keep theirs for prefix reuse).
    kv_used: int


class _Slot:
    __slots__ = ("cached", "index", "sequence")

    def __init__(self, index: int) -> None:
        self.index = index
        self.sequence: Sequence | None = None
        #: Tokens whose KV this slot holds, kept after a request ends for prefix reuse.
        self.cached: list[int] = []


def _common_prefix(a: list[int], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


Outbox = list[tuple[SequenceSink, Event]]


class Engine:
    """Runs generation requests on one loaded model, many at a time."""

    def __init__(self, model: LlamaModel, options: EngineOptions, dispatch: Dispatch) -> None:
        """Create the context (not the thread: :meth:`start`).

        :raises ~model.llama.ModelLoadError: llama.cpp cannot make the context, or
            ``ctx_size`` is beyond what the model was trained for (its RoPE scaling counted).
        """
        # A context far past training "loads" (the KV cache is only reserved) and fails later.
        scale = float(llama_cpp.llama_model_rope_freq_scale_train(model.ptr))
        trained = int(model.n_ctx_train / scale) if 0 < scale <= 1 else model.n_ctx_train
        if options.ctx_size > trained:
            raise ModelLoadError(
                f"a context of {options.ctx_size} tokens per slot is more than the model was "
                f"trained for ({trained}); use a smaller --ctx-size"
            )
        self.model = model
        self.options = options
        self._dispatch = dispatch
        self._ctx = LlamaContext(
            model,
            n_ctx_seq=options.ctx_size,
            n_seq=options.slots,
            n_batch=options.batch_size,
            n_threads=options.threads,
        )
        self.ctx_size = self._ctx.n_ctx_seq
        self._batch = Batch(options.batch_size)
        self._candidates = Candidates(model.n_vocab)
        self._slots = [_Slot(i) for i in range(options.slots)]
        self._queue: deque[Sequence] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._steps = 0
        self._admitted = 0
        self._pauses = 0
        self._stalled = 0
        self._expired = 0
        self._gone = 0
        self._evicted = 0
        #: Set by cancel_all(): the message the engine thread ends every sequence with.
        self._eviction: str | None = None
        self._thread = threading.Thread(target=self._run, name="sluice-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> bool:
        """Stop the thread; sequences still running end with ``cancelled``.

        Waits ``options.close_timeout`` seconds at most. Returns False when the thread is
        still busy inside llama.cpp then: its native memory is left to the exiting process
        (freeing it under a running call would crash), and so must the model's be.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(self.options.close_timeout)
            if self._thread.is_alive():
                _log.error(
                    "the engine thread is still inside llama.cpp after %gs; "
                    "leaving its memory to the exiting process",
                    self.options.close_timeout,
                )
                return False
        self._batch.close()
        self._ctx.close()
        return True

    def submit(self, request: GenerationRequest, sink: SequenceSink) -> None:
        """Queue a request; events go to ``sink`` through the engine's dispatch, and the
        sink going away (``gone``) cancels it.

        Thread-safe and non-blocking. Raises :class:`QueueFull` when the wait queue is full.
        The prompt must already fit: ``len(request.prompt) < ctx_size``.
        """
        if not 0 < len(request.prompt) < self.ctx_size:
            raise ValueError(f"prompt of {len(request.prompt)} tokens does not fit the context")
        if not 0 < request.n <= self.options.slots:
            raise ValueError(f"n={request.n} choices need as many slots ({self.options.slots})")
        # Choice 0 reads the prompt; the others fork from it and share what it read.
        group = [Sequence(request, sink, self.model, i) for i in range(request.n)]
        group[0].forks = group[1:]
        with self._cond:
            if self._stopping:
                raise RuntimeError("the engine is stopped")
            waiting = len(self._queue)
            free = sum(1 for slot in self._slots if slot.sequence is None)
            if waiting >= free + self.options.max_queue:
                raise QueueFull(f"{waiting} requests already wait for a slot")
            self._queue.append(group[0])
            self._cond.notify()

    def cancel_all(self, message: str) -> None:
        """End every running and queued sequence at the next step, with ``message``.

        Thread-safe and non-blocking; the engine stays usable afterwards.
        """
        with self._cond:
            self._eviction = message
            self._cond.notify()

    def wake(self) -> None:
        """Tell the engine a consumer resumed, left or cancelled. Thread-safe, non-blocking."""
        with self._cond:
            self._cond.notify()

    def stats(self) -> EngineStats:
        with self._cond:
            active = sum(1 for slot in self._slots if slot.sequence is not None)
            queued = len(self._queue)
        return EngineStats(
            active,
            queued,
            self._steps,
            self.options.slots,
            self.ctx_size,
            self._admitted,
            self._pauses,
            self._stalled,
            self._expired,
            self._gone,
            self._evicted,
            sum(len(slot.cached) for slot in self._slots),
        )

    # -- engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    break
                if not self._has_work():
                    # Nothing to decode: sleep until a submit or wake(), but look again
                    # now and then while sequences exist, for deadlines and stalled clients.
                    busy = self._queue or any(s.sequence for s in self._slots)
                    self._cond.wait(timeout=0.1 if busy else None)
            events: Outbox = []
            try:
                now = time.monotonic()
                self._retire(events, now)
                self._admit()
                self._step(events, now)
            except Exception:
                _log.exception("decode step failed; ending the sequences in it")
                events.extend(self._fail_all("internal error while generating"))
            if events:
                self._dispatch(events)
        events = []
        for sequence in list(self._running()):
            events.extend((sequence.sink, e) for e in sequence.finish("cancelled"))
            self._release(sequence)
        for sequence in self._queue:
            events.extend((sequence.sink, e) for e in sequence.finish("cancelled"))
        self._queue.clear()
        if events:
            self._dispatch(events)

    def _running(self) -> Iterator[Sequence]:
        return (slot.sequence for slot in self._slots if slot.sequence is not None)

    def _occupied(self) -> Iterator[tuple[_Slot, Sequence]]:
        return ((slot, slot.sequence) for slot in self._slots if slot.sequence is not None)

    def _has_work(self) -> bool:
        if self._eviction is not None:
            return True
        if any(s.sink.gone for s in self._queue):
            return True
        if self._queue and any(slot.sequence is None for slot in self._slots):
            return True
        return any(s.sink.accepting or s.sink.gone for s in self._running())

    def _retire(self, events: Outbox, now: float) -> None:
        """End sequences whose client left, whose deadline passed, or that stalled too long.

        A queued request leaves with all its choices (they share sink and deadline).
        """
        with self._cond:
            eviction, self._eviction = self._eviction, None
            queued = list(self._queue)
        for sequence in list(self._running()):
            produced = self._ending(sequence, now, eviction)
            if produced:
                events.extend((sequence.sink, e) for e in produced)
                self._release(sequence)
        for leader in queued:
            produced = self._ending(leader, now, eviction)
            if not produced:
                continue
            with self._cond:
                self._queue.remove(leader)
            events.extend((leader.sink, e) for e in produced)
            for fork in leader.forks:
                events.extend((fork.sink, e) for e in self._ending(fork, now, eviction))

    def _ending(self, sequence: Sequence, now: float, eviction: str | None) -> list[Event]:
        """The events that end ``sequence`` now, or none when it goes on."""
        if sequence.sink.gone:
            self._gone += 1
            return sequence.finish("cancelled")
        if eviction is not None:
            self._evicted += 1
            return sequence.finish("cancelled", eviction)
        if sequence.expired(now):
            self._expired += 1
            return sequence.finish("deadline", sequence.deadline_message())
        stall = self.options.stall_timeout
        if sequence.paused_since is not None and now - sequence.paused_since > stall:
            self._stalled += 1
            message = f"the client read nothing for {stall:g} s; the generation was dropped"
            return sequence.finish("cancelled", message)
        return []

    def _admit(self) -> None:
        while True:
            free = [slot for slot in self._slots if slot.sequence is None]
            with self._cond:
                # A request is admitted with all its choices at once, in arrival order.
                if not self._queue or len(free) < 1 + len(self._queue[0].forks):
                    return
                leader = self._queue.popleft()
            prompt = leader.prompt
            # Prefer the free slot whose cached KV shares the longest prefix with this
            # prompt (the next turn of a chat); at least one prompt token is always read
            # so the step produces logits for it.
            slot = max(free, key=lambda s: (_common_prefix(s.cached, prompt), -len(s.cached)))
            reuse = min(_common_prefix(slot.cached, prompt), len(prompt) - 1)
            self._ctx.forget(slot.index, reuse)
            del slot.cached[reuse:]
            free.remove(slot)
            self._seat(leader, slot, Phase.PROMPT)
            leader.prompt_pos = reuse
            leader.cached_tokens = reuse
            for fork in leader.forks:
                self._seat(fork, free.pop(), Phase.FORK)

    def _seat(self, sequence: Sequence, slot: _Slot, phase: Phase) -> None:
        slot.sequence = sequence
        self._admitted += 1
        sequence.slot = slot.index
        sequence.order = self._admitted
        request = sequence.request
        sequence.sampler = Sampler(
            request.sampling,
            self.model,
            request.grammar,
            choice=sequence.index,
            history=request.prompt,
            candidates=self._candidates,
            grammar_token_limit=self.options.grammar_token_limit,
        )
        sequence.phase = phase

    def _fork(self, leader: Sequence) -> list[Sequence]:
        """Give the waiting choices a copy of the prompt the leader just read."""
        source = self._slots[leader.slot]
        forked = []
        for fork in leader.forks:
            if fork.phase is not Phase.FORK:
                continue
            target = self._slots[fork.slot]
            self._ctx.copy(source.index, target.index)
            target.cached = list(source.cached)
            fork.prompt_pos = leader.prompt_pos
            fork.cached_tokens = leader.cached_tokens
            forked.append(fork)
        return forked

    def _step(self, events: Outbox, now: float) -> None:
        batch = self._batch
        batch.clear()
        sampled: list[tuple[_Slot, Sequence, int]] = []
        prompts: list[tuple[_Slot, Sequence]] = []
        for slot, sequence in self._occupied():
            if sequence.phase is Phase.PROMPT:
                prompts.append((slot, sequence))
            elif sequence.phase is not Phase.DECODE:
                continue  # a fork waiting for its leader's prompt
            elif not sequence.sink.accepting:
                # Paused: its KV stays, its slot stays, the others go on.
                if sequence.paused_since is None:
                    sequence.paused_since = now
                    self._pauses += 1
            elif batch.n < batch.capacity:
                sequence.paused_since = None
                index = batch.add(sequence.last_token, len(slot.cached), slot.index, True)
                slot.cached.append(sequence.last_token)
                sampled.append((slot, sequence, index))
        budget = batch.capacity - batch.n
        if sampled:
            budget = min(budget, self.options.prefill_chunk)
        # Prompts are read in admission order: first come, first served.
        for slot, sequence in sorted(prompts, key=lambda p: p[1].order):
            if budget <= 0:
                break
            start = sequence.prompt_pos
            chunk = sequence.prompt[start : start + budget]
            for offset, token in enumerate(chunk):
                index = batch.add(token, start + offset, slot.index, False)
            slot.cached.extend(chunk)
            sequence.prompt_pos += len(chunk)
            budget -= len(chunk)
            if sequence.prompt_pos == len(sequence.prompt):
                batch.raw.logits[index] = True
                sampled.append((slot, sequence, index))
        if batch.n == 0:
            return
        rc = self._ctx.decode(batch)
        self._steps += 1
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {batch.n} tokens")
        for _slot, sequence, index in list(sampled):
            if sequence.phase is Phase.PROMPT and sequence.forks:
                # The other choices sample their first token from these same logits.
                sampled.extend((self._slots[f.slot], f, index) for f in self._fork(sequence))
        for slot, sequence, index in sampled:
            picked = self._sample(sequence, index, events)
            if picked is None:
                continue
            token = picked
            sequence.phase = Phase.DECODE
            top = sequence.request.logprobs
            logprob = None
            if top is not None:
                logprob = token_logprob(self._ctx.ptr, index, self.model.n_vocab, token, top)
            room = self.ctx_size - len(slot.cached)
            produced = sequence.on_token(
                token, eog=self.model.is_eog(token), room=room, logprob=logprob
            )
            events.extend((sequence.sink, e) for e in produced)
            if sequence.phase is Phase.DONE:
                self._release(sequence)

    def _sample(self, sequence: Sequence, index: int, events: Outbox) -> int | None:
        """The sequence's next token; None when its grammar ended it (events say why)."""
        assert sequence.sampler is not None
        try:
            return sequence.sampler.sample(self._ctx.ptr, index)
        except ConstraintFailed as exc:
            grammar = sequence.request.grammar
            name = grammar.param if grammar else "request"
            message = f"the {name} grammar {exc}" if name != "grammar" else f"the grammar {exc}"
        events.extend((sequence.sink, e) for e in sequence.finish("error", message))
        self._release(sequence)
        return None

    def _release(self, sequence: Sequence) -> None:
        # The slot keeps its KV (and ``cached`` says exactly what it holds) for prefix reuse.
        self._slots[sequence.slot].sequence = None
        if sequence.sampler is not None:
            sequence.sampler.close()
            sequence.sampler = None

    def _fail_all(self, message: str) -> Outbox:
        events: Outbox = []
        for slot, sequence in list(self._occupied()):
            events.extend((sequence.sink, e) for e in sequence.finish("error", message))
            self._release(sequence)
            # After a failed decode the KV may not match ``cached``: start the slot afresh.
            self._ctx.forget(slot.index, 0)
            slot.cached = []
        return events
