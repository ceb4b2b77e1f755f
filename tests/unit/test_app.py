"""The ASGI app (stream.app, wired by service.create_app) before its model is loaded,
driven with hand-made receive/send."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message

from model.errors import (
    CapacityExceeded,
    InvalidInput,
    LoadError,
    ModelError,
    ModelNotFound,
    NotReady,
)
from model.registry import ModelRegistry, ModelSettings
from service import Config, Sluice, create_app
from stream.errors import APIError
from stream.metrics import Metrics
from stream.routes import Request, Route, RouteTable


async def call(
    app: Sluice,
    method: str,
    path: str,
    body: bytes = b"",
    request_headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[str, str], Any]:
    sent: list[Message] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": request_headers or []}
    with anyio.fail_after(5):
        await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    data = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, json.loads(data)


@pytest.fixture
def loading() -> Sluice:
    # No lifespan has run: exactly the state while the model loads.
    return create_app(Config())


@pytest.mark.anyio
async def test_liveness_is_up_and_readiness_is_not(loading: Sluice) -> None:
    status, _, body = await call(loading, "GET", "/health")
    assert (status, body) == (200, {"status": "ok"})
    status, headers, body = await call(loading, "GET", "/ready")
    assert (status, body) == (503, {"status": "loading"})
    assert headers["retry-after"] == "5"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/v1/completions", {"prompt": "hi"}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/x", None),
    ],
)
async def test_model_routes_answer_503_while_loading(
    loading: Sluice, method: str, path: str, body: Any
) -> None:
    raw = json.dumps(body).encode() if body is not None else b""
    status, headers, reply = await call(loading, method, path, raw)
    assert status == 503
    assert headers["retry-after"] == "5"
    assert reply["error"]["code"] == "model_not_ready"
    assert set(reply["error"]) == {"message", "type", "param", "code"}


@pytest.mark.anyio
async def test_client_errors_are_reported_even_while_loading(loading: Sluice) -> None:
    status, _, reply = await call(loading, "POST", "/v1/chat/completions", b"{nope")
    assert status == 400
    assert "JSON" in reply["error"]["message"]
    status, _, _ = await call(loading, "GET", "/v1/nothing")
    assert status == 404
    status, headers, _ = await call(loading, "PUT", "/health")
    assert (status, headers["allow"]) == (405, "GET")


@pytest.mark.anyio
async def test_a_failed_load_shows_in_liveness(loading: Sluice) -> None:
    loading.registry._failure = "llama.cpp could not load /models/x.gguf"
    status, _, body = await call(loading, "GET", "/health")
    assert status == 500
    assert body["status"] == "failed"
    status, _, body = await call(loading, "GET", "/ready")
    assert (status, body["status"]) == (503, "failed")
    status, _, reply = await call(loading, "POST", "/v1/completions", b'{"prompt": "x"}')
    assert status == 503
    assert "could not load" in reply["error"]["message"]


# -- the one place exceptions become responses ---------------------------------------------


def other_shape(exc: APIError) -> dict[str, Any]:
    """An API with its own error shape (as Anthropic's), for a route that declares it."""
    return {"type": "error", "error": {"type": exc.type, "message": exc.message}}


def app_with(handler_error: BaseException) -> Sluice:
    """An app whose routes ``GET /fail`` and ``GET /other/fail`` (with its own error shape)
    raise ``handler_error``."""

    async def fail(request: Request) -> ASGIApp:
        raise handler_error

    async def fine(request: Request) -> ASGIApp:
        return JSONResponse({"params": dict(request.params)})

    registry = ModelRegistry()
    metrics = Metrics(registry.figures)
    routes = RouteTable(
        {
            "/fail": Route({"GET": fail}),
            "/other/fail": Route({"GET": fail}, error_body=other_shape),
            "/things/{id}": Route({"GET": fine}, public=True),
        }
    )
    return Sluice(Config(), registry, routes, metrics, model=ModelSettings())


@pytest.mark.anyio
async def test_an_unexpected_error_is_an_openai_500_naming_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_with(RuntimeError("secret internals"))
    with caplog.at_level(logging.ERROR, logger="sluice"):
        status, headers, reply = await call(
            app, "GET", "/fail", request_headers=[(b"x-request-id", b"trace-77")]
        )
    assert status == 500
    assert headers["x-request-id"] == "trace-77"
    assert set(reply) == {"error"}
    assert set(reply["error"]) == {"message", "type", "param", "code"}
    assert reply["error"]["type"] == "server_error"
    assert "trace-77" in reply["error"]["message"]
    assert "secret internals" not in reply["error"]["message"]
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1  # once, with its traceback and the request id
    assert logged[0].exc_info is not None
    assert "secret internals" in str(logged[0].exc_info[1])
    assert getattr(logged[0], "request_id", None) == "trace-77"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "status", "kind", "param", "code", "retry"),
    [
        (
            InvalidInput("bad messages", param="messages"),
            400,
            "invalid_request_error",
            "messages",
            None,
            None,
        ),
        (
            ModelNotFound("no such model", param="model"),
            404,
            "invalid_request_error",
            "model",
            "model_not_found",
            None,
        ),
        (
            CapacityExceeded("3 requests already wait for a slot"),
            429,
            "requests",
            None,
            "rate_limit_exceeded",
            "1",
        ),
        (NotReady("still loading"), 503, "server_error", None, "model_not_ready", "5"),
        (
            NotReady("draining", code="shutting_down"),
            503,
            "server_error",
            None,
            "shutting_down",
            "5",
        ),
        (LoadError("the template broke"), 500, "server_error", None, None, None),
        (ModelError("something else"), 500, "server_error", None, None, None),
    ],
)
async def test_model_errors_are_translated_once(
    error: ModelError,
    status: int,
    kind: str,
    param: str | None,
    code: str | None,
    retry: str | None,
) -> None:
    got, headers, reply = await call(app_with(error), "GET", "/fail")
    assert got == status
    assert reply["error"]["type"] == kind
    assert reply["error"]["param"] == param
    assert reply["error"]["code"] == code
    assert error.message in reply["error"]["message"]
    assert headers.get("retry-after") == retry


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error", [InvalidInput("bad", param="messages"), RuntimeError("boom"), ModelError("x")]
)
async def test_a_route_with_its_own_error_shape_answers_in_it(error: BaseException) -> None:
    app = app_with(error)
    status, _, reply = await call(app, "GET", "/other/fail")
    assert status in (400, 500)
    assert reply["type"] == "error"
    assert set(reply["error"]) == {"type", "message"}
    _, _, openai = await call(app, "GET", "/fail")
    assert set(openai["error"]) == {"message", "type", "param", "code"}
    status, _, reply = await call(app, "POST", "/other/fail")  # 405 in the route's shape
    assert (status, reply["type"]) == (405, "error")


