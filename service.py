"""Sluice: serve a local GGUF model to OpenAI clients. The only ASGI entry point.

Run ``python service.py --help`` for the options, or ``hypercorn service:app`` with the
same options as ``SLUICE_*`` environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from model.events import Finished
from model.params import GenerationRequest
from model.source import ModelSourceError, ResolvedModel, resolve_model
from stream.access import AccessLog, JSONLogFormatter
from stream.bridge import Channel, LoopDispatch
from stream.chunks import SERVER_ENDS, Shaper
from stream.errors import (
    APIError,
    DeadlineExceeded,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from stream.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from stream.metrics import Metrics
from stream.requests import ChatRequest, CompletionRequest, parse_chat, parse_completion, parse_json
from stream.sse import SSEResponse, run_until_disconnect

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

    from model.runtime import Runtime
    from model.tools import Tool, ToolChoice

__all__ = ["Config", "Sluice", "app", "main"]

_log = logging.getLogger("sluice")

SECONDS = 1.0
KIB = 1024
MIB = 1024 * KIB


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    """Every setting; CLI flags ``--ctx-size`` and env ``SLUICE_CTX_SIZE`` fill the same field."""

    model: str | None = _opt(
        None,
        "GGUF path, 'owner/repo[:QUANT]' on the Hugging Face Hub, "
        "or nothing for the embedded SmolLM2-135M-Instruct",
    )
    model_file: str | None = _opt(None, "file name or quant pattern inside a Hub repo")
    host: str = _opt("0.0.0.0", "address to listen on")
    port: int = _opt(8000, "port to listen on")
    ctx_size: int = _opt(0, "context per sequence in tokens (0: the model's, at most 4096)")
    gpu_layers: int = _opt(-1, "layers to offload to the GPU (-1: all)")
    threads: int = _opt(0, "CPU threads for llama.cpp (0: all cores)")
    slots: int = _opt(4, "sequences generated at once")
    batch_size: int = _opt(512, "tokens per decode step")
    prefill_chunk: int = _opt(128, "prompt tokens read per step while others decode")
    max_queue: int = _opt(64, "requests allowed to wait for a slot")
    request_timeout: float = _opt(600 * SECONDS, "default deadline of a request, queue included")
    max_request_timeout: float = _opt(3600 * SECONDS, "longest deadline a request may ask for")
    stall_timeout: float = _opt(30 * SECONDS, "seconds a client may read nothing before drop")
    heartbeat_interval: float = _opt(15 * SECONDS, "seconds of silence before an SSE comment")
    served_model_name: str | None = _opt(None, "model id shown to clients (default: file name)")
    strict_model_names: bool = _opt(False, "answer 404 for a 'model' other than the served one")
    chat_template: str | None = _opt(None, "'chatml', 'plain', a Jinja file or inline template")
    max_body_size: int = _opt(8 * MIB, "largest request body accepted, in bytes")
    send_buffer: int = _opt(64 * KIB, "socket send buffer per connection, bytes (0: kernel's)")
    stream_buffer: int = _opt(64, "events buffered per stream before its sequence pauses")
    max_messages: int = _opt(1024, "most messages one chat request may carry")
    max_tokens_limit: int = _opt(0, "largest max_tokens a request may ask for (0: the context)")
    api_keys: str | None = _opt(None, "comma-separated API keys accepted as Bearer tokens")
    api_key_file: str | None = _opt(None, "file with one accepted API key per line")
    cors_origins: str | None = _opt(None, "comma-separated origins allowed by CORS, or '*'")
    certfile: str | None = _opt(None, "TLS certificate (PEM); HTTP/2 is offered by ALPN")
    keyfile: str | None = _opt(None, "TLS private key (PEM)")
    shutdown_grace: float = _opt(30 * SECONDS, "seconds in-flight streams get after SIGTERM")
    log_level: str = _opt("info", "debug, info, warning or error")
    log_json: bool = _opt(False, "write log lines as JSON objects")

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Config:
        """Build from strings, e.g. ``os.environ`` with the ``SLUICE_`` prefix stripped."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = values.get(f.name)
            if raw is not None:
                kwargs[f.name] = _convert(f.name, f.default, raw)
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        prefix = "SLUICE_"
        return cls.from_mapping(
            {k[len(prefix) :].lower(): v for k, v in environ.items() if k.startswith(prefix)}
        )

    @classmethod
    def from_args(cls, argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> Config:
        base = cls.from_env(environ)
        parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.default is False:
                parser.add_argument(
                    flag, action="store_true", default=None, help=f.metadata["help"]
                )
            else:
                parser.add_argument(flag, metavar=f.name.upper(), help=f.metadata["help"])
        given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
        try:
            return cls._merge(base, given)
        except ValueError as exc:
            parser.error(str(exc))

    @classmethod
    def _merge(cls, base: Config, given: Mapping[str, Any]) -> Config:
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {
            k: v if isinstance(v, bool) else _convert(k, defaults[k], v) for k, v in given.items()
        }
        return dataclasses.replace(base, **changes)


def _convert(name: str, default: Any, raw: str) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"invalid value for {name}: {raw!r}") from None
    # An empty value unsets an optional setting; a required one keeps the string.
    return raw if default is not None else raw or None


