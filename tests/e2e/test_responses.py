"""``/v1/responses`` against the real server: the openai SDK's Responses API (create,
stream, parse, a function-tool round trip, a previous_response_id chain, retrieve, delete),
the stored responses' bounds and privacy, and the OpenAI Agents SDK running an agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam
from pydantic import BaseModel

from .server import RunningServer, running_server

QUESTION = "What is the capital of France?"
WEATHER_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


_OPEN: list[openai.OpenAI] = []


def client(server: RunningServer, key: str = "unused") -> openai.OpenAI:
    sdk = openai.OpenAI(base_url=server.api, api_key=key, max_retries=0, timeout=120)
    _OPEN.append(sdk)
    return sdk


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    # Closed with their test: a client collected later warns of its socket in another test.
    yield
    while _OPEN:
        _OPEN.pop().close()


def test_create_answers_a_response_object_and_stores_it(server: RunningServer) -> None:
    sdk = client(server)
    response = sdk.responses.create(
        model="anything",
        input=QUESTION,
        instructions="Answer in one short sentence.",
        max_output_tokens=12,
        temperature=0,
        metadata={"case": "create"},
    )
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.model == "SmolLM2-135M-Instruct"
    assert response.output_text.strip()
    message = response.output[0]
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.content[0].type == "output_text"
    assert message.content[0].annotations == []
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens > 10
    assert 0 < usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    if response.status == "incomplete":
        assert usage.output_tokens == 12
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
    else:
        assert response.status == "completed"
    assert response.instructions == "Answer in one short sentence."
    assert response.metadata == {"case": "create"}
    assert response.temperature == 0
    assert response.max_output_tokens == 12
    assert response.model_dump()["store"] is True
    stored = sdk.responses.retrieve(response.id)
    assert stored.model_dump() == response.model_dump()
    items = sdk.responses.input_items.list(response.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]


def test_a_raw_stream_is_typed_numbered_events_without_done(server: RunningServer) -> None:
    body = {"input": QUESTION, "max_output_tokens": 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.api + "/responses", json=body, timeout=120) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        text = reply.read().decode()
    assert "[DONE]" not in text
    frames = [f for f in text.split("\n\n") if f and not f.startswith(":")]
    events = []
    for f in frames:
        name, data = f.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert name == "event: " + payload["type"]
        events.append(payload)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert types[-1] in ("response.completed", "response.incomplete")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert deltas == final["output"][0]["content"][0]["text"]
    assert final["usage"]["output_tokens"] <= 8
    # The SDK's own iteration of the same stream (temperature 0: the same text).
    stream = client(server).responses.create(
        model="m", input=QUESTION, max_output_tokens=8, temperature=0, stream=True
    )
    typed = list(stream)
    assert [e.type for e in typed] == types
    last = typed[-1]
    assert last.type in ("response.completed", "response.incomplete")
    assert last.response.output_text == deltas


def test_stream_helper_and_parse_with_a_pydantic_model(server: RunningServer) -> None:
    class Verdict(BaseModel):
        answer: Literal["yes", "no"]
        sure: bool

    sdk = client(server)
    texts = []
    with sdk.responses.stream(
        model="m",
        input="Is Paris in France? Answer in JSON.",
        text_format=Verdict,
        max_output_tokens=40,
        temperature=0,
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "".join(texts)
    assert isinstance(final.output_parsed, Verdict)
    parsed = sdk.responses.parse(
        model="m",
        input="Is Paris in France? Answer in JSON.",
        text_format=Verdict,
        max_output_tokens=40,
        temperature=0,
    )
    assert isinstance(parsed.output_parsed, Verdict)
    assert parsed.output_parsed == final.output_parsed
    assert parsed.text is not None
    assert parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"


def test_a_function_tool_round_trip(server: RunningServer) -> None:
    sdk = client(server)
    conversation: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with sdk.responses.stream(
        model="m",
        input=conversation,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        max_output_tokens=40,
        temperature=0,
    ) as stream:
        argument_events = [e for e in stream if e.type == "response.function_call_arguments.done"]
        called = stream.get_final_response()
    assert called.status == "completed"
    calls = [item for item in called.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    assert [e.arguments for e in argument_events] == [call.arguments]
    conversation += [
        item.model_dump(exclude_none=True) for item in called.output
    ]  # the SDK's own objects, sent back as input items
    conversation.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"}
    )
    answer = sdk.responses.create(
        model="m",
        input=conversation,
        tools=[WEATHER_TOOL],
        tool_choice="none",
        max_output_tokens=16,
        temperature=0,
    )
    assert answer.output_text.strip()
    assert all(item.type == "message" for item in answer.output)
    # The call and its result are in the prompt: more than the question alone.
    alone = sdk.responses.create(
        model="m", input=conversation[:1], max_output_tokens=1, temperature=0
    )
    assert answer.usage is not None
    assert alone.usage is not None
    assert answer.usage.input_tokens > alone.usage.input_tokens + 10


def test_previous_response_id_continues_on_the_cached_prefix(server: RunningServer) -> None:
    sdk = client(server)
    server.wait_idle()
    first = sdk.responses.create(
        model="m", input="My name is Ada.", max_output_tokens=10, temperature=0
    )
    second = sdk.responses.create(
        model="m",
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=10,
        temperature=0,
    )
    assert first.usage is not None
    assert second.usage is not None
    assert second.previous_response_id == first.id
    # The continuation's prompt holds the first turn and its answer...
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    # ...and the engine read the first prompt from the slot's KV cache, not again.
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    items = sdk.responses.input_items.list(second.id, order="asc")
    texts = [part.text for item in items.data for part in item.content]  # type: ignore[union-attr]
    assert texts == ["What is my name?"]
    third = sdk.responses.create(
        model="m",
        input="Thanks.",
        previous_response_id=second.id,
        max_output_tokens=4,
        temperature=0,
    )
    assert third.usage is not None
    assert third.usage.input_tokens > second.usage.input_tokens


def test_delete_removes_a_stored_response(server: RunningServer) -> None:
    sdk = client(server)
    response = sdk.responses.create(model="m", input="Hi", max_output_tokens=2)
    sdk.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
    reply = httpx.delete(f"{server.api}/responses/{response.id}")
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert response.id in error["message"]
    assert error["type"] == "invalid_request_error"
    unstored = sdk.responses.create(model="m", input="Hi", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(
            model="m", input="Hi", previous_response_id=response.id, max_output_tokens=2
        )
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi", "tools": [{"type": "web_search_preview"}]}, "tools[0].type"),
        ({"input": "hi", "tools": [{"type": "mcp", "server_label": "x"}]}, "tools[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": "hi", "truncation": "auto"}, "truncation"),
        (
            {"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
        ),
        (
            {
                "input": "hi",
                "text": {"format": {"type": "json_schema", "name": "x", "schema": {"not": {}}}},
            },
            "text.format.schema",
        ),
        ({"input": "hi", "tools": [{**WEATHER_TOOL, "name": "bad name"}]}, "tools[0].name"),
        ({"input": "hi " * 10000}, "input"),
    ],
)
def test_what_cannot_be_served_is_a_400_naming_it(
    server: RunningServer, body: dict[str, Any], param: str
) -> None:
    reply = httpx.post(server.api + "/responses", json=body, timeout=60)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_a_deadline_fails_the_response_in_its_own_shape(server: RunningServer) -> None:
    body = {"input": QUESTION, "ignore_eos": True, "max_output_tokens": 4000, "timeout": 0.5}
    whole = httpx.post(server.api + "/responses", json=body, timeout=120)
    assert whole.status_code == 504
    assert whole.json()["error"]["code"] == "deadline_exceeded"
    with httpx.stream(
        "POST", server.api + "/responses", json={**body, "stream": True}, timeout=120
    ) as reply:
        text = reply.read().decode()
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "deadline_exceeded"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    server.wait_idle()


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[RunningServer]:
    with running_server(
        api_keys="key-a,key-b", responses_store_size=2, max_body_size=64 * 1024
    ) as running:
        yield running


def test_the_store_keeps_the_most_recent_per_its_count(keyed_server: RunningServer) -> None:
    sdk = client(keyed_server, "key-a")
    ids = [
        sdk.responses.create(model="m", input=f"Say {n}", max_output_tokens=2).id for n in range(3)
    ]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(ids[0])
    assert [sdk.responses.retrieve(i).id for i in ids[1:]] == ids[1:]


def test_the_routes_share_the_servers_limits(keyed_server: RunningServer) -> None:
    url = keyed_server.api + "/responses"
    key = {"authorization": "Bearer key-a"}
    assert httpx.post(url, json={"input": "hi"}).status_code == 401
    assert httpx.delete(url + "/resp_x").status_code == 401
    large = httpx.post(url, json={"input": "x" * 70_000}, headers=key)
    assert large.status_code == 413
    assert large.json()["error"]["code"] == "request_too_large"
    wrong = httpx.put(url + "/resp_x", headers=key)
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "DELETE"}


def test_a_stored_response_is_visible_only_to_its_key(keyed_server: RunningServer) -> None:
    mine = client(keyed_server, "key-a").responses.create(
        model="m", input="Hi", max_output_tokens=2
    )
    other = client(keyed_server, "key-b")
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError):
        other.responses.create(
            model="m", input="Hi", previous_response_id=mine.id, max_output_tokens=2
        )
    assert httpx.get(f"{keyed_server.api}/responses/{mine.id}").status_code == 401
    assert client(keyed_server, "key-a").responses.retrieve(mine.id).id == mine.id


def test_an_agent_runs_its_function_tool(server: RunningServer) -> None:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    ran: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"Sunny in {city}"

    sdk = openai.AsyncOpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=120)
    # The small model calls no tool unprompted: force one call (with parallel calls allowed it
    # goes on calling until the output limit).
    forced = ModelSettings(
        tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=400
    )
    agent = Agent(
        name="forecaster",
        instructions="Use the tool to answer.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model="local", openai_client=sdk),
        model_settings=forced,
        tool_use_behavior="stop_on_first_tool",
    )
    # The whole loop: call, result back as a function_call_output item, then an answer
    # (the forced choice is reset after the call, as the Agents SDK does by default).
    looping = agent.clone(tool_use_behavior="run_llm_again")

    async def run() -> tuple[Any, list[str], Any]:
        try:
            streamed = Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=2)
            kinds: list[str] = [event.type async for event in streamed.stream_events()]
            answered = await Runner.run(looping, "What is the weather in Paris?", max_turns=3)
            return streamed.final_output, kinds, answered
        finally:
            await sdk.close()

    first, kinds, answered = asyncio.run(run())
    assert "raw_response_event" in kinds
    assert len(ran) == 2
    assert first == f"Sunny in {ran[0]}"
    assert isinstance(answered.final_output, str)
    assert answered.final_output.strip()
    assert [type(item).__name__ for item in answered.new_items] == [
        "ToolCallItem",
        "ToolCallOutputItem",
        "MessageOutputItem",
    ]
