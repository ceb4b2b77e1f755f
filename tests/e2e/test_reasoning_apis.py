"""Reasoning and model families on the Responses and Messages APIs: the real server, the
embedded SmolLM2 behind a template that opens a think block (as in ``test_families``), a
small server-wide thinking budget that closes it, and ``--tool-format`` forced to llama3
(Responses) or mistral (Messages), so a forced call arrives in that family's syntax and must
come back parsed, after a reasoning item or thinking block, with nothing leaking as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import ThinkingBlock, ToolParam, ToolUseBlock
from openai.types.responses import (
    FunctionToolParam,
    ResponseFunctionToolCall,
    ResponseReasoningItem,
)

from .server import RunningServer, running_server
from .test_families import THINKING_TEMPLATE

QUESTION = "What is the weather in Paris?"
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 16}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": False,
}
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": WEATHER["parameters"] or {},
}
# This SDK's typed signature lacks temperature; the API takes it (0 to 1).
GREEDY = {"temperature": 0}
# Markup of the forced families and of the think block: none of it may reach the client as
# an answer's text.
_MARKUP = ("<think>", "</think>", "<|python_tag|>", "[TOOL_CALLS]", '"parameters"', "get_weather")


@pytest.fixture(scope="module")
def llama3() -> Iterator[RunningServer]:
    with running_server(
        chat_template=THINKING_TEMPLATE, tool_format="llama3", reasoning_budget=6, slots=1
    ) as server:
        yield server


@pytest.fixture(scope="module")
def mistral() -> Iterator[RunningServer]:
    with running_server(chat_template=THINKING_TEMPLATE, tool_format="mistral", slots=1) as server:
        yield server


def _sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_responses_stream_a_reasoning_item_then_a_parsed_llama3_call(
    llama3: RunningServer,
) -> None:
    body = {
        "input": QUESTION,
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "temperature": 0,
        "max_output_tokens": 80,
        "stream": True,
    }
    with httpx.stream("POST", llama3.api + "/responses", json=body, timeout=180) as response:
        assert response.status_code == 200
        events = _sse(response)
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert names[-1] == "response.completed"
    added = [data["item"] for name, data in events if name == "response.output_item.added"]
    assert [item["type"] for item in added] == ["reasoning", "function_call"]
    reasoning = added[0]
    assert reasoning["id"].startswith("rs_")
    deltas = [
        data for name, data in events if name == "response.reasoning_text.delta"
    ]  # streamed as it arrives, before the call
    assert deltas
    assert names.index("response.reasoning_text.delta") < names.index(
        "response.function_call_arguments.delta"
    )
    assert all((d["item_id"], d["output_index"]) == (reasoning["id"], 0) for d in deltas)
    thought = "".join(d["delta"] for d in deltas)
    assert thought.strip()
    assert "<think>" not in thought
    assert "</think>" not in thought
    [done] = [data for name, data in events if name == "response.reasoning_text.done"]
    assert done["text"] == thought
    final = events[-1][1]["response"]
    assert final["output"][0] == {
        "id": reasoning["id"],
        "type": "reasoning",
        "status": "completed",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": thought}],
    }
    call = final["output"][1]
    assert call["name"] == "get_weather"
    assert set(json.loads(call["arguments"])) == {"city"}
    assert "response.output_text.delta" not in names  # the call never leaks as text
    details = final["usage"]["output_tokens_details"]
    # Six sampled, then the forced end of the think block (a few plain-text tokens here).
    assert 6 <= details["reasoning_tokens"] < final["usage"]["output_tokens"]


def test_the_openai_sdk_reads_reasoning_items_and_takes_them_back(llama3: RunningServer) -> None:
    with openai.OpenAI(base_url=llama3.api, api_key="unused", max_retries=0, timeout=180) as sdk:
        request: dict[str, Any] = {
            "model": "m",
            "input": QUESTION,
            "tools": [WEATHER],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "temperature": 0,
            "max_output_tokens": 80,
        }
        with sdk.responses.stream(**request) as stream:
            streamed = stream.get_final_response()
        whole = sdk.responses.create(**request)
        for response in (streamed, whole):
            assert [item.type for item in response.output] == ["reasoning", "function_call"]
            item, call = response.output
            assert isinstance(item, ResponseReasoningItem)
            assert item.content is not None
            assert item.content[0].type == "reasoning_text"
            assert item.content[0].text.strip()
            assert item.summary == []
            assert isinstance(call, ResponseFunctionToolCall)
            assert call.name == "get_weather"
            assert set(json.loads(call.arguments)) == {"city"}
            assert response.output_text == ""
            assert response.usage is not None
            assert response.usage.output_tokens_details.reasoning_tokens >= 6
        assert whole.output[0] != streamed.output[0]  # fresh ids
        assert whole.output[0].model_dump()["content"] == streamed.output[0].model_dump()["content"]
        # The reasoning item goes back in input, as OpenAI asks; the template drops it.
        call = whole.output[1]
        assert isinstance(call, ResponseFunctionToolCall)
        result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}
        back = [item.model_dump(exclude_none=True) for item in whole.output]
        after = sdk.responses.create(
            model="m",
            input=[{"role": "user", "content": QUESTION}, *back, result],
            tools=[WEATHER],
            tool_choice="none",
            temperature=0,
            max_output_tokens=12,
            reasoning={"effort": "none"},  # thinking off: the answer starts at once
        )
        assert [item.type for item in after.output] == ["message"]
        assert after.output_text.strip()
        assert not any(markup in after.output_text for markup in _MARKUP[:2])
        # A continuation renders the stored reasoning item's turn as chat does: dropped.
        chained = sdk.responses.create(
            model="m",
            previous_response_id=whole.id,
            input=[result],
            tool_choice="none",
            tools=[WEATHER],
            temperature=0,
            max_output_tokens=8,
            reasoning={"effort": "none"},
        )
        assert chained.status in ("completed", "incomplete")
        assert [item.type for item in chained.output] == ["message"]


def test_messages_thinking_is_a_thinking_block_then_a_parsed_mistral_tool_use(
    mistral: RunningServer,
) -> None:
    client = anthropic.Anthropic(base_url=mistral.url, api_key="unused", max_retries=0, timeout=180)
    request: dict[str, Any] = {
        "model": "m",
        "max_tokens": 80,
        "extra_body": GREEDY,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "thinking": {"type": "enabled", "budget_tokens": 6},
    }
    with client:
        deltas: list[str] = []
        with client.messages.stream(**request) as stream:
            for event in stream:
                if event.type == "content_block_delta":
                    deltas.append(event.delta.type)
            streamed = stream.get_final_message()
        whole = client.messages.create(**request)
        for message in (streamed, whole):
            assert message.stop_reason == "tool_use"
            assert [block.type for block in message.content] == ["thinking", "tool_use"]
            thinking, tool_use = message.content
            assert isinstance(thinking, ThinkingBlock)
            assert thinking.thinking.strip()
            assert "</think>" not in thinking.thinking
            assert thinking.signature == ""
            assert isinstance(tool_use, ToolUseBlock)
            assert tool_use.name == "get_weather"
            assert isinstance(tool_use.input, dict)
            assert set(tool_use.input) == {"city"}
        assert deltas[0] == "thinking_delta"
        assert deltas.index("signature_delta") == deltas.count("thinking_delta")
        assert deltas[-1] == "input_json_delta"
        assert whole.content[0] == streamed.content[0]  # temperature 0
        # The thinking block goes back with the tool_use, as Anthropic asks; it is dropped,
        # and with no 'thinking' in the request the answer has no thinking block.
        tool_use = streamed.content[1]
        assert isinstance(tool_use, ToolUseBlock)
        history: Any = [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": [b.model_dump() for b in streamed.content]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": tool_use.id,
                        "content": "Sunny",
                    }
                ],
            },
        ]
        answer = client.messages.create(
            model="m", max_tokens=10, extra_body=GREEDY, messages=history, tools=[WEATHER_TOOL]
        )
    assert [block.type for block in answer.content] == ["text"]
    text = answer.content[0]
    assert text.type == "text"
    assert text.text.strip()
    assert not any(markup in text.text for markup in _MARKUP[:2])


def test_a_budget_not_below_max_tokens_is_refused_in_anthropics_shape(
    mistral: RunningServer,
) -> None:
    response = httpx.post(
        mistral.url + "/v1/messages",
        json={
            "max_tokens": 16,
            "messages": [{"role": "user", "content": QUESTION}],
            "thinking": {"type": "enabled", "budget_tokens": 16},
        },
        timeout=60,
    )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "thinking.budget_tokens" in error["error"]["message"]


def test_a_forced_call_cut_off_leaks_nothing_on_either_api(
    llama3: RunningServer, mistral: RunningServer
) -> None:
    # Thinking off, so the few tokens allowed go to the call's head, which must be dropped.
    with openai.OpenAI(base_url=llama3.api, api_key="unused", max_retries=0, timeout=180) as sdk:
        response = sdk.responses.create(
            model="m",
            input=QUESTION,
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
            reasoning={"effort": "none"},
            temperature=0,
            max_output_tokens=6,
        )
    assert response.status == "incomplete"
    assert response.output_text == ""
    assert all(item.type != "message" for item in response.output)
    with anthropic.Anthropic(
        base_url=mistral.url, api_key="unused", max_retries=0, timeout=180
    ) as client:
        message = client.messages.create(
            model="m",
            max_tokens=4,
            extra_body=GREEDY,
            messages=[{"role": "user", "content": QUESTION}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "tool", "name": "get_weather"},
        )
    assert message.stop_reason == "max_tokens"
    assert all(block.type not in ("text", "thinking") for block in message.content)
