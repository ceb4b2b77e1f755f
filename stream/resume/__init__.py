"""Resumable streams: the store of already-framed events that outlives a connection.

A resumable stream's generation is read by a *pump* (``stream.transports.resumable``) that
frames every document with an ``id`` and appends it to the stream's buffer here; each
connection is a *reader* of that buffer from some position on. The interface
(:class:`~stream.resume.store.StreamStore`) is small so that a store shared by several
replicas can replace the in-process :class:`~stream.resume.store.MemoryStreamStore`.
"""

from __future__ import annotations

from .store import MemoryStreamStore, StreamReader, StreamStore, owner_of

__all__ = ["MemoryStreamStore", "StreamReader", "StreamStore", "owner_of"]
