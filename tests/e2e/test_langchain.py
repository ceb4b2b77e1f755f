"""LangChain's ChatOpenAI against the real server: whole answers, streams (also resumable
ones, whose `id:` and `retry:` lines it must read past), usage, and a forced tool call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from .server import RunningServer, running_server

QUESTION = "Name three colours."


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # Every stream resumable: event ids, a retry hint, comment heartbeats.
    with running_server(resumable_default=True, heartbeat_interval=0.05) as srv:
        yield srv


def chat(server: RunningServer, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.api,
        api_key="unused",  # type: ignore[arg-type]
        model="sluice",
        temperature=0,
        max_retries=0,
        timeout=120,
        **options,
    )


def test_the_server_streams_resumable_events_to_langchain(server: RunningServer) -> None:
    # What LangChain reads below really carries ids and a retry hint.
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4, "stream": True}
    text = httpx.post(server.api + "/chat/completions", json=body, timeout=120).text
    assert "\nid: " in "\n" + text
    assert "retry: " in text


def test_invoke_and_stream_read_the_whole_answer(server: RunningServer) -> None:
    model = chat(server, max_tokens=12, stream_usage=True, extra_body={"ignore_eos": True})
    whole = model.invoke(QUESTION)
    assert isinstance(whole.content, str)
    assert whole.content
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] == 12

    chunks = list(model.stream(QUESTION))
    joined: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        joined = joined + chunk
    assert isinstance(joined.content, str)
    assert joined.content
    # Every token arrived as its own chunk, and usage came at the end.
    assert sum(1 for c in chunks if c.content) == 12
    assert joined.usage_metadata is not None
    assert joined.usage_metadata["output_tokens"] == 12
    assert joined.response_metadata.get("finish_reason") == "length"


def test_a_forced_tool_call_is_parsed(server: RunningServer) -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    model = chat(server, max_tokens=60).bind_tools([get_weather], tool_choice="get_weather")
    for message in (model.invoke("Weather in Paris?"), _joined(model, "Weather in Paris?")):
        assert [call["name"] for call in message.tool_calls] == ["get_weather"]
        assert isinstance(message.tool_calls[0]["args"].get("city"), str)
        assert message.content == ""


def _joined(model: Any, prompt: str) -> AIMessageChunk:
    chunks = list(model.stream(prompt))
    joined: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        joined = joined + chunk
    return joined
