"""Stored responses, for ``previous_response_id`` and ``GET``/``DELETE /v1/responses/{id}``.

A bounded in-memory store: at most ``max_count`` responses and ``max_bytes`` of them (the
size of their JSON), least recently used evicted first, each expiring ``ttl`` seconds after
it was stored. Any bound at 0 turns storing off. Responses are kept per owner (a hash of the
API key that created them, or None when keys are off) and are invisible to other owners.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ResponseStore", "StoredResponse"]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One finished response and the conversation that leads past it."""

    #: The ``response`` object as it was answered.
    response: dict[str, Any]
    #: Every input item of the conversation (earlier responses' too, instructions apart),
    #: then this response's output items: what a continuation starts from.
    conversation: tuple[dict[str, Any], ...]
    #: This response's own input items (``GET /v1/responses/{id}/input_items``).
    input_items: tuple[dict[str, Any], ...]
    owner: str | None = None

    @property
    def id(self) -> str:
        return str(self.response["id"])

    def size(self) -> int:
        """Bytes of JSON the entry holds (what ``max_bytes`` counts)."""
        parts = (self.response, self.conversation, self.input_items)
        return sum(len(json.dumps(part, ensure_ascii=False)) for part in parts)


class ResponseStore:
    """The bounded store (see the module notes); safe to call from any thread.

    ``max_count``: responses kept; ``max_bytes``: their total size; ``ttl``: seconds each
    is kept; ``clock``: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        max_count: int,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        # id -> (entry, its size, when it expires); oldest use first.
        self._entries: OrderedDict[str, tuple[StoredResponse, int, float]] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_count > 0 and self.max_bytes > 0 and self.ttl > 0

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    @property
    def bytes(self) -> int:
        with self._lock:
            self._expire()
            return self._bytes

    def put(self, entry: StoredResponse) -> bool:
        """Store ``entry`` (replacing one with its id); False when it cannot be kept: the
        store is off, or the entry alone is larger than ``max_bytes``."""
        size = entry.size()
        if not self.enabled or size > self.max_bytes:
            return False
        with self._lock:
            self._expire()
            self._drop(entry.id)
            self._entries[entry.id] = (entry, size, self._clock() + self.ttl)
            self._bytes += size
            while len(self._entries) > self.max_count or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return True

    def get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        """The entry, if stored, unexpired and ``owner``'s; a hit counts as a use."""
        with self._lock:
            self._expire()
            found = self._entries.get(response_id)
            if found is None or found[0].owner != owner:
                return None
            self._entries.move_to_end(response_id)
            return found[0]

    def delete(self, response_id: str, owner: str | None) -> bool:
        """Remove ``owner``'s entry; False when there is none to remove."""
        with self._lock:
            self._expire()
            found = self._entries.get(response_id)
            if found is None or found[0].owner != owner:
                return False
            self._drop(response_id)
            return True

    def _drop(self, response_id: str) -> None:
        found = self._entries.pop(response_id, None)
        if found is not None:
            self._bytes -= found[1]

    def _expire(self) -> None:
        now = self._clock()
        # Entries share one TTL, so the earliest stored expire first; a use reorders them,
        # hence the full scan (the store is small, and scans happen only on access).
        stale = [key for key, (_, _, expires) in self._entries.items() if expires <= now]
        for key in stale:
            self._drop(key)
