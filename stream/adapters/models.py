"""The Models API: ``GET /v1/models`` and ``GET /v1/models/{id}``, in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from model.registry import ModelRegistry
from stream.routes import Handler, Request

__all__ = ["listing", "model"]


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "sluice"}


def listing(registry: ModelRegistry) -> Handler:
    """Every served model (503 while none is ready)."""

    async def handle(request: Request) -> ASGIApp:
        data = [_model_object(served.name) for served in registry.served()]
        return JSONResponse({"object": "list", "data": data})

    return handle


def model(registry: ModelRegistry) -> Handler:
    """One served model by id (404 ``model_not_found`` for any other)."""

    async def handle(request: Request) -> ASGIApp:
        return JSONResponse(_model_object(registry.find(request.params["id"]).name))

    return handle
