"""The API key a request presents, read one way for checking it and for scoping what it owns."""

from __future__ import annotations

from starlette.datastructures import Headers

__all__ = ["presented_key"]


def presented_key(headers: Headers) -> str:
    """The key in ``x-api-key`` (Anthropic's clients send it there), else the token of an
    ``Authorization: Bearer`` header (OpenAI's); empty when there is neither."""
    given = headers.get("x-api-key", "")
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    if not given and scheme.lower() == "bearer":
        given = bearer
    return given
