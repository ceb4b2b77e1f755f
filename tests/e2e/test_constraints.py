"""Constraints that aborted or froze the whole server (issue 8), over real HTTP: each is now a
clear 400 naming the parameter while a stream started before it carries on intact, and the
process lives on. (The server runs inside this test process: an abort would end the run.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .server import RunningServer
from .sse_client import content_of, frames

CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "Describe a cat."}]
_FORMAT = "response_format.json_schema.schema"


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def _pattern(pattern: str) -> dict[str, Any]:
    return _schema(
        {
            "type": "object",
            "properties": {"c": {"type": "string", "pattern": pattern}},
            "required": ["c"],
        }
    )


def _tool(parameters: dict[str, Any]) -> dict[str, Any]:
    function = {"name": "f", "parameters": parameters}
    return {"tools": [{"type": "function", "function": function}], "tool_choice": "required"}


_NEVER = {"type": "object", "properties": {"c": {"type": "string", "pattern": "^[z-a]$"}}}

#: (request fields, the param the 400 names, words its message must hold)
_REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    # Aborted the process: "Unexpected empty grammar stack after accepting piece".
    "pattern that never matches": (
        {"response_format": _pattern("^[z-a]$")},
        _FORMAT,
        "#/properties/c/pattern",
    ),
    "the same pattern in a forced tool call": (
        _tool({**_NEVER, "required": ["c"]}),
        "tools[0].function.parameters",
        "#/properties/c/pattern",
    ),
    # Aborted the process: -inf times 0 is NaN, and a token the grammar rejects won.
    "repeat_penalty 0 with json_object": (
        {"repeat_penalty": 0, "response_format": {"type": "json_object"}},
        "repeat_penalty",
        "repeat_penalty",
    ),
    "repeat_penalty 0 with a json_schema": (
        {"repeat_penalty": 0, "response_format": _schema({"type": "object"})},
        "repeat_penalty",
        "repeat_penalty",
    ),
    "repeat_penalty 0 with a forced tool call": (
        {"repeat_penalty": 0, **_tool({"type": "object"})},
        "repeat_penalty",
        "repeat_penalty",
    ),
    "repeat_penalty 0 without a grammar": ({"repeat_penalty": 0}, "repeat_penalty", "0.01"),
    # Accepted and silently enforced as some other pattern.
    "unclosed group": ({"response_format": _pattern("^(ab$")}, _FORMAT, "missing ')'"),
    "unclosed group with a class": ({"response_format": _pattern("^([a-z]$")}, _FORMAT, "')'"),
    "unclosed alternation": ({"response_format": _pattern("^ab(c|d$")}, _FORMAT, "')'"),
    "count maximum below minimum": ({"response_format": _pattern("^a{3,1}$")}, _FORMAT, "below"),
    # Froze the engine for everyone (the grammar sampler never returned).
    "nested bounded repetition": (
        {"response_format": _schema({"type": "string", "pattern": "^([a-z]{0,50}){0,50}$"})},
        _FORMAT,
        "too complex",
    ),
    "nested thousandfold repetition": (
        {"response_format": _schema({"type": "string", "pattern": "^(a{0,1000}){0,1000}$"})},
        _FORMAT,
        "too large",
    ),
    # Made every step about 3 s for every stream.
    "anyOf of 3000 objects": (
        {
            "response_format": _schema(
                {
                    "anyOf": [
                        {"type": "object", "properties": {f"k{i}": {"type": "integer"}}}
                        for i in range(3000)
                    ]
                }
            )
        },
        _FORMAT,
        "alternatives open at once",
    ),
}


@pytest.fixture(scope="module")
def reference(server: RunningServer) -> str:
    """The greedy answer the concurrent stream must still give."""
    body = {"messages": ASK, "max_tokens": 12, "temperature": 0, "ignore_eos": True}
    reply = httpx.post(server.url + CHAT, json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["message"]["content"])


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.mark.parametrize(("fields", "param", "words"), _REFUSED.values(), ids=_REFUSED.keys())
def test_a_hostile_constraint_is_refused_while_a_stream_carries_on(
    server: RunningServer,
    http: httpx.Client,
    reference: str,
    fields: dict[str, Any],
    param: str,
    words: str,
) -> None:
    body = {"messages": ASK, "max_tokens": 12, "temperature": 0, "ignore_eos": True, "stream": True}
    text = ""
    with (
        httpx.Client(base_url=server.url, timeout=120) as streaming,
        streaming.stream("POST", CHAT, json=body) as stream,
    ):
        received = frames(stream)
        first = next(received)  # the stream is under way before the hostile request
        text += content_of(first.json())
        bad = {"messages": ASK, "max_tokens": 16, "timeout": 10, **fields}
        reply = http.post(CHAT, json=bad)
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["param"] == param
        assert error["type"] == "invalid_request_error"
        assert words in error["message"]
        for frame in received:
            if frame.kind == "data" and frame.text != "[DONE]":
                text += content_of(frame.json())
    assert text == reference
    assert http.get("/health").status_code == 200


def test_nested_optional_repetition_is_enforced_without_freezing(http: httpx.Client) -> None:
    # Written as nested GBNF this froze the engine; as an automaton it is [a-z]{0,50}.
    pattern = "^([a-z]?){0,50}$"
    reply = http.post(
        CHAT,
        json={
            "messages": [{"role": "user", "content": "Say a word."}],
            "max_tokens": 60,
            "timeout": 60,
            "response_format": _schema({"type": "string", "pattern": pattern}),
        },
    )
    assert reply.status_code == 200, reply.text
    content = reply.json()["choices"][0]["message"]["content"]
    value = json.loads(content)
    assert re.fullmatch(r"[a-z]{0,50}", value), value
