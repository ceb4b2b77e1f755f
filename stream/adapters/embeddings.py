"""The Embeddings API (``POST /v1/embeddings``), in OpenAI's shapes.

``input``: a string, an array of strings, an array of token ids, or an array of those arrays
(at most 2048 inputs, none empty, each within the embedding context); ``encoding_format``
``float`` or ``base64`` (the little-endian float32 bytes); ``user`` is accepted and ignored.
Vectors are L2-normalized; ``usage`` counts the tokens read.

Deviation: ``dimensions`` is accepted only when it is the model's own size (Sluice does not
shorten vectors: the served models are not trained for it); any other value is a 400.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from model.registry import ModelRegistry
from stream.errors import InvalidRequest
from stream.pipeline import parse_json
from stream.routes import Handler, Request

from .openai import integer

__all__ = ["MAX_INPUTS", "embeddings"]

#: Most inputs in one request (OpenAI's limit).
MAX_INPUTS: Final = 2048
_FIELDS: Final = frozenset({"input", "model", "encoding_format", "dimensions", "user"})


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def _inputs(body: Mapping[str, Any]) -> list[str | list[int]]:
    value = body.get("input")
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    inputs: list[Any]
    if isinstance(value, str) or (_is_ids(value) and value):
        inputs = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) or _is_ids(v) for v in value):
        inputs = value
    else:
        raise InvalidRequest(
            "'input' must be a string, an array of strings, an array of token ids, or an "
            "array of token-id arrays, and not empty.",
            param="input",
        )
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' holds {len(inputs)} inputs; the limit is {MAX_INPUTS}.", param="input"
        )
    return inputs


def _encoded(vector: Sequence[float], fmt: str) -> list[float] | str:
    if fmt == "float":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings(registry: ModelRegistry) -> Handler:
    """``POST /v1/embeddings`` (see the module notes)."""

    async def handle(request: Request) -> ASGIApp:
        body = parse_json(request.body)
        unknown = sorted(k for k in body if k not in _FIELDS)
        if unknown:
            raise InvalidRequest(
                f"Unrecognized request argument: {unknown[0]!r}.", param=unknown[0]
            )
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise InvalidRequest("'model' must be a string.", param="model")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise InvalidRequest(
                "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
            )
        dimensions = integer(body, "dimensions", 1)
        inputs = _inputs(body)
        served = registry.get(model)

        def tokenize() -> list[list[int]]:
            tokenized = []
            limit = served.embedding_limit
            for i, item in enumerate(inputs):
                param = "input" if len(inputs) == 1 else f"input[{i}]"
                if isinstance(item, str):
                    tokens = served.tokenize(item, add_special=True, param=param)
                else:
                    tokens = list(item)
                    served.check_tokens(tokens, param)
                if not tokens:
                    raise InvalidRequest(f"'{param}' is empty.", param=param)
                if len(tokens) > limit:
                    raise InvalidRequest(
                        f"'{param}' is {len(tokens)} tokens; an input may have at most {limit}.",
                        param=param,
                    )
                tokenized.append(tokens)
            return tokenized

        tokenized = await anyio.to_thread.run_sync(tokenize)
        result = await asyncio.wrap_future(served.embed(tokenized))
        size = len(result.vectors[0])
        if dimensions is not None and dimensions != size:
            raise InvalidRequest(
                f"'dimensions' must be this model's own, {size}: Sluice does not shorten "
                "embeddings.",
                param="dimensions",
            )
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, fmt)}
            for i, vector in enumerate(result.vectors)
        ]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return JSONResponse({"object": "list", "data": data, "model": served.name, "usage": usage})

    return handle
