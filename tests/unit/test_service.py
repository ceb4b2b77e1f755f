"""The ASGI app before its model is loaded, driven with hand-made receive/send."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.types import Message

from service import Config, Sluice


async def call(
    app: Sluice, method: str, path: str, body: bytes = b""
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

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    with anyio.fail_after(5):
        await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    data = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, json.loads(data)


@pytest.fixture
def loading() -> Sluice:
    # No lifespan has run: exactly the state while the model loads.
    return Sluice(Config())


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
    loading._failure = "llama.cpp could not load /models/x.gguf"
    status, _, body = await call(loading, "GET", "/health")
    assert status == 500
    assert body["status"] == "failed"
    status, _, body = await call(loading, "GET", "/ready")
    assert (status, body["status"]) == (503, "failed")
    status, _, reply = await call(loading, "POST", "/v1/completions", b'{"prompt": "x"}')
    assert status == 503
    assert "could not load" in reply["error"]["message"]
