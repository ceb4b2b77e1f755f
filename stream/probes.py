"""Liveness, readiness and metrics: the routes orchestrators and scrapers probe.

``/health`` is 200 while the process works (500 once loading failed); ``/ready`` is 503
while loading, after a failure and from the start of a drain, else 200 with the engine's
figures; ``/metrics`` is the Prometheus text format.
"""

from __future__ import annotations

import dataclasses

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from model.registry import ModelRegistry

from .metrics import CONTENT_TYPE, Metrics
from .routes import Handler, Request

__all__ = ["health", "metrics", "ready"]

_RETRY = {"retry-after": "5"}


def health(registry: ModelRegistry) -> Handler:
    async def handle(request: Request) -> ASGIApp:
        if registry.failure is not None:
            return JSONResponse({"status": "failed", "error": registry.failure}, 500)
        return JSONResponse({"status": "ok"})

    return handle


def ready(registry: ModelRegistry) -> Handler:
    async def handle(request: Request) -> ASGIApp:
        state = registry.state
        if state != "ready":
            return JSONResponse({"status": state}, 503, headers=_RETRY)
        served = registry.default()
        return JSONResponse(
            {
                "status": "ready",
                "model": served.name,
                "family": served.family,
                "engine": dataclasses.asdict(served.stats()),
            }
        )

    return handle


def metrics(collected: Metrics) -> Handler:
    async def handle(request: Request) -> ASGIApp:
        return Response(collected.exposition(), media_type=CONTENT_TYPE)

    return handle
