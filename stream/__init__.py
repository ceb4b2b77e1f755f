"""The wire: OpenAI request and response shapes, SSE frames, and the engine -> loop bridge.

Nothing here knows llama.cpp; it sees the engine only through ``model.events``.
"""

from __future__ import annotations

from .bridge import Channel, LoopDispatch
from .chunks import Shaper
from .errors import APIError, InvalidRequest, NotFound, RateLimited, Unavailable
from .requests import ChatRequest, CompletionRequest, parse_chat, parse_completion, parse_json
from .sse import SSEResponse, data_frame, run_until_disconnect

__all__ = [
    "APIError",
    "Channel",
    "ChatRequest",
    "CompletionRequest",
    "InvalidRequest",
    "LoopDispatch",
    "NotFound",
    "RateLimited",
    "SSEResponse",
    "Shaper",
    "Unavailable",
    "data_frame",
    "parse_chat",
    "parse_completion",
    "parse_json",
    "run_until_disconnect",
]
