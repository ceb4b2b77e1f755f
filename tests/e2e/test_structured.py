"""Structured output and tools through the openai SDK: grammars hold the model to them."""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel

from .server import RunningServer

# Bounded strings: the grammar then guarantees the object closes within max_tokens.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
    "additionalProperties": False,
}
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in Paris, in celsius?"}
]


@pytest.fixture
def sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=120)


def test_json_object_is_always_an_object(sdk: openai.OpenAI) -> None:
    # json_object bounds nothing, so a small model may nest until max_tokens; what the
    # grammar guarantees is an object from the first character, complete whenever it stops.
    finished = 0
    for prompt in ("Give a JSON object with a name and an age.", "Describe a cat in JSON."):
        for seed in (1, 2):
            reply = sdk.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": prompt}],
                response_format={"type": "json_object"},
                seed=seed,
                temperature=0.7,
                max_tokens=300,
            )
            text = reply.choices[0].message.content or ""
            assert text.lstrip().startswith("{")
            if reply.choices[0].finish_reason == "stop":
                assert isinstance(json.loads(text), dict)
                finished += 1
    assert finished >= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_strict_json_schema_always_validates(sdk: openai.OpenAI, seed: int) -> None:
    reply = sdk.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
        seed=seed,
        temperature=1.0,
        max_tokens=300,
    )
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), PERSON)


def test_structured_output_streams_too(sdk: openai.OpenAI) -> None:
    text = ""
    for chunk in sdk.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "p", "schema": PERSON, "strict": True},
        },
        temperature=0,
        max_tokens=300,
        stream=True,
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    jsonschema.validate(json.loads(text), PERSON)


class Pet(BaseModel):
    name: str
    species: str
    legs: int


def test_sdk_parse_with_a_pydantic_model(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "Describe a pet."}],
        response_format=Pet,
        temperature=0,
        max_tokens=200,
    )
    pet = reply.choices[0].message.parsed
    assert isinstance(pet, Pet)
    assert pet.name


@pytest.mark.parametrize(
    ("schema", "strict", "word"),
    [
        ({"type": "object", "not": {"required": ["a"]}}, False, "not"),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, True, "additionalProperties"),
        ([1, 2], False, "schema"),
    ],
)
def test_bad_schemas_are_a_clear_400(
    sdk: openai.OpenAI, schema: Any, strict: bool, word: str
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(
            model="m",
            messages=ASK,
            max_tokens=4,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema, "strict": strict},
            },
        )
    assert word in error.value.message
    assert (error.value.param or "").startswith("response_format")


def assert_valid_weather_call(call: Any) -> dict[str, Any]:
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments: dict[str, Any] = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    return arguments


@pytest.mark.parametrize("seed", [1, 2])
def test_required_tool_choice_yields_a_valid_call(sdk: openai.OpenAI, seed: int) -> None:
    reply = sdk.chat.completions.create(
        model="m",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        seed=seed,
        temperature=1.0,
        max_tokens=120,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert len(choice.message.tool_calls) == 1
    assert_valid_weather_call(choice.message.tool_calls[0])


def test_named_tool_choice_calls_that_function(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="m",
        messages=ASK,
        tools=[TIME, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=120,
    )
    calls: list[Any] = list(reply.choices[0].message.tool_calls or [])
    assert [c.function.name for c in calls] == ["get_weather"]
    assert_valid_weather_call(calls[0])


def test_streamed_tool_call_deltas_reassemble_into_the_same_call(sdk: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": "m",
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "temperature": 0,
        "max_tokens": 120,
    }
    whole = sdk.chat.completions.create(**kwargs)
    expected = (whole.choices[0].message.tool_calls or [])[0]
    parts: list[Any] = []
    finish = None
    for chunk in sdk.chat.completions.create(**kwargs, stream=True):
        if chunk.choices:
            parts += chunk.choices[0].delta.tool_calls or []
            finish = chunk.choices[0].finish_reason or finish
    first = parts[0]
    # As OpenAI streams them: id, type and name first, then argument fragments.
    assert first.id
    assert first.type == "function"
    assert first.function.name == "get_weather"
    assert all(p.id is None and p.function.name is None for p in parts[1:])
    assert all(p.index == 0 for p in parts)
    arguments = "".join(p.function.arguments or "" for p in parts)
    assert arguments == expected.function.arguments
    assert first.function.name == expected.function.name
    assert finish == "tool_calls"


def test_tool_choice_none_gives_plain_text(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="m",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=30,
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_tool_results_go_back_into_the_conversation(sdk: openai.OpenAI) -> None:
    first = sdk.chat.completions.create(
        model="m",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=120,
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    follow_up: list[ChatCompletionMessageParam] = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    second = sdk.chat.completions.create(
        model="m",
        messages=follow_up,
        tools=[WEATHER],
        max_tokens=40,
        temperature=0,
    )
    assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # Without tools the same history still renders (tool turns in the generic format).
    plain = sdk.chat.completions.create(model="m", messages=follow_up, max_tokens=10)
    assert plain.choices[0].message.content is not None


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}, "ignore_eos": True}, "ignore_eos"),
    ],
)
def test_bad_tool_requests_are_a_clear_400(
    sdk: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(model="m", messages=ASK, max_tokens=4, extra_body=extra)
    assert (error.value.param or "").startswith(param)
