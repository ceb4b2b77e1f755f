"""The engine thread: owns the llama.cpp context and runs every sequence in one batch.

Each step is one ``llama_decode`` holding the next token of every decoding sequence plus
prompt chunks of sequences still reading their prompt, under a per-step token budget, so
a long prompt never stalls running streams. Requests wait in a bounded first-come,
first-served queue for a free slot and for room in the KV pool (:mod:`model.kv_pool`).
When the pool runs short, idle cached prefixes are dropped first (least recently used);
if that is not enough, the youngest running sequence is preempted: its KV is given back and
it waits at the head of the queue, then reads its prompt and the tokens it generated again
and goes on where it was (its sampler, detokenizer and stop matcher keep their state), so
no running sequence is ever cut short or corrupted. A sequence whose consumer is not
accepting is skipped (its KV stays) and dropped if that lasts past ``stall_timeout``; one
whose consumer left, that was cancelled, or whose deadline passed ends at the next step.
The events of a step go out in one :data:`~model.events.Dispatch` call, which never
blocks: the engine never waits on a client.

A sequence whose grammar cannot go on (no token fits, or its grammar work passed
``grammar_token_limit``; see :mod:`model.sampling`) ends with an error naming the constraint,
and every other sequence goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import llama_cpp

from .engine_options import EngineOptions, EngineStats
from .errors import CapacityExceeded
from .events import Dispatch, Event, SequenceSink
from .kv_pool import KVPool, Slot
from .llama import Batch, LlamaContext, LlamaModel, ModelLoadError
from .logprobs import token_logprob
from .params import GenerationRequest
from .sampling import Candidates, ConstraintFailed, Sampler
from .scheduler import Scheduler
from .sequence import Phase, Sequence

__all__ = ["Engine", "EngineOptions", "EngineStats", "QueueFull"]

_log = logging.getLogger("sluice.engine")


class QueueFull(CapacityExceeded):
    """Every slot is busy and the wait queue is at its limit."""


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
                f"a context of {options.ctx_size} tokens per sequence is more than the model "
                f"was trained for ({trained}); use a smaller --ctx-size"
            )
        per_sequence = options.kv_size // options.slots if options.kv_per_slot else options.kv_size
        if per_sequence < options.ctx_size:
            raise ModelLoadError(
                f"a KV pool of {options.kv_size} cells cannot hold one sequence of "
                f"{options.ctx_size} tokens"
                + (f" in each of {options.slots} slots" if options.kv_per_slot else "")
                + "; use a larger --kv-size or a smaller --ctx-size"
            )
        self.model = model
        self.options = options
        self._dispatch = dispatch
        self._ctx = LlamaContext(
            model,
            n_ctx=options.kv_size,
            n_seq=options.slots,
            n_batch=options.batch_size,
            n_threads=options.threads,
            per_slot=options.kv_per_slot,
        )
        self.ctx_size = options.ctx_size
        if self._ctx.n_ctx < options.ctx_size:  # never so after the checks above; be sure
            self._ctx.close()
            raise ModelLoadError(
                f"llama.cpp made {self._ctx.n_ctx} KV cells, not {options.kv_size}"
            )
        self._batch = Batch(options.batch_size)
        self._candidates = Candidates(model.n_vocab)
        self._pool = KVPool(self._ctx, options.slots)
        self._slots = self._pool.slots
        self._cond = threading.Condition()
        self._schedule = Scheduler(self._pool, self._cond, self._seat)
        self._queue = self._schedule.queue
        self._resume = self._schedule.resume
        #: This thread's CPU time in the loop iterations that decoded, outside llama_decode:
        #: the host's work (batch, sampling, detokenizing, stops, dispatch). Decode wall
        #: time too, for the share; and this thread's CPU clock around the last decode.
        self._host_ns = 0
        self._decode_ns = 0
        self._decode_at = (0, 0)
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
            # Choices sharing a prompt count it once each (see model.kv_pool): capped.
            min(self._pool.used(), self._pool.cells),
            self._pool.cells,
            self._schedule.preempted,
            self._pool.evictions,
            self._host_ns / 1e9,
            self._decode_ns / 1e9,
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
            # CPU time of this thread: what the loop costs, whatever else the machine runs.
            started = time.thread_time_ns()
            steps = self._steps
            try:
                now = time.monotonic()
                self._retire(events, now)
                self._schedule.admit()
                self._schedule.make_room()
                self._step(events, now)
            except Exception:
                _log.exception("decode step failed; ending the sequences in it")
                events.extend(self._fail_all("internal error while generating"))
            if events:
                self._dispatch(events)
            if self._steps != steps:
                # Measured around the decode call, never as a difference with its much
                # larger time, which would drown the host's share in that time's noise.
                before = self._decode_at[0] - started
                self._host_ns += before + time.thread_time_ns() - self._decode_at[1]
        events = []
        for sequence in list(self._running()):
            events.extend((sequence.sink, e) for e in sequence.finish("cancelled"))
            self._release(sequence)
        for leader in self._queue:
            for sequence in self._schedule.group(leader):
                events.extend((sequence.sink, e) for e in sequence.finish("cancelled"))
                self._close_sampler(sequence)
        self._queue.clear()
        if events:
            self._dispatch(events)

    def _running(self) -> Iterator[Sequence]:
        return (slot.sequence for slot in self._slots if slot.sequence is not None)

    def _occupied(self) -> Iterator[tuple[Slot, Sequence]]:
        return ((slot, slot.sequence) for slot in self._slots if slot.sequence is not None)

    def _has_work(self) -> bool:
        if self._eviction is not None:
            return True
        if any(s.sink.gone for s in self._queue):
            return True
        if (
            self._queue
            and not self._schedule.room_wait
            and any(s.sequence is None for s in self._slots)
        ):
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
            forks = self._schedule.group(leader)[1:]
            self._close_sampler(leader)
            for fork in forks:
                events.extend((fork.sink, e) for e in self._ending(fork, now, eviction))
                self._close_sampler(fork)

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

    def _seat(self, sequence: Sequence, slot: Slot, phase: Phase) -> None:
        slot.sequence = sequence
        sequence.slot = slot.index
        if not sequence.order:  # a preempted sequence keeps its age
            self._admitted += 1
            sequence.order = self._admitted
        sequence.phase = phase
        request = sequence.request
        if sequence.sampler is None:
            sequence.sampler = Sampler(
                request.sampling,
                self.model,
                request.grammar,
                choice=sequence.index,
                history=request.prompt,
                candidates=self._candidates,
                grammar_token_limit=self.options.grammar_token_limit,
            )

    def _fork(self, leader: Sequence) -> list[Sequence]:
        """Give the waiting choices a copy of the prompt the leader just read."""
        source = self._slots[leader.slot]
        forked = []
        for fork in leader.forks:
            if fork.phase is not Phase.FORK:
                continue
            self._pool.copy(source, self._slots[fork.slot])
            fork.prompt_pos = leader.prompt_pos
            fork.cached_tokens = leader.cached_tokens
            forked.append(fork)
        return forked

    def _step(self, events: Outbox, now: float) -> None:
        batch = self._batch
        batch.clear()
        sampled: list[tuple[Slot, Sequence, int]] = []
        prompts: list[tuple[Slot, Sequence]] = []
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
            source = self._schedule.source(sequence)
            chunk = source[start : start + budget]
            for offset, token in enumerate(chunk):
                index = batch.add(token, start + offset, slot.index, False)
            slot.cached.extend(chunk)
            sequence.prompt_pos += len(chunk)
            budget -= len(chunk)
            if sequence.prompt_pos < len(source):
                continue
            if sequence in self._resume:
                # Back where it was preempted: its pending token is decoded next step.
                del self._resume[sequence]
                sequence.phase = Phase.DECODE
            else:
                batch.raw.logits[index] = True
                sampled.append((slot, sequence, index))
        if batch.n == 0:
            return
        started, wall = time.thread_time_ns(), time.perf_counter_ns()
        rc = self._ctx.decode(batch)
        self._decode_ns += time.perf_counter_ns() - wall
        self._decode_at = (started, time.thread_time_ns())
        self._steps += 1
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {batch.n} tokens")
        best = self._argmax(sampled)
        for _slot, sequence, index in list(sampled):
            if sequence.phase is Phase.PROMPT and sequence.forks:
                # The other choices sample their first token from these same logits.
                sampled.extend((self._slots[f.slot], f, index) for f in self._fork(sequence))
        for slot, sequence, index in sampled:
            assert sequence.sampler is not None
            if best is not None and sequence.sampler.argmax:
                picked: int | None = best[index]
            else:
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

    def _argmax(self, sampled: list[tuple[Slot, Sequence, int]]) -> dict[int, int] | None:
        """The highest logit's token at each batch position that has logits, when some
        sequence of this step takes just that (see :attr:`Sampler.argmax`).

        One array operation for the whole step: the logits of every sampled position lie
        row after row, in batch order, which is the order of ``sampled``.
        """
        if not any(s.sampler is not None and s.sampler.argmax for _, s, _ in sampled):
            return None
        best = self._ctx.logits(len(sampled)).argmax(axis=1).tolist()
        return {index: token for (_, _, index), token in zip(sampled, best, strict=True)}

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
        self._pool.release(self._slots[sequence.slot])
        self._close_sampler(sequence)

    def _close_sampler(self, sequence: Sequence) -> None:
        self._resume.pop(sequence, None)
        if sequence.sampler is not None:
            sequence.sampler.close()
            sequence.sampler = None

    def _fail_all(self, message: str) -> Outbox:
        events: Outbox = []
        for slot, sequence in list(self._occupied()):
            events.extend((sequence.sink, e) for e in sequence.finish("error", message))
            self._release(sequence)
            # After a failed decode the KV may not match ``cached``: start the slot afresh.
            self._pool.forget(slot)
        return events
