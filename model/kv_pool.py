"""The KV pool: one unified llama.cpp KV cache whose cells every sequence draws from.

A slot is a llama.cpp sequence id. A running sequence holds one; a finished one leaves its
tokens' KV in the slot for the next request that starts with the same tokens (the next turn
of a chat). Any sequence may grow to the whole context (``ctx_size``); the pool
(``cells``) is shared, so the number of slots limits scheduling, not memory.

Accounting counts each slot's cells as its own. Choices of one request (``n > 1``) share
their prompt's cells inside llama.cpp, so the count is an upper bound: room is never
overestimated, only, for such requests, underestimated.
"""

from __future__ import annotations

from collections.abc import Iterable

from .llama import LlamaContext
from .sequence import Sequence

__all__ = ["KVPool", "Slot"]


class Slot:
    __slots__ = ("cached", "index", "sequence", "used_at")

    def __init__(self, index: int) -> None:
        self.index = index
        self.sequence: Sequence | None = None
        #: Tokens whose KV this slot holds, kept after a request ends for prefix reuse.
        self.cached: list[int] = []
        #: When the slot was last released (a count of releases): idle caches go oldest first.
        self.used_at = 0


def common_prefix(a: list[int], b: tuple[int, ...] | list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class KVPool:
    """Slots over one context's KV cells. Owned by the engine thread."""

    def __init__(self, ctx: LlamaContext, slots: int) -> None:
        self._ctx = ctx
        self.cells = ctx.n_ctx
        self.slots = [Slot(i) for i in range(slots)]
        #: Idle caches dropped to make room.
        self.evictions = 0
        self._releases = 0

    def used(self) -> int:
        """Cells held, idle caches included (an upper bound, see the module notes)."""
        return sum(len(slot.cached) for slot in self.slots)

    def free(self) -> int:
        return self.cells - self.used()

    def release(self, slot: Slot) -> None:
        """Free the slot; its KV stays as an idle cache, the most recently used one."""
        slot.sequence = None
        self._releases += 1
        slot.used_at = self._releases

    def forget(self, slot: Slot, start: int = 0) -> None:
        """Drop the slot's KV from position ``start`` on."""
        if start < len(slot.cached):
            self._ctx.forget(slot.index, start)
            del slot.cached[start:]

    def copy(self, source: Slot, target: Slot) -> None:
        """Make ``target`` hold what ``source`` holds (llama.cpp shares the cells)."""
        # In a unified cache a copy adds the target's id to the source's cells and keeps
        # whatever the target held: drop that first, or positions would appear twice.
        self.forget(target)
        self._ctx.copy(source.index, target.index)
        target.cached = list(source.cached)

    def evict(self, need: int, keep: Iterable[Slot] = ()) -> bool:
        """Drop idle caches, least recently used first, until ``need`` cells are free.

        Slots in ``keep`` are spared. Returns whether ``need`` cells are free now.
        """
        free = self.free()
        if free >= need:
            return True
        spared = set(id(slot) for slot in keep)
        idle = [
            slot
            for slot in self.slots
            if slot.sequence is None and slot.cached and id(slot) not in spared
        ]
        for slot in sorted(idle, key=lambda s: s.used_at):
            free += len(slot.cached)
            self.forget(slot)
            self.evictions += 1
            if free >= need:
                return True
        return False

    def idle_cells(self) -> int:
        return sum(len(slot.cached) for slot in self.slots if slot.sequence is None)
