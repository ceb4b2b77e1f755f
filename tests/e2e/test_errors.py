"""Bad input over real HTTP: OpenAI-shaped errors with the right status, never a 500."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .server import RunningServer, running_server

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param
    return str(error["message"])


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def test_malformed_json(http: httpx.Client) -> None:
    reply = http.post(CHAT, content=b'{"messages": [', headers={"content-type": "application/json"})
    assert "JSON" in assert_openai_error(reply, 400)


def test_invalid_utf8(http: httpx.Client) -> None:
    reply = http.post(CHAT, content=b'{"messages": "\xff\xfe"}')
    assert "UTF-8" in assert_openai_error(reply, 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "max_tokens": 1.5}, "max_tokens"),
        ({"messages": HELLO, "stream": "yes"}, "stream"),
        ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": HELLO, "model": 7}, "model"),
        ({"messages": HELLO, "frobnicate": True}, "frobnicate"),
    ],
)
def test_wrong_or_missing_fields(http: httpx.Client, body: dict[str, Any], param: str) -> None:
    assert_openai_error(http.post(CHAT, json=body), 400, param)


def test_non_object_body(http: httpx.Client) -> None:
    assert_openai_error(http.post(CHAT, json=[1, 2]), 400)


def test_prompt_longer_than_the_context(server: RunningServer, http: httpx.Client) -> None:
    limit = server.engine_stats()["ctx_size"]
    long = "hello " * (limit + 100)
    message = assert_openai_error(
        http.post(CHAT, json={"messages": [{"role": "user", "content": long}]}), 400, "messages"
    )
    assert f"maximum context length is {limit} tokens" in message
    used = int(message.split("resulted in ")[1].split(" ")[0])
    assert used > limit
    assert (
        http.post(CHAT, json={"messages": [{"role": "user", "content": long}]}).json()["error"][
            "code"
        ]
        == "context_length_exceeded"
    )
    completion = http.post("/v1/completions", json={"prompt": long, "stream": True})
    assert "maximum context length" in assert_openai_error(completion, 400, "prompt")


def test_token_prompt_outside_the_vocabulary(http: httpx.Client) -> None:
    reply = http.post("/v1/completions", json={"prompt": [1, 2, 10**9]})
    assert "vocabulary" in assert_openai_error(reply, 400, "prompt")


def test_unknown_route(http: httpx.Client) -> None:
    reply = http.get("/v1/engines")
    assert_openai_error(reply, 404)
    assert reply.json()["error"]["code"] == "unknown_url"


def test_wrong_method(http: httpx.Client) -> None:
    reply = http.get(CHAT)
    assert_openai_error(reply, 405)
    assert reply.headers["allow"] == "POST"
    assert_openai_error(http.delete("/v1/models"), 405)


def test_unknown_model_id(http: httpx.Client) -> None:
    reply = http.get("/v1/models/gpt-5")
    assert_openai_error(reply, 404, "model")
    assert reply.json()["error"]["code"] == "model_not_found"


def test_any_model_name_is_served_by_default(http: httpx.Client) -> None:
    reply = http.post(CHAT, json={"model": "gpt-4o", "messages": HELLO, "max_tokens": 2})
    assert reply.status_code == 200
    assert reply.json()["model"] == "SmolLM2-135M-Instruct"


def test_strict_model_names() -> None:
    with (
        running_server(strict_model_names=True, served_model_name="smol") as srv,
        httpx.Client(base_url=srv.url, timeout=60) as http,
    ):
        wrong = http.post(CHAT, json={"model": "gpt-4o", "messages": HELLO, "max_tokens": 2})
        right = http.post(CHAT, json={"model": "smol", "messages": HELLO, "max_tokens": 2})
        unnamed = http.post(CHAT, json={"messages": HELLO, "max_tokens": 2})
        listed = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert "gpt-4o" in assert_openai_error(wrong, 404, "model")
    assert wrong.json()["error"]["code"] == "model_not_found"
    assert right.status_code == 200
    assert right.json()["model"] == "smol"
    assert unnamed.status_code == 200
    assert listed == ["smol"]


def test_request_body_too_large() -> None:
    with running_server(max_body_size=1000) as srv:
        reply = httpx.post(
            srv.url + CHAT, json={"messages": [{"role": "user", "content": "x" * 2000}]}
        )
        assert "exceeds 1000 bytes" in assert_openai_error(reply, 413)


def test_bad_requests_do_not_disturb_a_running_stream(server: RunningServer) -> None:
    body = {"messages": HELLO, "max_tokens": 40, "temperature": 0, "ignore_eos": True}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        expected = client.post(CHAT, json=body).json()["choices"][0]["message"]["content"]
        text = ""
        with client.stream("POST", CHAT, json={**body, "stream": True}) as stream:
            with httpx.Client(base_url=server.url, timeout=60) as other:
                for bad in ({}, {"messages": HELLO, "top_p": 9}, {"messages": "x"}):
                    assert other.post(CHAT, json=bad).status_code == 400
                assert other.get("/nope").status_code == 404
            for line in stream.iter_lines():
                if line.startswith("data: {"):
                    chunk = httpx.Response(200, content=line[6:]).json()
                    text += chunk["choices"][0]["delta"].get("content") or ""
    assert text == expected


def websocket_handshake(port: int, path: str) -> tuple[str, dict[str, str], bytes]:
    """A WebSocket upgrade as a browser sends it, over a plain socket: status line, headers
    and body of the answer."""
    request = (
        f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\n"
        "connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "sec-websocket-version: 13\r\nx-request-id: ws-probe-1\r\n\r\n"
    )
    raw = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request.encode())
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(headers.get("content-length", "0")):
            body += sock.recv(65536)
    return lines[0], headers, body


def requests_counted(server: RunningServer, route: str, status: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(f'sluice_requests_total{{route="{route}",status="{status}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_websocket_upgrade_is_refused_with_an_openai_404(server: RunningServer) -> None:
    before = requests_counted(server, "other", "404")
    # A path with no WebSocket (the generation APIs have one: tests/e2e/test_websocket.py).
    status, headers, body = websocket_handshake(server.port, "/v1/models")
    assert status.startswith("HTTP/1.1 404")
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"] == "ws-probe-1"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "unknown_url"
    assert requests_counted(server, "other", "404") == before + 1
