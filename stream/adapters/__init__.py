"""API adapters: one module per API, each a parse, a plan and an encoder.

``chat`` (``/v1/chat/completions``) and ``completions`` (``/v1/completions``) share
``openai`` (request fields) and ``choices`` (response shapes); ``models`` answers
``/v1/models``. An adapter turns a body into a :class:`~stream.plan.Plan` and engine events
into :class:`~stream.documents.Document`\\ s; it imports nothing from
:mod:`stream.transports`. A new API is one more module here, registered in ``service.py``'s
route table.
"""

from __future__ import annotations

__all__: list[str] = []
