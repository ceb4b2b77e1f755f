"""The limits every route keeps, on the routes of the Messages, Embeddings and tokenizer APIs:
413, 401 with keys on, 400 naming the parameter, a deadline mid-stream; each error in its
API's shape. Also --embedding-model naming a GGUF of its own."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from .server import RunningServer, embedded_model, running_server

KEY = "k-limits"
AUTH = {"authorization": f"Bearer {KEY}"}
HELLO = [{"role": "user", "content": "Tell me a long story about a river."}]
# Route -> a valid body, and a body whose parameter is wrong (with that parameter's name).
ROUTES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "/v1/messages": ({"messages": HELLO, "max_tokens": 1}, {"messages": HELLO}, "max_tokens"),
    "/v1/messages/count_tokens": ({"messages": HELLO}, {"messages": "hi"}, "messages"),
    "/v1/embeddings": ({"input": "a river"}, {"input": "a", "dimensions": 3}, "dimensions"),
    "/tokenize": ({"content": "a river"}, {"content": ["a"]}, "content"),
    "/detokenize": ({"tokens": [1, 2]}, {"tokens": [-5]}, "tokens"),
}
ANTHROPIC = {"/v1/messages", "/v1/messages/count_tokens"}


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningServer]:
    with running_server(
        api_keys=KEY,
        max_body_size=4096,
        request_timeout=0.5,
        embedding_model=str(embedded_model().path),
    ) as running:
        yield running


def error_of(route: str, reply: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = reply.json()
    if route in ANTHROPIC:
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


def test_every_new_route_keeps_the_limits(limited: RunningServer) -> None:
    for route, (good, bad, param) in ROUTES.items():
        url = limited.url + route
        unkeyed = httpx.post(url, json=good, timeout=60)
        assert unkeyed.status_code == 401, route
        assert "API key" in error_of(route, unkeyed)["message"]
        keyed = httpx.post(url, json=good, headers={"x-api-key": KEY}, timeout=60)
        assert keyed.status_code == 200, (route, keyed.text)

        big = httpx.post(url, content=b" " * 5000, headers=AUTH, timeout=60)
        assert big.status_code == 413, route
        error = error_of(route, big)
        if route in ANTHROPIC:
            assert error["type"] == "request_too_large"

        wrong = httpx.post(url, json=bad, headers=AUTH, timeout=60)
        assert wrong.status_code == 400, (route, wrong.text)
        error = error_of(route, wrong)
        if route in ANTHROPIC:
            assert error["type"] == "invalid_request_error"
            assert param in error["message"]
        else:
            assert error["param"] == param

        broken = httpx.post(url, content=b"{", headers=AUTH, timeout=60)
        assert broken.status_code == 400, route
        error_of(route, broken)


def test_a_passed_deadline_ends_a_messages_stream_with_an_error_event(
    limited: RunningServer,
) -> None:
    body = {"messages": HELLO, "max_tokens": 4000, "stream": True}
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream(
        "POST", limited.url + "/v1/messages", json=body, headers=AUTH, timeout=60
    ) as response:
        assert response.status_code == 200
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    assert events[0][0] == "message_start"
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "timeout_error", "message": events[-1][1]["error"]["message"]},
        },
    )
    assert "message_stop" not in [name for name, _ in events]

    # The SDK raises the error event as its typed exception, carrying the error object.
    with (
        anthropic.Anthropic(base_url=limited.url, api_key=KEY, max_retries=0) as sdk,
        pytest.raises(anthropic.APIStatusError) as raised,
        sdk.messages.stream(model="m", messages=HELLO, max_tokens=4000) as stream,  # type: ignore[arg-type]
    ):
        for _ in stream:
            pass
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["error"]["type"] == "timeout_error"

    whole = httpx.post(
        limited.url + "/v1/messages", json={**body, "stream": False}, headers=AUTH, timeout=60
    )
    assert whole.status_code == 504
    assert whole.json()["error"]["type"] == "timeout_error"


def test_a_separate_embedding_model_gives_the_same_vectors(
    limited: RunningServer, server: RunningServer
) -> None:
    body = {"input": ["a river", "the sea"]}
    own = httpx.post(limited.api + "/embeddings", json=body, headers=AUTH, timeout=60).json()
    shared = httpx.post(server.api + "/embeddings", json=body, timeout=60).json()
    assert limited.app.registry.get().embedder.options.source == str(embedded_model().path)
    for mine, theirs in zip(own["data"], shared["data"], strict=True):
        dot = sum(a * b for a, b in zip(mine["embedding"], theirs["embedding"], strict=True))
        assert math.isclose(dot, 1.0, abs_tol=1e-5)
