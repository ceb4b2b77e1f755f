"""``/v1/responses`` and ``/v1/messages`` over WebSockets against the real server, with the
``websockets`` client: the events equal their SSE streams' data, a response made on a socket
is stored as the handshake key's, and errors come in each API's own shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from .server import RunningServer, running_server

pytestmark = pytest.mark.anyio

RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
KEY = {"authorization": "Bearer key-a"}
OTHER_KEY = {"authorization": "Bearer key-b"}
RESPONSE_BODY = {
    "model": "sluice",
    "input": "Name three colours.",
    "max_output_tokens": 8,
    "temperature": 0,
    "stream": True,
}
MESSAGE_BODY = {
    "model": "sluice",
    "messages": [{"role": "user", "content": "Name three colours."}],
    "max_tokens": 8,
    "temperature": 0,
    "stream": True,
}
#: Fields that differ between two runs of one request: fresh ids and clocks.
_FRESH = {"id", "item_id", "created_at", "completed_at"}


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    with running_server(api_keys="key-a,key-b") as running:
        yield running


def _url(server: RunningServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def _request(ws: ClientConnection, request_id: str, body: dict[str, Any]) -> None:
    await ws.send(json.dumps({"type": "request", "id": request_id, "body": body}))


async def _until_done(ws: ClientConnection, ids: set[str]) -> list[dict[str, Any]]:
    """Every message until each of ``ids`` is done or failed."""
    received: list[dict[str, Any]] = []
    open_ids = set(ids)
    with anyio.fail_after(120):
        while open_ids:
            message = json.loads(await ws.recv())
            received.append(message)
            if message.get("done") or "error" in message:
                open_ids.discard(message["id"])
    return received


def _sse_data(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]


def _comparable(value: Any) -> Any:
    """``value`` with fresh ids and clocks blanked, and the prompt's tokens counted whole: a
    second run of a prompt reads part of it from the KV cache."""
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {k: "*" if k in _FRESH else _comparable(v) for k, v in value.items()}
    if "cache_read_input_tokens" in out:  # Anthropic's usage: input_tokens excludes them
        out["input_tokens"] = (out.get("input_tokens") or 0) + out.pop("cache_read_input_tokens")
    out.pop("cached_tokens", None)  # OpenAI's: input_tokens counts them
    return out


async def test_responses_and_messages_over_websockets_match_their_sse_streams(
    keyed: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=keyed.url, timeout=120, headers=KEY) as client:
        sse_response = _sse_data((await client.post(RESPONSES, json=RESPONSE_BODY)).text)
        sse_message = _sse_data((await client.post(MESSAGES, json=MESSAGE_BODY)).text)
    assert sse_response[-1]["type"] in ("response.completed", "response.incomplete")
    assert sse_message[-1]["type"] == "message_stop"

    # One socket per API (each on its own path), both streaming at once; Messages' socket
    # carries its key as Anthropic's clients send it.
    async with (
        connect(_url(keyed, RESPONSES), additional_headers=KEY) as responses_ws,
        connect(_url(keyed, MESSAGES), additional_headers={"x-api-key": "key-a"}) as messages_ws,
    ):
        await _request(responses_ws, "r", RESPONSE_BODY)
        await _request(messages_ws, "m", MESSAGE_BODY)
        over_responses = await _until_done(responses_ws, {"r"})
        over_messages = await _until_done(messages_ws, {"m"})
        response_events = [m["event"] for m in over_responses[:-1]]
        response_id = response_events[0]["response"]["id"]
        # The response was stored as the handshake key's: a continuation on the socket
        # finds it.
        follow_up = {**RESPONSE_BODY, "max_output_tokens": 2, "previous_response_id": response_id}
        await _request(responses_ws, "r2", follow_up)
        continued = await _until_done(responses_ws, {"r2"})
    assert over_responses[-1] == {"id": "r", "done": True}
    assert over_messages[-1] == {"id": "m", "done": True}
    assert {m["id"] for m in over_responses} == {"r"}
    assert _comparable(response_events) == _comparable(sse_response)
    message_events = [m["event"] for m in over_messages[:-1]]
    assert _comparable(message_events) == _comparable(sse_message)
    assert continued[-1] == {"id": "r2", "done": True}, continued
    created = continued[0]["event"]["response"]
    assert created["previous_response_id"] == response_id

    # Stored for the handshake's key only, as the stream's final response.
    async with httpx.AsyncClient(base_url=keyed.url, timeout=60) as client:
        stored = await client.get(f"{RESPONSES}/{response_id}", headers=KEY)
        assert stored.status_code == 200, stored.text
        assert stored.json()["output"] == response_events[-1]["response"]["output"]
        hidden = await client.get(f"{RESPONSES}/{response_id}", headers=OTHER_KEY)
        assert hidden.status_code == 404


async def test_errors_come_in_each_apis_shape(keyed: RunningServer) -> None:
    async with connect(_url(keyed, RESPONSES), additional_headers=KEY) as ws:
        await _request(ws, "hosted", {**RESPONSE_BODY, "background": True})
        resumable = {**RESPONSE_BODY, "stream_options": {"resumable": True}}
        await _request(ws, "resumable", resumable)
        errors = {m["id"]: m["error"] for m in await _until_done(ws, {"hosted", "resumable"})}
    # OpenAI's error object, naming the parameter.
    assert set(errors["hosted"]) == {"message", "type", "param", "code"}
    assert errors["hosted"]["type"] == "invalid_request_error"
    assert errors["hosted"]["param"] == "background"
    assert errors["resumable"]["param"] == "stream_options.resumable"
    assert "WebSocket" in errors["resumable"]["message"]

    async with connect(_url(keyed, MESSAGES), additional_headers=KEY) as ws:
        await _request(ws, "no-limit", {k: v for k, v in MESSAGE_BODY.items() if k != "max_tokens"})
        await _request(ws, "long", {**MESSAGE_BODY, "max_tokens": 500})
        await _request(ws, "long", MESSAGE_BODY)  # its id is still running
        seen: dict[str, dict[str, Any]] = {}
        with anyio.fail_after(120):
            while len(seen) < 2:
                message = json.loads(await ws.recv())
                if "error" in message:
                    seen[message["id"]] = message["error"]
        await ws.send(json.dumps({"type": "cancel", "id": "long"}))
        rest = await _until_done(ws, {"long"})
    # Anthropic's error object: a type and a message, nothing else.
    for error in seen.values():
        assert set(error) == {"type", "message"}, error
        assert error["type"] == "invalid_request_error"
    assert "max_tokens" in seen["no-limit"]["message"]
    assert "still running" in seen["long"]["message"]
    assert rest[-1] == {"id": "long", "done": True, "cancelled": True}
