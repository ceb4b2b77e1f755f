"""Everything about the model: where it comes from, how prompts are built, the engine.

Only the pure-data modules are re-exported here: ``model.engine`` and ``model.llama`` load
the native llama.cpp library, so the service imports them on its loading thread.
"""

from __future__ import annotations

from .events import Delta, Dispatch, Event, Finished, FinishReason, SequenceSink, Usage
from .params import GenerationRequest, SamplingParams

__all__ = [
    "Delta",
    "Dispatch",
    "Event",
    "FinishReason",
    "Finished",
    "GenerationRequest",
    "SamplingParams",
    "SequenceSink",
    "Usage",
]
