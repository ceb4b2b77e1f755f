"""The Anthropic Messages API against the real server, with Anthropic's own SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam, ToolParam

from .server import RunningServer, running_server

KEY = "k-messages"
# This SDK's typed signature lacks temperature; the API takes it (0 to 1).
GREEDY = {"temperature": 0}
HELLO: list[MessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    # A heartbeat after 5 ms of silence: every stream's prompt reading is longer, so each
    # stream below carries pings between its events.
    with running_server(api_keys=KEY, heartbeat_interval=0.005) as running:
        yield running


@contextmanager
def client(server: RunningServer, **options: Any) -> Iterator[anthropic.Anthropic]:
    options.setdefault("api_key", KEY)
    with anthropic.Anthropic(base_url=server.url, max_retries=0, timeout=120, **options) as sdk:
        yield sdk


def test_create_answers_a_message(keyed: RunningServer) -> None:
    with client(keyed) as sdk:
        reply = sdk.messages.create(
            model="local",
            system="Answer briefly.",
            messages=HELLO,
            max_tokens=16,
            extra_body=GREEDY,
        )
    assert reply.id.startswith("msg_")
    assert reply.type == "message"
    assert reply.role == "assistant"
    assert reply.model == "SmolLM2-135M-Instruct"
    assert [block.type for block in reply.content] == ["text"]
    assert reply.content[0].type == "text"
    assert reply.content[0].text.strip()
    assert reply.stop_reason in ("end_turn", "max_tokens")
    assert reply.stop_sequence is None
    usage = reply.usage
    assert 0 < usage.output_tokens <= 16
    assert (usage.input_tokens + (usage.cache_read_input_tokens or 0)) > 10


def test_stream_sends_anthropics_events_and_pings(keyed: RunningServer) -> None:
    with client(keyed) as sdk:
        whole = sdk.messages.create(model="m", messages=HELLO, max_tokens=12, extra_body=GREEDY)
        with sdk.messages.stream(
            model="m", messages=HELLO, max_tokens=12, extra_body=GREEDY
        ) as stream:
            texts = list(stream.text_stream)
            final = stream.get_final_message()
        assert len(texts) > 1
        assert final.content[0].type == "text"
        assert whole.content[0].type == "text"
        assert "".join(texts) == final.content[0].text == whole.content[0].text
        assert final.stop_reason == whole.stop_reason
        assert final.usage.output_tokens == whole.usage.output_tokens

        # The raw frames: event names, each matching its data's type, in Anthropic's order.
        body = {"model": "m", "messages": HELLO, "max_tokens": 12, "stream": True}
        names: list[str] = []
        with httpx.stream(
            "POST", keyed.url + "/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=120
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    assert json.loads(line.removeprefix("data: "))["type"] == event
                    names.append(event or "")
        assert names[0] == "message_start"
        assert "ping" in names
        names = [name for name in names if name != "ping"]
        assert names[1] == "content_block_start"
        assert set(names[2:-3]) == {"content_block_delta"}
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_stop_sequence_is_reported(keyed: RunningServer) -> None:
    with client(keyed) as sdk:
        first = sdk.messages.create(model="m", messages=HELLO, max_tokens=16, extra_body=GREEDY)
        assert first.content[0].type == "text"
        words = first.content[0].text.split()
        assert len(words) > 2
        stop = words[2]
        reply = sdk.messages.create(
            model="m", messages=HELLO, max_tokens=16, extra_body=GREEDY, stop_sequences=[stop]
        )
        assert reply.stop_reason == "stop_sequence"
        assert reply.stop_sequence == stop
        assert reply.content[0].type == "text"
        assert stop not in reply.content[0].text
        assert first.content[0].text.startswith(reply.content[0].text)


def test_tool_use_round_trip(keyed: RunningServer) -> None:
    with client(keyed) as sdk:
        question: MessageParam = {"role": "user", "content": "What is the weather in Paris?"}
        with sdk.messages.stream(
            model="m",
            messages=[question],
            max_tokens=64,
            extra_body=GREEDY,
            tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather"},
        ) as stream:
            partial = [e.partial_json for e in stream if e.type == "input_json"]
            called = stream.get_final_message()
        assert called.stop_reason == "tool_use"
        uses = [block for block in called.content if block.type == "tool_use"]
        assert len(uses) == 1
        use = uses[0]
        assert use.id.startswith("toolu_")
        assert use.name == "get_weather"
        assert isinstance(use.input, dict)
        assert isinstance(use.input["city"], str)
        assert json.loads("".join(partial)) == use.input

        answer = sdk.messages.create(
            model="m",
            max_tokens=24,
            extra_body=GREEDY,
            tools=[WEATHER],
            messages=[
                question,
                {"role": "assistant", "content": called.content},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 C"}
                    ],
                },
            ],
        )
        assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")
        assert answer.content
        assert answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0) > (
            called.usage.input_tokens + (called.usage.cache_read_input_tokens or 0)
        )


def test_count_tokens_is_the_prompt_a_message_reads(keyed: RunningServer) -> None:
    with client(keyed) as sdk:
        counted = sdk.messages.count_tokens(model="m", messages=HELLO, tools=[WEATHER])
        reply = sdk.messages.create(model="m", messages=HELLO, tools=[WEATHER], max_tokens=1)
        usage = reply.usage
        assert counted.input_tokens == usage.input_tokens + (usage.cache_read_input_tokens or 0)
        plain = sdk.messages.count_tokens(model="m", messages=HELLO)
        assert 10 < plain.input_tokens < counted.input_tokens  # the tools prompt counts


def test_keys_and_errors_in_anthropics_shape(keyed: RunningServer) -> None:
    missing = httpx.post(keyed.url + "/v1/messages", json={"messages": HELLO, "max_tokens": 1})
    assert missing.status_code == 401
    body = missing.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert "API key" in body["error"]["message"]
    with client(keyed, api_key="wrong") as wrong, pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="m", messages=HELLO, max_tokens=1)
    # A bearer token works as well, with or without anthropic-version.
    with client(keyed, api_key=None, auth_token=KEY) as bearer:
        assert bearer.messages.create(model="m", messages=HELLO, max_tokens=1).content
    plain = httpx.post(
        keyed.url + "/v1/messages",
        json={"messages": HELLO, "max_tokens": 1},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=120,
    )
    assert plain.status_code == 200, plain.text

    with client(keyed) as sdk, pytest.raises(anthropic.BadRequestError) as hot:
        sdk.messages.create(
            model="m", messages=HELLO, max_tokens=4, extra_body={"temperature": 1.5}
        )
    assert isinstance(hot.value.body, dict)
    error = hot.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert "temperature" in error["message"]
    no_limit = httpx.post(
        keyed.url + "/v1/messages", json={"messages": HELLO}, headers={"x-api-key": KEY}
    )
    assert no_limit.status_code == 400
    assert no_limit.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Missing required parameter: 'max_tokens'.",
    }
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
    refused = httpx.post(
        keyed.url + "/v1/messages",
        json={"messages": [{"role": "user", "content": [image]}], "max_tokens": 4},
        headers={"x-api-key": KEY},
    )
    assert refused.status_code == 400
    assert "messages[0].content[0].type" in refused.json()["error"]["message"]
    unenforceable = httpx.post(
        keyed.url + "/v1/messages",
        json={
            "messages": HELLO,
            "max_tokens": 4,
            "tools": [{"name": "f", "input_schema": {"type": "object", "not": {}}}],
            "tool_choice": {"type": "tool", "name": "f"},
        },
        headers={"x-api-key": KEY},
    )
    assert unenforceable.status_code == 400
    assert unenforceable.json()["error"]["message"].startswith("tools[0].input_schema")
    unknown = httpx.get(keyed.url + "/v1/messages", headers={"x-api-key": KEY})
    assert unknown.status_code == 405
    assert unknown.json()["type"] == "error"
