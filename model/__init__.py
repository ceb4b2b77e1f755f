"""Everything about the model: where it comes from, how prompts are built, the engine.

``registry`` serves models (``served``: one loaded model with its template and engine);
``engine`` and ``sequence`` run generations; ``events`` and ``params`` are the pure data the
HTTP side sees; ``errors`` is the one error root. ``model.engine`` and ``model.llama`` load
the native llama.cpp library on import; the registry imports them on its loading thread.
"""

from __future__ import annotations

__all__: list[str] = []
