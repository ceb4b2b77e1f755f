"""Every failure the model side reports, under one root, classified by meaning.

::

    ModelError(message, *, param=None, code=None)
     +- InvalidInput       the request's input cannot be served as asked (a client's mistake):
     |   |                 PromptError, GrammarError, SchemaError, ToolError
     +- ModelNotFound      no served model has the requested name
     +- CapacityExceeded   every slot is busy and the wait queue is full (QueueFull)
     +- NotReady           no model to serve yet or any more: loading, failed, draining
     +- LoadError          the model cannot be served at all: ModelSourceError,
                           ModelLoadError, TemplateError (also when rendering breaks)

``message`` is client-safe and says what and where; ``param`` names the request field at
fault when there is one; ``code`` is a stable machine-readable reason. The HTTP side
translates these in exactly one place (``stream.errors.from_model_error``); nothing here
knows a status code.
"""

from __future__ import annotations

__all__ = [
    "CapacityExceeded",
    "InvalidInput",
    "LoadError",
    "ModelError",
    "ModelNotFound",
    "NotReady",
]


class ModelError(Exception):
    """The root of every model-side failure (see the module notes)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidInput(ModelError):
    """The request's input cannot become a prompt, a constraint or a tool list."""


class ModelNotFound(ModelError):
    """No served model answers to the requested name."""


class CapacityExceeded(ModelError):
    """The model cannot take another request now; retrying shortly may succeed."""


class NotReady(ModelError):
    """No model can serve now: still loading, failed to load, or the server is draining."""


class LoadError(ModelError):
    """The model or its chat template cannot be resolved, loaded or used."""
