"""The embedded model behind the real chat templates of other model families (llama.cpp's
collection, fetched at test time: see tests/model/families/templates.py), end to end.

The weights are SmolLM2's whatever the template, so only the wire is checked, not the answers'
quality: the family is detected from the template, a forced call comes back parsed (in that
family's syntax, held by its grammar) with nothing in ``content``, a conversation with earlier
calls and results renders through the template, and a template that opens a think block
(Qwen3.5) yields reasoning that a thinking budget closes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.model.families.templates import fetch_chat_templates

from .server import RunningServer, running_server
from .test_families import ASK, TIME, WEATHER

TEMPLATES = {
    "Qwen-Qwen3-0.6B.jinja": "hermes",
    "Qwen3.5-4B.jinja": "qwen3-coder",  # Qwen3.5 writes calls in Qwen3-Coder's XML
    "Qwen3-Coder.jinja": "qwen3-coder",
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral-array",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": "deepseek-r1",
    "openai-gpt-oss-120b.jinja": "harmony",
    "deepseek-ai-DeepSeek-V3.1.jinja": "deepseek-v3.1",
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": "magistral",
    "ibm-granite-granite-3.3-2B-Instruct.jinja": "granite",
    "meetkai-functionary-medium-v3.1.jinja": "functionary-v3.1",
    "meetkai-functionary-medium-v3.2.jinja": "functionary-v3.2",
}
HISTORY: list[ChatCompletionMessageParam] = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
]


@pytest.fixture(scope="module", params=sorted(TEMPLATES))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, RunningServer]]:
    path = fetch_chat_templates().folder / request.param
    with running_server(chat_template=str(path), slots=2, ctx_size=2048) as server:
        yield request.param, server


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=180)


def _stream(server: RunningServer, **kwargs: Any) -> tuple[str, str, list[list[str]], str]:
    stream = _client(server).chat.completions.create(model="m", stream=True, **kwargs)
    reasoning = content = finish = ""
    calls: dict[int, list[str]] = {}
    for chunk in stream:
        for choice in chunk.choices:
            delta = choice.model_dump()["delta"]
            reasoning += delta.get("reasoning_content") or ""
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                if call.get("id"):
                    calls[call["index"]] = [call["function"]["name"], ""]
                calls[call["index"]][1] += call["function"].get("arguments") or ""
            finish = choice.finish_reason or finish
    return reasoning, content, list(calls.values()), finish


def test_the_family_is_detected_from_the_template(served: tuple[str, RunningServer]) -> None:
    name, server = served
    assert httpx.get(server.url + "/ready").json()["family"] == TEMPLATES[name]


def test_a_forced_call_comes_back_parsed(served: tuple[str, RunningServer]) -> None:
    name, server = served
    _, content, calls, finish = _stream(
        server,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=120,
        # A template that opens a think block: close it at once, the call follows.
        extra_body={"thinking_budget": 0},
    )
    assert (content, finish) == ("", "tool_calls"), name
    assert [call[0] for call in calls] == ["get_weather"]
    assert set(json.loads(calls[0][1])) == {"city"}


def test_earlier_calls_and_results_render_through_the_template(
    served: tuple[str, RunningServer],
) -> None:
    _, server = served
    reply = _client(server).chat.completions.create(
        model="m", messages=HISTORY, tools=[WEATHER], temperature=0, max_tokens=8
    )
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 20


def test_a_template_that_opens_the_think_block_gives_reasoning() -> None:
    path = fetch_chat_templates().folder / "Qwen3.5-4B.jinja"
    with running_server(chat_template=str(path), slots=1, ctx_size=2048) as server:
        reasoning, content, _, _ = _stream(
            server, messages=ASK, temperature=0, max_tokens=30, extra_body={"thinking_budget": 5}
        )
        assert reasoning.strip()
        assert "think>" not in reasoning + content
        off = _client(server).chat.completions.create(
            model="m", messages=ASK, temperature=0, max_tokens=8, reasoning_effort="none"
        )
        assert not off.choices[0].message.model_dump().get("reasoning_content")
        assert (off.choices[0].message.content or "").strip()
