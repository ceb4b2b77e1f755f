"""Transports: frame an adapter's documents for one wire and know nothing of any API.

``sse``: ``text/event-stream`` with heartbeats and disconnect handling; ``whole``: one JSON
body; ``resumable``: SSE with event ids over the stream store (:mod:`stream.resume`), resumed
by ``Last-Event-ID``; ``websocket``: many requests per socket. A new transport is one more
module here, over the same :mod:`stream.documents`; it imports nothing from
:mod:`stream.adapters`.
"""

from __future__ import annotations

__all__: list[str] = []