@pytest.mark.anyio
async def test_a_template_route_passes_its_parameter() -> None:
    status, _, reply = await call(app_with(RuntimeError()), "GET", "/things/a/b")
    assert (status, reply) == (200, {"params": {"id": "a/b"}})


# -- WebSocket handshakes ------------------------------------------------------------------


async def handshake(
    app: Sluice,
    path: str,
    *,
    denial: bool,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    then: tuple[Message, ...] = (),
) -> list[Message]:
    sent: list[Message] = []
    incoming = [{"type": "websocket.connect"}, *then]

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "websocket",
        "path": path,
        "headers": headers or [],
        "subprotocols": subprotocols or [],
    }
    if denial:
        scope["extensions"] = {"websocket.http.response": {}}
    with anyio.fail_after(5):
        await app(scope, receive, send)
    return sent


def counted(app: Sluice, status: str) -> float:
    value = app.metrics.registry.get_sample_value(
        "sluice_requests_total", {"route": "other", "status": status}
    )
    return value or 0.0


@pytest.mark.anyio
async def test_a_websocket_is_denied_with_an_openai_404(loading: Sluice) -> None:
    # A path with no WebSocket (the generation APIs have one).
    sent = await handshake(loading, "/v1/models", denial=True)
    start, body = sent
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 404
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert b"x-request-id" in headers
    assert body["type"] == "websocket.http.response.body"
    error = json.loads(body["body"])["error"]
    assert error["code"] == "unknown_url"
    assert error["type"] == "invalid_request_error"
    assert counted(loading, "404") == 1


@pytest.mark.anyio
async def test_a_websocket_handshake_checks_the_key_and_the_origin() -> None:
    app = create_app(Config(api_keys="sk-one", cors_origins="https://app.example"))
    path = "/v1/chat/completions"
    refused = await handshake(app, path, denial=True)
    assert refused[0]["status"] == 401
    assert json.loads(refused[1]["body"])["error"]["code"] == "missing_api_key"
    wrong = await handshake(app, path, denial=True, subprotocols=["sluice.key.sk-two"])
    assert wrong[0]["status"] == 401
    elsewhere = [(b"origin", b"https://evil.example"), (b"authorization", b"Bearer sk-one")]
    forbidden = await handshake(app, path, denial=True, headers=elsewhere)
    assert forbidden[0]["status"] == 403
    # A browser's key as a subprotocol, from an allowed origin: accepted, the protocol echoed.
    allowed = [(b"origin", b"https://app.example")]
    offered = ["json", "sluice.key.sk-one"]
    leave = ({"type": "websocket.disconnect", "code": 1000},)
    accepted = await handshake(
        app, path, denial=True, headers=allowed, subprotocols=offered, then=leave
    )
    assert accepted[0]["type"] == "websocket.accept"
    assert accepted[0]["subprotocol"] == "sluice.key.sk-one"


@pytest.mark.anyio
async def test_a_websocket_without_the_denial_extension_is_closed(loading: Sluice) -> None:
    sent = await handshake(loading, "/anything", denial=False)
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert counted(loading, "403") == 1  # a close before accepting is a 403 handshake
