"""Sluice: serve a local GGUF model to OpenAI clients. The ASGI entry point: wiring only.

``python service.py --help`` lists the options; ``hypercorn "service:create_app()"`` (or
``hypercorn service:app``) serves with the same options as ``SLUICE_*`` environment
variables. How a request flows through the parts is drawn in :mod:`stream`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from starlette.types import Receive, Scope, Send

from model.registry import ModelRegistry, ModelSettings
from model.source import ModelSourceError, ResolvedModel, resolve_model
from stream import probes
from stream.access import JSONLogFormatter
from stream.adapters import chat, completions, embeddings, messages, models, responses, tokens
from stream.app import Sluice
from stream.config import SECONDS, Config
from stream.errors import APIError
from stream.metrics import Metrics
from stream.pipeline import Pipeline
from stream.plan import Adapter, Limits
from stream.resume import MemoryStreamStore
from stream.routes import ErrorBody, Route, RouteTable
from stream.transports.resumable import ResumableSSE

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

__all__ = ["Config", "Sluice", "app", "create_app", "hypercorn_config", "main"]

_log = logging.getLogger("sluice")


def create_app(config: Config | None = None, resolved: ResolvedModel | None = None) -> Sluice:
    """The ASGI app for ``config`` (default: from ``SLUICE_*`` variables).

    Cheap: the model is found and loaded only when the server's lifespan starts, unless
    ``resolved`` names it already. A bad setting exits with status 2 and one line on stderr.
    """
    if config is None:
        try:
            config = Config.from_env()
        except ValueError as exc:
            _exit(str(exc))
    registry = ModelRegistry(strict_names=config.strict_model_names)
    metrics = Metrics(registry.figures)
    streams = MemoryStreamStore(
        window=config.resume_window,
        per_stream=config.resume_buffer,
        total=config.resume_buffer_total,
        registry=metrics.registry,
    )
    pipeline = _pipeline(config, registry, metrics, streams)
    store = responses.ResponseStore(
        max_count=config.responses_store_size,
        max_bytes=config.responses_store_bytes,
        ttl=config.responses_ttl,
    )
    websockets = {
        path: pipeline.websocket(functools.partial(adapter_for, store), error_body=error_body)
        for path, (adapter_for, error_body) in _WEBSOCKET_APIS.items()
    }
    try:
        return Sluice(
            config,
            registry,
            _routes(config, registry, metrics, pipeline, store),
            metrics,
            model=_model_settings(config),
            resolved=resolved,
            websockets=websockets,
            services=[streams.running],
        )
    except OSError as exc:  # the API key file
        _exit(f"cannot read the API key file: {exc}")


#: The APIs a WebSocket serves, on their own paths: a socket's adapter from the response
#: store and its owner (the handshake's key), and how the API's errors read.
_WEBSOCKET_APIS: dict[
    str, tuple[Callable[[responses.ResponseStore, str | None], Adapter[Any]], ErrorBody]
] = {
    "/v1/chat/completions": (lambda store, owner: chat.ADAPTER, APIError.body),
    "/v1/completions": (lambda store, owner: completions.ADAPTER, APIError.body),
    "/v1/responses": (responses.adapter, APIError.body),
    "/v1/messages": (lambda store, owner: messages.ADAPTER, messages.error_body),
}


def _limits(config: Config) -> Limits:
    return Limits(
        max_messages=config.max_messages,
        max_tokens=config.max_tokens_limit,
        request_timeout=config.request_timeout,
        max_request_timeout=config.max_request_timeout,
    )


def _pipeline(
    config: Config, registry: ModelRegistry, metrics: Metrics, streams: MemoryStreamStore
) -> Pipeline:
    return Pipeline(
        registry,
        metrics,
        limits=_limits(config),
        stream_buffer=config.stream_buffer,
        heartbeat_interval=config.heartbeat_interval,
        resumable=ResumableSSE(
            streams, url="/v1/streams/", heartbeat_interval=config.heartbeat_interval
        ),
        resumable_default=config.resumable_default,
        owned=bool(config.api_keys or config.api_key_file),
        websocket_requests=config.websocket_requests,
    )


def _routes(
    config: Config,
    registry: ModelRegistry,
    metrics: Metrics,
    pipeline: Pipeline,
    store: responses.ResponseStore,
) -> RouteTable:
    private = bool(config.api_keys or config.api_key_file)
    return RouteTable(
        {
            "/health": Route({"GET": probes.health(registry)}, public=True),
            "/ready": Route({"GET": probes.ready(registry)}, public=True),
            "/metrics": Route({"GET": probes.metrics(metrics)}, public=True),
            "/v1/models": Route({"GET": models.listing(registry)}),
            "/v1/models/{id}": Route({"GET": models.model(registry)}),
            "/v1/chat/completions": Route({"POST": pipeline.handler(chat.ADAPTER)}),
            "/v1/completions": Route({"POST": pipeline.handler(completions.ADAPTER)}),
            "/v1/streams/{id}": Route({"GET": pipeline.resume}),
            "/v1/responses": Route(
                {"POST": responses.create(pipeline.generate, store, private=private)}
            ),
            "/v1/responses/{id}": Route(
                {
                    "GET": responses.retrieve(store, pipeline.resume_after, private=private),
                    "DELETE": responses.delete(store, private=private),
                }
            ),
            "/v1/embeddings": Route({"POST": embeddings.embeddings(registry)}),
            "/tokenize": Route({"POST": tokens.tokenize(registry)}),
            "/detokenize": Route({"POST": tokens.detokenize(registry)}),
            "/v1/messages": Route(
                {"POST": pipeline.handler(messages.ADAPTER)}, error_body=messages.error_body
            ),
            "/v1/messages/count_tokens": Route(
                {"POST": messages.count_tokens(registry, _limits(config))},
                error_body=messages.error_body,
            ),
        }
    )


def _model_settings(config: Config) -> ModelSettings:
    return ModelSettings(
        name=config.served_model_name,
        gpu_layers=config.gpu_layers,
        chat_template=config.chat_template,
        tool_format=config.tool_format,
        reasoning_budget=None if config.reasoning_budget < 0 else config.reasoning_budget,
        reasoning_format="none" if config.reasoning_format == "none" else "auto",
        slots=config.slots,
        ctx_size=config.ctx_size,
        kv_size=config.kv_size,
        kv_per_slot=config.kv_per_slot,
        batch_size=config.batch_size,
        prefill_chunk=config.prefill_chunk,
        threads=config.threads or os.cpu_count() or 1,
        max_queue=config.max_queue,
        stall_timeout=config.stall_timeout,
        embedding_model=config.embedding_model,
    )


def _exit(message: str) -> NoReturn:
    print(f"sluice: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class _EnvironmentApp:
    """``hypercorn service:app``: the app of the ``SLUICE_*`` variables, built on the first
    call (Hypercorn looks the name up in the module's namespace, so it must exist) so that
    importing this module never fails. A bad value fails the lifespan start after its
    ``sluice: error:`` line; ``"service:create_app()"`` exits with just that line."""

    def __init__(self) -> None:
        self._app: Sluice | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            try:
                self._app = create_app()
            except SystemExit:
                if scope["type"] != "lifespan":
                    raise
                await receive()  # lifespan.startup
                message = "invalid SLUICE_* setting (see the line above)"
                await send({"type": "lifespan.startup.failed", "message": message})
                return
        await self._app(scope, receive, send)


app = _EnvironmentApp()


def hypercorn_config(config: Config) -> HypercornConfig:
    """Hypercorn settings for ``config``, listening on a socket Sluice makes itself.

    Linux autotunes a connection's send buffer up to megabytes, which would swallow a
    whole generation for a client that stopped reading, so its sequence would never pause.
    Connections inherit the listening socket's fixed ``SO_SNDBUF`` instead. At most
    ``config.max_connections`` are open at once (:mod:`stream.listener`).
    """
    from stream.listener import ListenerConfig

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.send_buffer > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.send_buffer)
        sock.bind((config.host, config.port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    hypercorn = ListenerConfig(config.max_connections)
    hypercorn.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns (and closes) it now
    if config.certfile:
        hypercorn.certfile = config.certfile
        hypercorn.keyfile = config.keyfile
    # Sluice drains streams itself (Config.shutdown_grace) before Hypercorn stops, so
    # Hypercorn's own grace only has to cover the last frames.
    hypercorn.graceful_timeout = 10 * SECONDS
    # WebSockets: Hypercorn pings idle sockets, answers pings, and closes with 1009 a
    # message larger than a request body may be.
    hypercorn.websocket_ping_interval = config.heartbeat_interval
    hypercorn.websocket_max_message_size = config.max_body_size
    return hypercorn


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; exit 2 on a bad setting or model spec, 1 if the model
    fails to load."""
    # Load llama.cpp's native library (a quarter of a second) while the rest of start-up
    # runs: ctypes lets go of the GIL while it maps the library.
    threading.Thread(target=importlib.import_module, args=("model.llama",), daemon=True).start()
    from hypercorn.asyncio import serve

    config = Config.from_args(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    if config.log_json:
        handler.setFormatter(JSONLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
    try:
        resolved = resolve_model(config.model, config.model_file)
    except ModelSourceError as exc:
        print(f"sluice: error: {exc}", file=sys.stderr)
        return 2
    app = create_app(config, resolved)
    hypercorn = hypercorn_config(config)
    hypercorn.accesslog = logging.getLogger("sluice.access")

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def trigger() -> None:
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(app.failed.wait())}
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            if stop.is_set():
                _log.info("shutting down: draining for up to %gs", config.shutdown_grace)
                await app.drain(config.shutdown_grace)

        await serve(app, hypercorn, shutdown_trigger=trigger)  # type: ignore[arg-type]
        return 1 if app.failed.is_set() else 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
