"""What an engine is given (:class:`EngineOptions`) and what it reports (:class:`EngineStats`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineOptions", "EngineStats"]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    #: Sequences decoded together: a scheduling limit, not a share of memory.
    slots: int = 16
    #: Context per sequence (prompt plus completion), in tokens.
    ctx_size: int = 4096
    #: KV cells shared by all sequences (at least ``ctx_size``; llama.cpp rounds up to 256).
    kv_size: int = 8192
    #: Each slot its own box of ``kv_size / slots`` cells instead of one shared pool: greedy
    #: output then never depends on what else runs (in a shared cache a sequence's cells lie
    #: wherever there was room, and llama.cpp's attention sums them in cell order, so the
    #: last bits of its logits, and now and then a near-tie, follow the batch), at the cost of
    #: memory reserved per slot.
    kv_per_slot: bool = False
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
    #: KV cells in the pool.
    kv_cells: int
    #: Running sequences that gave their KV back to make room, to read it again later.
    preempted: int
    #: Idle cached prefixes dropped to make room.
    kv_evictions: int
    #: CPU seconds the engine thread spent in its decode steps outside ``llama_decode``
    #: (batch building, sampling, detokenizing, stop matching, dispatch).
    host_seconds: float
    #: Wall seconds inside ``llama_decode``.
    decode_seconds: float
