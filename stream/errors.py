"""Errors a client can cause, in the OpenAI API's shape.

::

    APIError                 {"error": {"message", "type", "param", "code"}} with a status
     +- InvalidRequest       400 invalid_request_error
 +- Unauthorized         401 (missing or wrong API key)
     +- NotFound             404 (routes, models)
     +- MethodNotAllowed     405
 +- PayloadTooLarge      413
 +- UnsupportedMediaType 415
     +- Unavailable          503 (model still loading)
 +- DeadlineExceeded     504 (the request's deadline passed before it finished)
     +- RateLimited          429 (wait queue full), with Retry-After
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "APIError",
    "DeadlineExceeded",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "error_object",
]


def error_object(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class APIError(Exception):
    """An error answered to the client with ``status`` and an OpenAI error object."""

    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_object(self.message, self.type, self.param, self.code)

    def json_bytes(self) -> bytes:
        return json.dumps(self.body(), ensure_ascii=False).encode()


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(APIError):
    status = 401
    type = "invalid_request_error"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(APIError):
    status = 405
    type = "invalid_request_error"


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"


class UnsupportedMediaType(APIError):
    status = 415
    type = "invalid_request_error"


class RateLimited(APIError):
    status = 429
    # OpenAI answers a full server with these; SDKs retry on 429 and honour Retry-After.
    type = "requests"


class Unavailable(APIError):
    status = 503
    type = "server_error"


class DeadlineExceeded(APIError):
    status = 504
    type = "timeout"