Handler = Callable[[Scope, Receive], Awaitable[ASGIApp]]


class Sluice:
    """The ASGI application: routes, errors, lifespan and the model's life."""

    def __init__(self, config: Config, resolved: ResolvedModel | None = None) -> None:
        self.config = config
        self._resolved = resolved
        self._runtime: Runtime | None = None
        self._failure: str | None = None
        self._draining = False
        self.failed = asyncio.Event()
        self._keys = _api_keys(config)
        self.metrics = Metrics(self._engine_figures)
        self._routes: dict[str, dict[str, Handler]] = {
            "/health": {"GET": self._health},
            "/ready": {"GET": self._ready},
            "/metrics": {"GET": self._metrics},
            "/v1/models": {"GET": self._models},
            "/v1/models/{id}": {"GET": self._model},
            "/v1/chat/completions": {"POST": self._chat},
            "/v1/completions": {"POST": self._completion},
        }
        origins = [o.strip() for o in (config.cors_origins or "").split(",") if o.strip()]
        entry: ASGIApp = self._route
        if origins:
            entry = CORSMiddleware(
                entry,
                allow_origins=origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id", "retry-after"],
                max_age=600,
            )
        self._entry = AccessLog(entry, self.metrics, self._route_name)

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._entry(scope, receive, send)

    # -- shutdown ---------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Stop admitting: readiness and new generations answer 503 from now on."""
        self._draining = True

    async def drain(self, grace: float) -> None:
        """Let in-flight generations finish for up to ``grace`` seconds, then end the rest.

        Those get an error frame (streams) or a 503 (whole answers), and a clean close.
        """
        self.begin_drain()
        runtime = self._runtime
        if runtime is None:
            return
        # The engine's state lives on its own thread; polling its counters is the simplest
        # correct wait, and a shutdown can afford 50 ms of lag.
        with anyio.move_on_after(grace):
            while not _idle(runtime):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        if not _idle(runtime):
            runtime.engine.cancel_all("the server is shutting down")
            with anyio.move_on_after(5):
                while not _idle(runtime):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        # Let the last frames reach their sockets before the server stops.
        await anyio.sleep(0.1)

    def _engine_figures(self) -> dict[str, float] | None:
        runtime = self._runtime
        if runtime is None:
            return None
        stats = runtime.engine.stats()
        figures: dict[str, float] = dataclasses.asdict(stats)
        figures["kv_usage"] = stats.kv_used / (stats.slots * stats.ctx_size)
        return figures

    # -- lifespan ---------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            resolved = self._resolved or await anyio.to_thread.run_sync(
                resolve_model, self.config.model, self.config.model_file
            )
        except ModelSourceError as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._load, args=(resolved, loop), name="sluice-load", daemon=True
        ).start()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        runtime = self._runtime
        if runtime is not None:
            await anyio.to_thread.run_sync(runtime.close)
        await send({"type": "lifespan.shutdown.complete"})

    def _load(self, resolved: ResolvedModel, loop: asyncio.AbstractEventLoop) -> None:
        # Runs on its own thread, so the server answers /health and /ready while loading.
        from model.engine import EngineOptions
        from model.llama import ModelLoadError
        from model.runtime import Runtime
        from model.template import TemplateError

        config = self.config
        options = EngineOptions(
            slots=config.slots,
            ctx_size=config.ctx_size,
            batch_size=config.batch_size,
            prefill_chunk=config.prefill_chunk,
            threads=config.threads or os.cpu_count() or 1,
            max_queue=config.max_queue,
            stall_timeout=config.stall_timeout,
        )
        try:
            runtime = Runtime.load(
                resolved,
                options,
                LoopDispatch(loop),
                name=config.served_model_name,
                gpu_layers=config.gpu_layers,
                chat_template=config.chat_template,
            )
        except (ModelLoadError, TemplateError) as exc:
            self._failure = str(exc)
            _log.error("sluice: error: %s", exc)
            loop.call_soon_threadsafe(self.failed.set)
            return
        self._runtime = runtime
        _log.info("ready: %s (%s) with %s", runtime.name, resolved.path, runtime.engine.options)

    # -- HTTP -------------------------------------------------------------------------

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers = Headers(scope=scope)
        try:
            route, routes = self._find(path)
            handler = routes.get(method)
            if handler is None:
                allow = ", ".join(routes)
                raise MethodNotAllowed(
                    f"Method {method} is not allowed for {path}; use {allow}.",
                    code="method_not_allowed",
                    headers={"allow": allow},
                )
            self._authorize(route, headers)
            if method == "POST":
                _check_content_type(headers)
            response = await handler(scope, receive)
        except APIError as exc:
            response = JSONResponse(exc.body(), exc.status, headers=exc.headers)
        await response(scope, receive, send)

    def _route_name(self, path: str) -> str:
        """The route template ``path`` falls under (also the metrics label)."""
        if path in self._routes:
            return path
        return "/v1/models/{id}" if path.startswith("/v1/models/") else "other"

    def _find(self, path: str) -> tuple[str, dict[str, Handler]]:
        route = self._route_name(path)
        routes = self._routes.get(route)
        if routes is None:
            raise NotFound(f"Unknown request URL: {path}.", code="unknown_url")
        return route, routes

    def _authorize(self, route: str, headers: Headers) -> None:
        if not self._keys or route in _PUBLIC:
            return
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
                headers={"www-authenticate": "Bearer"},
            )
        # Compare with every key, always: the time taken says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given.encode(), key.encode())
        if not matched:
            raise Unauthorized(
                "Incorrect API key provided.",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("The client went away while sending the request.")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_size:
                raise PayloadTooLarge(
                    f"The request body exceeds {self.config.max_body_size} bytes.",
                    code="request_too_large",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _serving(self, requested: str | None) -> Runtime:
        if self._draining:
            raise Unavailable(
                "The server is shutting down; retry on another instance.",
                code="shutting_down",
                headers={"retry-after": "5"},
            )
        runtime = self._runtime
        if runtime is None:
            message = self._failure or "The model is still loading; retry shortly."
            raise Unavailable(message, code="model_not_ready", headers={"retry-after": "5"})
        if self.config.strict_model_names and requested not in (None, runtime.name):
            raise NotFound(
                f"The model '{requested}' does not exist; this server serves '{runtime.name}'.",
                param="model",
                code="model_not_found",
            )
        return runtime

    async def _health(self, scope: Scope, receive: Receive) -> ASGIApp:
        if self._failure:
            return JSONResponse({"status": "failed", "error": self._failure}, 500)
        return JSONResponse({"status": "ok"})

    async def _ready(self, scope: Scope, receive: Receive) -> ASGIApp:
        runtime = self._runtime
        if self._draining:
            return JSONResponse({"status": "draining"}, 503, headers={"retry-after": "5"})
        if runtime is None:
            state = "failed" if self._failure else "loading"
            return JSONResponse({"status": state}, 503, headers={"retry-after": "5"})
        stats = runtime.engine.stats()
        return JSONResponse(
            {"status": "ready", "model": runtime.name, "engine": dataclasses.asdict(stats)}
        )

    async def _metrics(self, scope: Scope, receive: Receive) -> ASGIApp:
        return Response(self.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    def _model_object(self, runtime: Runtime) -> dict[str, Any]:
        return {"id": runtime.name, "object": "model", "created": 0, "owned_by": "sluice"}

    async def _models(self, scope: Scope, receive: Receive) -> ASGIApp:
        runtime = self._serving(None)
        return JSONResponse({"object": "list", "data": [self._model_object(runtime)]})

    async def _model(self, scope: Scope, receive: Receive) -> ASGIApp:
        runtime = self._serving(None)
        wanted = scope["path"][len("/v1/models/") :]
        if wanted != runtime.name:
            raise NotFound(
                f"The model '{wanted}' does not exist.", param="model", code="model_not_found"
            )
        return JSONResponse(self._model_object(runtime))

    async def _chat(self, scope: Scope, receive: Receive) -> ASGIApp:
        request = parse_chat(parse_json(await self._body(receive)))
        runtime = self._serving(request.model)
        return await self._generate(runtime, request, receive)

    async def _completion(self, scope: Scope, receive: Receive) -> ASGIApp:
        request = parse_completion(parse_json(await self._body(receive)))
        runtime = self._serving(request.model)
        return await self._generate(runtime, request, receive)

    async def _generate(
        self,
        runtime: Runtime,
        request: ChatRequest | CompletionRequest,
        receive: Receive,
    ) -> ASGIApp:
        from model.engine import QueueFull
        from model.runtime import PromptError
        from model.template import TemplateFailure

        started = time.perf_counter()
        if isinstance(request, ChatRequest) and len(request.messages) > self.config.max_messages:
            raise InvalidRequest(
                f"This request has {len(request.messages)} messages; the limit is "
                f"{self.config.max_messages}.",
                param="messages",
            )

        tools, choice = _tools(request)
        calling = bool(tools) and choice is not None and choice.mode != "none"
        try:
            if isinstance(request, ChatRequest):
                prompt = runtime.chat_prompt(request.messages, tools, choice)
                param = "messages"
            else:
                param, prompt = "prompt", runtime.text_prompt(request.prompt)
        except PromptError as exc:
            raise InvalidRequest(str(exc), param=exc.param) from None
        except TemplateFailure as exc:
            # The template is broken for this conversation, whatever the client changes.
            _log.error("%s", exc)
            raise APIError(f"The model's {exc}", code="chat_template_failed") from None

        engine = runtime.engine
        limit = engine.ctx_size
        if len(prompt) >= limit:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens. However, your {param} "
                f"resulted in {len(prompt)} tokens. Please reduce the length of the {param}.",
                param=param,
                code="context_length_exceeded",
            )
        vocab = runtime.model.n_vocab
        outside = next((t for t in request.sampling.logit_bias if t >= vocab), None)
        if outside is not None:
            raise InvalidRequest(
                f"Token id {outside} in 'logit_bias' is outside the vocabulary (0 to {vocab - 1}).",
                param="logit_bias",
            )
        if request.n > engine.options.slots:
            raise InvalidRequest(
                f"'n' may be at most {engine.options.slots} here (one slot per choice).",
                param="n",
            )
        fmt = request.response_format if isinstance(request, ChatRequest) else None
        try:
            grammar = runtime.grammar(
                fmt.type if fmt else None,
                fmt.schema if fmt else None,
                strict=fmt.strict if fmt else False,
                tools=tools,
                choice=choice,
            )
        except PromptError as exc:
            raise InvalidRequest(str(exc), param=exc.param) from None
        if grammar is not None and request.ignore_eos:
            # A complete grammar allows nothing but end-of-generation; going on would abort
            # llama.cpp.
            raise InvalidRequest(
                "'ignore_eos' cannot be combined with a response_format or a forced tool call.",
                param="ignore_eos",
            )
        room = limit - len(prompt)
        wanted = request.max_tokens
        cap = self.config.max_tokens_limit
        if cap and wanted is not None and wanted > cap:
            name = request.max_tokens_field if isinstance(request, ChatRequest) else "max_tokens"
            raise InvalidRequest(
                f"{name} is {wanted}, more than this server allows ({cap}).", param=name
            )
        timeout = self.config.request_timeout if request.timeout is None else request.timeout
        if timeout > self.config.max_request_timeout:
            raise InvalidRequest(
                f"'timeout' may be at most {self.config.max_request_timeout:g} seconds.",
                param="timeout",
            )
        generation = GenerationRequest(
            prompt=tuple(prompt),
            sampling=request.sampling,
            max_tokens=room if wanted is None else min(wanted, room),
            stop=request.stop + runtime.template.stop
            if isinstance(request, ChatRequest)
            else request.stop,
            ignore_eos=request.ignore_eos,
            deadline=time.monotonic() + timeout,
            n=request.n,
            logprobs=request.logprobs,
            grammar=grammar,
            tools=tuple(tool.name for tool in tools) if calling else None,
        )
        shaper = Shaper(
            "chat" if isinstance(request, ChatRequest) else "completion",
            runtime.name,
            include_usage=request.include_usage,
            n=request.n,
            logprobs=request.logprobs is not None,
        )
        channel = Channel(
            self.config.stream_buffer,
            engine.wake,
            finals=request.n,
            observe=self.metrics.generation(started),
        )
        try:
            engine.submit(generation, channel)
        except QueueFull as exc:
            channel.close()
            raise RateLimited(
                f"The server is at capacity ({exc}); retry shortly.",
                code="rate_limit_exceeded",
                headers={"retry-after": "1"},
            ) from None
        if request.stream:
            return SSEResponse(
                channel.receive,
                shaper.frame,
                opening=shaper.opening(),
                heartbeat_interval=self.config.heartbeat_interval,
                on_close=channel.close,
            )
        try:
            events = await run_until_disconnect(receive, channel.drain)
        finally:
            channel.close()
        if events is None:
            return Response(status_code=499)  # nobody is listening any more
        finished = events[-1]
        if isinstance(finished, Finished) and finished.reason in SERVER_ENDS:
            default, _, code = SERVER_ENDS[finished.reason]
            error = {"deadline": DeadlineExceeded, "cancelled": Unavailable}.get(
                finished.reason, APIError
            )
            raise error(finished.message or default, code=code)
        return JSONResponse(shaper.response(events))


#: Routes that answer without an API key: orchestrators and scrapers probe them.
_PUBLIC = frozenset({"/health", "/ready", "/metrics"})


def _tools(request: ChatRequest | CompletionRequest) -> tuple[tuple[Tool, ...], ToolChoice | None]:
    if not isinstance(request, ChatRequest):
        return (), None
    from model.tools import ToolError, parse_tool_choice, parse_tools

    try:
        tools = parse_tools(request.tools)
        choice = parse_tool_choice(
            request.tool_choice, tools, parallel_tool_calls=request.parallel_tool_calls
        )
    except ToolError as exc:
        raise InvalidRequest(str(exc), param=exc.param) from None
    return tools, choice


def _idle(runtime: Runtime) -> bool:
    stats = runtime.engine.stats()
    return stats.active == 0 and stats.queued == 0


def _api_keys(config: Config) -> tuple[str, ...]:
    keys = [k.strip() for k in (config.api_keys or "").split(",")]
    if config.api_key_file:
        with open(config.api_key_file, encoding="utf-8") as lines:
            keys += [line.strip() for line in lines]
    return tuple(k for k in keys if k and not k.startswith("#"))


def _check_content_type(headers: Headers) -> None:
    kind = headers.get("content-type")
    if kind is not None and kind.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {kind!r}.", code="unsupported_media_type"
        )


#: For ``hypercorn service:app``: configured from ``SLUICE_*`` variables. Building it is
#: cheap; the model is found and loaded only when the server's lifespan starts.
app = Sluice(Config.from_env())


def hypercorn_config(config: Config) -> HypercornConfig:
    """Hypercorn settings for ``config``, listening on a socket Sluice makes itself.

    Linux autotunes a connection's send buffer up to megabytes, which would swallow a
    whole generation for a client that stopped reading, so its sequence would never pause.
    Connections inherit the listening socket's fixed ``SO_SNDBUF`` instead.
    """
    from hypercorn.config import Config as HypercornConfig

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
    hypercorn = HypercornConfig()
    hypercorn.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns (and closes) it now
    if config.certfile:
        hypercorn.certfile = config.certfile
        hypercorn.keyfile = config.keyfile
    # Sluice drains streams itself (Config.shutdown_grace) before Hypercorn stops, so
    # Hypercorn's own grace only has to cover the last frames.
    hypercorn.graceful_timeout = 10 * SECONDS
    return hypercorn


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; exit 2 on a bad model spec, 1 if it fails to load."""
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
    app = Sluice(config, resolved)
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
