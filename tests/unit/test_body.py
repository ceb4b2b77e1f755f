"""stream.body and the JSON rules of stream.pipeline.parse_json: what a body may not hold."""

from __future__ import annotations

import json

import anyio
import pytest
from starlette.types import Message

from stream.body import BodyReceive, lone_surrogate
from stream.errors import InvalidRequest
from stream.pipeline import parse_json

USER = [{"role": "user", "content": "Hi"}]


def refused_json(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_json(raw)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_parse_json_utf16_and_utf32_bodies_are_refused_as_not_utf8(codec: str) -> None:
    # json.loads on bytes would guess these encodings; RFC 8259 allows UTF-8 only.
    raw = json.dumps({"messages": USER}).encode(codec)
    assert "UTF-8" in refused_json(raw).message


@pytest.mark.parametrize("where", ["value", "nested", "key"])
def test_parse_json_an_integer_past_4300_digits_is_a_400(where: str) -> None:
    huge = "7" * 5000
    raw = {
        "value": f'{{"max_tokens": {huge}}}',
        "nested": f'{{"logit_bias": {{"1": [{{"a": {huge}}}]}}}}',
        "key": f'{{"seed": -{huge}}}',
    }[where]
    assert "4300 digits" in refused_json(raw.encode()).message


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (rb'{"messages": [{"role": "user", "content": "hi \ud83d"}]}', "messages[0].content"),
        (
            rb'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}]}',
            "messages[0].content[0].text",
        ),
        (rb'{"prompt": ["ok", "x\ud800y"]}', "prompt[1]"),
        (rb'{"stop": "\ud83d"}', "stop"),
        (
            rb'{"tools": [{"type": "function", "function": {"description": "\udfff"}}]}',
            "tools[0].function.description",
        ),
        (rb'{"response_format": {"x\ud83dy": 1}}', r"response_format.x\ud83dy"),
        (rb'{"tool_choice": {"\ud8ac": {}}}', r"tool_choice.\ud8ac"),
    ],
)
def test_parse_json_a_lone_surrogate_anywhere_is_a_400_naming_its_path(
    raw: bytes, param: str
) -> None:
    error = refused_json(raw)
    assert error.param == param
    assert "lone UTF-16 surrogate" in error.message


def test_parse_json_a_surrogate_pair_is_text() -> None:
    assert parse_json(rb'{"a": "\ud83d\ude00"}') == {"a": "\U0001f600"}


def test_lone_surrogate_names_the_first_path_or_none() -> None:
    assert lone_surrogate({"a": ["x", {"b": "ok"}], "c": 1}) is None
    assert lone_surrogate({"a": ["x", {"b": "\udfff"}]}) == "a[1].b"


@pytest.mark.anyio
async def test_the_rest_of_a_body_is_read_before_an_early_answer() -> None:
    chunks = [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.request", "body": b"b", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]

    async def receive() -> Message:
        return chunks.pop(0)

    body = BodyReceive(receive)
    await body()
    assert not body.complete
    await body.discard_rest(5)
    assert body.complete
    assert chunks == []


@pytest.mark.anyio
async def test_discarding_a_body_that_never_ends_stops_at_its_bound() -> None:
    async def receive() -> Message:
        await anyio.sleep(0.01)
        return {"type": "http.request", "body": b"x", "more_body": True}

    body = BodyReceive(receive)
    with anyio.fail_after(5):
        await body.discard_rest(0.1)
    assert not body.complete
