"""llama.cpp server's ``POST /tokenize`` and ``POST /detokenize``, in its shapes.

``{"content": "...", "add_special": false, "with_pieces": false}`` answers
``{"tokens": [ids]}``, or with pieces ``{"tokens": [{"id", "piece"}]}`` where a piece is its
text, or the list of its bytes when they are not valid UTF-8 on their own (part of a
character). ``{"tokens": [ids]}`` answers ``{"content": "..."}``, special tokens written as
their text, bytes that are not UTF-8 replaced by U+FFFD.

Deviation: client text is tokenized with ``parse_special`` off, so special token texts in it
stay text (llama.cpp's server turns them into control tokens); ``parse_special: true`` is
refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from model.registry import ModelRegistry
from stream.errors import InvalidRequest
from stream.pipeline import parse_json
from stream.routes import Handler, Request

from .openai import boolean

__all__ = ["MAX_TOKENS", "detokenize", "tokenize"]

#: Most token ids one detokenize request may carry.
MAX_TOKENS: Final = 131072


def _fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument: {unknown[0]!r}.", param=unknown[0])
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string.", param="model")


def _piece(token: int, data: bytes) -> dict[str, Any]:
    try:
        return {"id": token, "piece": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"id": token, "piece": list(data)}


def tokenize(registry: ModelRegistry) -> Handler:
    """``POST /tokenize`` (see the module notes)."""

    async def handle(request: Request) -> ASGIApp:
        body = parse_json(request.body)
        _fields(
            body, frozenset({"content", "add_special", "with_pieces", "parse_special", "model"})
        )
        content = body.get("content")
        if not isinstance(content, str):
            raise InvalidRequest("'content' must be a string.", param="content")
        if boolean(body, "parse_special"):
            raise InvalidRequest(
                "'parse_special' cannot be true here: client text never becomes special tokens.",
                param="parse_special",
            )
        add_special = boolean(body, "add_special")
        with_pieces = boolean(body, "with_pieces")
        served = registry.get(body.get("model"))

        def run() -> list[Any]:
            tokens = served.tokenize(content, add_special=add_special)
            if not with_pieces:
                return list(tokens)
            pieces = served.token_pieces(tokens)
            return [_piece(token, data) for token, data in zip(tokens, pieces, strict=True)]

        return JSONResponse({"tokens": await anyio.to_thread.run_sync(run)})

    return handle


def detokenize(registry: ModelRegistry) -> Handler:
    """``POST /detokenize`` (see the module notes)."""

    async def handle(request: Request) -> ASGIApp:
        body = parse_json(request.body)
        _fields(body, frozenset({"tokens", "model"}))
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise InvalidRequest("'tokens' must be an array of token ids.", param="tokens")
        if len(tokens) > MAX_TOKENS:
            raise InvalidRequest(
                f"'tokens' holds {len(tokens)} ids; the limit is {MAX_TOKENS}.", param="tokens"
            )
        served = registry.get(body.get("model"))
        pieces = await anyio.to_thread.run_sync(served.token_pieces, tokens)
        return JSONResponse({"content": b"".join(pieces).decode("utf-8", "replace")})

    return handle
