"""Admission and room in the KV pool: which queued request runs next, and who gives way.

Requests wait in a first-come, first-served queue. The head is admitted when a slot is free
and the pool can hold what it reads (its prompt, less a cached prefix) with what running
sequences still read, plus headroom for those decoding. Before every step the pool must hold
one more cell per decoding sequence and every unread prompt: idle cached prefixes are
dropped first (least recently used), then the youngest running sequence is preempted. A
preempted sequence goes back to the head of the queue; it reads its prompt and what it had
generated again (from its slot's cache when that is still there) and goes on from where it
was, its sampler, detokenizer and stop matcher untouched. The oldest sequence is never
preempted, and alone a sequence always fits (``ctx_size`` <= the pool), so every sequence
finishes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

from .kv_pool import KVPool, Slot, common_prefix
from .sequence import Phase, Sequence

__all__ = ["Scheduler"]

#: Decode steps' worth of cells kept free per decoding sequence when admitting another,
#: so that a new request is not preempted as soon as it was admitted.
_HEADROOM = 16

Seat = Callable[[Sequence, Slot, Phase], None]


class Scheduler:
    """The wait queue and the pool policy. Engine thread only, except :attr:`queue`, which
    is shared with submitting threads under ``lock``."""

    def __init__(self, pool: KVPool, lock: threading.Condition, seat: Seat) -> None:
        self._pool = pool
        self._slots = pool.slots
        self._cond = lock
        self._seat = seat
        self.queue: deque[Sequence] = deque()
        #: Preempted sequences -> the tokens they must read again before decoding on.
        self.resume: dict[Sequence, list[int]] = {}
        #: The head of the queue waits for KV room, not for a slot.
        self.room_wait = False
        self.preempted = 0

    def _running(self) -> Iterator[Sequence]:
        return (slot.sequence for slot in self._slots if slot.sequence is not None)

    def group(self, leader: Sequence) -> list[Sequence]:
        """A queued leader and the choices admitted with it (none when it is resuming)."""
        if leader in self.resume:
            return [leader]
        return [leader, *leader.forks]

    def source(self, sequence: Sequence) -> tuple[int, ...] | list[int]:
        """The tokens a sequence in :attr:`Phase.PROMPT` reads."""
        return self.resume.get(sequence) or sequence.prompt

    def _reserved(self) -> int:
        """Cells the running sequences still reading will take, first tokens included."""
        total = 0
        for sequence in self._running():
            if sequence.phase is Phase.PROMPT:
                size = len(self.source(sequence))
                total += size - sequence.prompt_pos + 1
                total += sum(size + 1 for f in sequence.forks if f.phase is Phase.FORK)
        return total

    def admit(self) -> None:
        self.room_wait = False
        while True:
            free = [slot for slot in self._slots if slot.sequence is None]
            with self._cond:
                # A request is admitted with all its choices at once, in arrival order.
                if not self.queue:
                    return
                leader = self.queue[0]
                group = self.group(leader)
                if len(free) < len(group):
                    return
            source = self.source(leader)
            # Prefer the free slot whose cached KV shares the longest prefix with this
            # prompt (the next turn of a chat); at least one prompt token is always read
            # so the step produces logits for it.
            slot = max(free, key=lambda s: (common_prefix(s.cached, source), -len(s.cached)))
            reuse = min(common_prefix(slot.cached, source), len(source) - 1)
            if not self._fits(leader, slot, reuse, len(group)):
                self.room_wait = True
                return
            with self._cond:
                self.queue.popleft()
            self._pool.forget(slot, reuse)
            free.remove(slot)
            # Choices other than the first copy its KV later: their slots' caches go now,
            # the emptiest and least recently used first.
            free.sort(key=lambda s: (len(s.cached) > 0, s.used_at))
            self._seat(leader, slot, Phase.PROMPT)
            leader.prompt_pos = reuse
            if leader not in self.resume:
                leader.cached_tokens = reuse
            for fork in group[1:]:
                target = free.pop(0)
                self._pool.forget(target)
                self._seat(fork, target, Phase.FORK)

    def _fits(self, leader: Sequence, slot: Slot, reuse: int, choices: int) -> bool:
        """Make room for a queued request, if the pool can hold it with what runs.

        It needs cells for what it reads and its first tokens, what running sequences
        still read, and some headroom for those decoding, lest it be preempted at once.
        Alone, a request is always admitted (a prompt shorter than ``ctx_size`` fits).
        """
        size = len(self.source(leader))
        running = [s for s in self._running()]
        need = (size - reuse + 1) + (choices - 1) * (size + 1) + self._reserved()
        need += _HEADROOM * sum(1 for s in running if s.phase is Phase.DECODE)
        # The chosen slot's tokens past the shared prefix are dropped on admission.
        need -= len(slot.cached) - reuse
        pool = self._pool
        if running and pool.free() + pool.idle_cells() - len(slot.cached) < need:
            return False
        pool.evict(need, keep=[slot])
        return True

    def make_room(self) -> None:
        """Before a step: room for every decoding token and what is still to be read.

        Idle caches go first; then the youngest running sequence is preempted.
        """
        while True:
            decoding = sum(
                1 for s in self._running() if s.phase is Phase.DECODE and s.sink.accepting
            )
            need = decoding + self._reserved()
            if self._pool.evict(need):
                return
            # A choice waiting to fork holds no cells: preempting it frees nothing.
            holding = [s for s in self._running() if s.phase is not Phase.FORK]
            if len(holding) <= 1:
                return  # alone it fits: ctx_size <= cells
            self._preempt(max(holding, key=lambda s: s.order))

    def _preempt(self, sequence: Sequence) -> None:
        """Give back a running sequence's KV; it waits at the head of the queue."""
        self.preempted += 1
        slot = self._slots[sequence.slot]
        if sequence.phase is Phase.DECODE:
            # Everything it holds is read again: the prompt and what it generated.
            self.resume[sequence] = list(slot.cached)
        # Its KV stays in the slot as an idle cache, reused if it is still there when the
        # sequence comes back; as the most recently used, it is the last one dropped.
        self._pool.release(slot)
        sequence.slot = -1
        if sequence.phase is Phase.PROMPT and sequence not in self.resume:
            for fork in sequence.forks:
                if fork.phase is Phase.FORK:
                    self._pool.release(self._slots[fork.slot])
                    fork.slot = -1
                    fork.phase = Phase.QUEUED
        sequence.phase = Phase.QUEUED
        sequence.prompt_pos = 0
        sequence.paused_since = None  # waiting for room is not its client's stall
        with self._cond:
            self.queue.appendleft(sequence)
