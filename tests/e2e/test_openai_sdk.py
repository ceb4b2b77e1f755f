"""The official openai SDK, sync and async, streamed and not, against the real server."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .server import RunningServer

HELLO: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)


def test_models_lists_the_embedded_model(server: RunningServer) -> None:
    models = client(server).models.list()
    ids = [m.id for m in models.data]
    assert ids == ["SmolLM2-135M-Instruct"]
    assert client(server).models.retrieve(ids[0]).id == ids[0]


def test_chat_not_streamed(server: RunningServer) -> None:
    reply = client(server).chat.completions.create(
        model="anything",
        messages=HELLO,
        temperature=0,
        max_tokens=20,
    )
    choice = reply.choices[0]
    assert (choice.message.content or "").strip()
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 20
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.model == "SmolLM2-135M-Instruct"


def test_chat_streamed_matches_not_streamed(server: RunningServer) -> None:
    sdk = client(server)
    whole = sdk.chat.completions.create(
        messages=HELLO,
        temperature=0,
        max_tokens=24,
        model="m",
    )
    stream = sdk.chat.completions.create(
        messages=HELLO,
        temperature=0,
        max_tokens=24,
        model="m",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == [whole.choices[0].finish_reason]
    # include_usage: one extra last chunk with no choices and the usage.
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_completion_streamed_and_not(server: RunningServer) -> None:
    sdk = client(server)
    whole = sdk.completions.create(model="m", prompt="The sky is", max_tokens=12, temperature=0)
    parts = sdk.completions.create(
        model="m", prompt="The sky is", max_tokens=12, temperature=0, stream=True
    )
    streamed = list(parts)
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    assert whole.choices[0].text.strip()
    assert whole.usage is not None
    assert whole.usage.completion_tokens <= 12
    assert streamed[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_completion_default_max_tokens_is_16(server: RunningServer) -> None:
    reply = client(server).completions.create(
        model="m", prompt="Count: 1, 2, 3,", temperature=0, extra_body={"ignore_eos": True}
    )
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 16
    assert reply.choices[0].finish_reason == "length"


@pytest.mark.anyio
async def test_async_client_streams_concurrently(server: RunningServer) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.api, api_key="unused", max_retries=0)
    async with sdk:
        stream = await sdk.chat.completions.create(
            model="m",
            messages=HELLO,
            temperature=0,
            max_tokens=16,
            stream=True,
        )
        text = ""
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
        whole = await sdk.chat.completions.create(
            model="m",
            messages=HELLO,
            temperature=0,
            max_tokens=16,
        )
    assert text == whole.choices[0].message.content
    assert text


def test_sdk_raises_clear_errors(server: RunningServer) -> None:
    sdk = client(server)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="m", messages=[], max_tokens=4)
    assert bad.value.status_code == 400
    assert bad.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as hot:
        sdk.chat.completions.create(model="m", messages=HELLO, temperature=3)
    assert hot.value.param == "temperature"
    assert "temperature" in hot.value.message
