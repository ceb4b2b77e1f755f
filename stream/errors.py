"""HTTP errors, in the OpenAI API's shape, and the one translation of model-side errors.

::

    APIError                 {"error": {"message", "type", "param", "code"}} with a status
     +- InvalidRequest       400 invalid_request_error
     +- Unauthorized         401 (missing or wrong API key)
     +- Forbidden            403 (a WebSocket from an origin CORS does not allow)
     +- NotFound             404 (routes, models, resumable streams)
     +- MethodNotAllowed     405
     +- Gone                 410 (a resumable stream that expired)
     +- PayloadTooLarge      413
     +- UnsupportedMediaType 415
     +- RateLimited          429 (wait queue full), with Retry-After
     +- Unavailable          503 (model loading or failed, server draining), with Retry-After
     +- DeadlineExceeded     504 (the request's deadline passed before it finished)

:func:`from_model_error` is the only place a :class:`model.errors.ModelError` becomes one of
these; ``stream.app`` is the only place either becomes a response.
"""

from __future__ import annotations

from typing import Any

from model.errors import CapacityExceeded, InvalidInput, ModelError, ModelNotFound, NotReady

__all__ = [
    "APIError",
    "DeadlineExceeded",
    "Forbidden",
    "Gone",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "error_object",
    "from_model_error",
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


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(APIError):
    status = 401
    type = "invalid_request_error"


class Forbidden(APIError):
    status = 403
    type = "invalid_request_error"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(APIError):
    status = 405
    type = "invalid_request_error"


class Gone(APIError):
    status = 410
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


def from_model_error(exc: ModelError) -> APIError:
    """The HTTP error for a model-side one: its message, ``param`` and ``code`` kept.

    Input errors are 400s, an unknown model 404, a full queue 429 (``Retry-After: 1``), no
    model to serve 503 (``Retry-After: 5``); anything else (a load or template failure) is
    the server's 500.
    """
    if isinstance(exc, InvalidInput):
        return InvalidRequest(exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, ModelNotFound):
        return NotFound(exc.message, param=exc.param, code=exc.code or "model_not_found")
    if isinstance(exc, CapacityExceeded):
        return RateLimited(
            f"The server is at capacity ({exc.message}); retry shortly.",
            code=exc.code or "rate_limit_exceeded",
            headers={"retry-after": "1"},
        )
    if isinstance(exc, NotReady):
        return Unavailable(
            exc.message, code=exc.code or "model_not_ready", headers={"retry-after": "5"}
        )
    return APIError(exc.message, param=exc.param, code=exc.code)
