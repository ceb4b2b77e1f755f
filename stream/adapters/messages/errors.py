"""Errors in the Anthropic API's shape: ``{"type": "error", "error": {"type", "message"}}``.

The status stays Sluice's own (see :mod:`stream.errors`); the error type follows Anthropic's
table for it. Deviation: a server that cannot take a request now (loading, draining) answers
503 ``overloaded_error`` with ``Retry-After`` where Anthropic would answer 529; a full wait
queue is 429 ``rate_limit_error``, as Anthropic's. The SDKs retry both.
"""

from __future__ import annotations

from typing import Any

from stream.errors import APIError

__all__ = ["error_body", "error_payload"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_payload(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def error_body(exc: APIError) -> dict[str, Any]:
    """The Anthropic error object for ``exc`` (a route's ``error_body``)."""
    fallback = "api_error" if exc.status >= 500 else "invalid_request_error"
    return error_payload(_TYPES.get(exc.status, fallback), exc.message)
