"""The wire: HTTP in, documents out. Nothing here knows llama.cpp.

How a generation flows::

    request --> app (auth, body) --> pipeline
                                       |  adapter.parse -> registry.get(model)
                                       |  adapter.plan  (worker thread): prompt, limits,
                                       |                 GenerationRequest + encoder
                                       v
                  engine thread (model/) --events--> bridge.Channel
                                       |
                                       v  adapter's encoder: events -> documents
                  transport (SSE frames + heartbeats, or one JSON body) --> client

Where things go:

* a new API (``/v1/responses``, ``/v1/messages``, ...): one module in ``adapters/`` with its
  ``parse``, ``plan`` and encoder, and one line in ``service.py``'s route table;
* a new transport: one module in ``transports/`` over :mod:`stream.documents`, fed by
  ``Pipeline.start`` (plan and submit, for any transport), as ``resumable`` (with the store
  in ``resume/``) and ``websocket`` are; adapters and transports never import each other;
* errors: ``errors`` (HTTP, and the one translation of ``model.errors``), turned into
  responses only in ``app``, in OpenAI's shape unless a route declares its API's own;
* server settings: ``config``; the route table's types: ``routes``; probes: ``probes``;
  request ids and access lines: ``access``; Prometheus: ``metrics``.
"""

from __future__ import annotations

__all__: list[str] = []
