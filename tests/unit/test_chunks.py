"""Unit tests for stream.chunks: OpenAI chunk and response shapes, parsed back from the wire.

Field names and values follow the OpenAI API reference for ``chat.completion.chunk``,
``chat.completion`` and the legacy ``text_completion`` objects.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.events import Delta, Event, Finished, FinishReason, Usage
from stream.chunks import Shaper, usage_object
from stream.sse import DONE

Kind = Literal["chat", "completion"]

MODEL = "smollm2-135m-instruct"
USAGE = Usage(prompt_tokens=7, completion_tokens=3, cached_tokens=5)
KINDS: list[Kind] = ["chat", "completion"]


def frames(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body; ``[DONE]`` stays a string."""
    if not raw:
        return []
    assert raw.endswith(b"\n\n")
    parsed: list[Any] = []
    for block in raw.decode().split("\n\n")[:-1]:
        assert block.startswith("data: ")
        assert "\n" not in block
        data = block[len("data: ") :]
        parsed.append(data if data == "[DONE]" else json.loads(data))
    return parsed


def one(raw: bytes) -> dict[str, Any]:
    [chunk] = frames(raw)
    assert isinstance(chunk, dict)
    return chunk


def check_chunk(chunk: dict[str, Any], shaper: Shaper) -> None:
    object_name = "chat.completion.chunk" if shaper.kind == "chat" else "text_completion"
    assert chunk["id"] == shaper.id
    assert chunk["object"] == object_name
    assert isinstance(chunk["created"], int)
    assert not isinstance(chunk["created"], bool)
    assert chunk["model"] == MODEL
    assert isinstance(chunk["choices"], list)


# --- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "prefix"), [("chat", "chatcmpl-"), ("completion", "cmpl-")])
def test_ids_are_prefixed_stable_and_unique(kind: Kind, prefix: str) -> None:
    shaper = Shaper(kind, MODEL)
    assert re.fullmatch(re.escape(prefix) + r"[0-9a-f]{8,}", shaper.id)

    raws = [
        shaper.opening(),
        shaper.frame(Delta("a", 1))[0],
        shaper.frame(Finished("stop", USAGE))[0],
    ]
    ids = {c["id"] for raw in raws for c in frames(raw) if isinstance(c, dict)}
    assert ids == {shaper.id}
    assert shaper.response([Finished("stop", USAGE)])["id"] == shaper.id
    createds = {c["created"] for raw in raws for c in frames(raw) if isinstance(c, dict)}
    assert createds == {shaper.created}

    assert len({Shaper(kind, MODEL).id for _ in range(20)}) == 20


# --- opening --------------------------------------------------------------------------------------


def test_chat_opening_announces_the_assistant_role() -> None:
    shaper = Shaper("chat", MODEL)
    chunk = one(shaper.opening())
    check_chunk(chunk, shaper)
    assert chunk["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]


def test_completion_opening_is_empty() -> None:
    assert Shaper("completion", MODEL).opening() == b""


# --- deltas -------------------------------------------------------------------------------------


def test_chat_delta_chunk() -> None:
    shaper = Shaper("chat", MODEL)
    raw, done = shaper.frame(Delta("Hello", 1))
    assert not done
    chunk = one(raw)
    check_chunk(chunk, shaper)
    assert chunk["choices"] == [
        {"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}
    ]
    assert DONE not in raw


def test_completion_delta_chunk() -> None:
    shaper = Shaper("completion", MODEL)
    raw, done = shaper.frame(Delta(" world", 2))
    assert not done
    chunk = one(raw)
    check_chunk(chunk, shaper)
    assert chunk["choices"] == [
        {"index": 0, "text": " world", "logprobs": None, "finish_reason": None}
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_delta_sends_nothing(kind: Kind) -> None:
    assert Shaper(kind, MODEL).frame(Delta("", 1)) == (b"", False)


@given(text=st.text(min_size=1))
def test_any_delta_text_round_trips(text: str) -> None:
    chat = one(Shaper("chat", MODEL).frame(Delta(text, 1))[0])
    assert chat["choices"][0]["delta"]["content"] == text
    completion = one(Shaper("completion", MODEL).frame(Delta(text, 1))[0])
    assert completion["choices"][0]["text"] == text


# --- the end of a stream ------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_chat_finish_then_done(reason: FinishReason) -> None:
    shaper = Shaper("chat", MODEL)
    raw, done = shaper.frame(Finished(reason, USAGE))
    assert done
    assert raw.endswith(DONE)
    final, marker = frames(raw)
    check_chunk(final, shaper)
    assert final["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
    ]
    assert marker == "[DONE]"
    assert "usage" not in final or final["usage"] is None


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_completion_finish_then_done(reason: FinishReason) -> None:
    shaper = Shaper("completion", MODEL)
    raw, done = shaper.frame(Finished(reason, USAGE))
    assert done
    final, marker = frames(raw)
    check_chunk(final, shaper)
    assert final["choices"] == [{"index": 0, "text": "", "logprobs": None, "finish_reason": reason}]
    assert marker == "[DONE]"


@pytest.mark.parametrize("kind", KINDS)
def test_include_usage_adds_a_usage_chunk_before_done(kind: Kind) -> None:
    shaper = Shaper(kind, MODEL, include_usage=True)
    raw, done = shaper.frame(Finished("stop", USAGE))
    assert done
    final, usage, marker = frames(raw)
    check_chunk(final, shaper)
    assert final["choices"][0]["finish_reason"] == "stop"
    check_chunk(usage, shaper)
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 5},
    }
    assert marker == "[DONE]"


@pytest.mark.parametrize("kind", KINDS)
def test_include_usage_gives_every_other_chunk_a_null_usage(kind: Kind) -> None:
    # OpenAI API reference, stream_options.include_usage: "All other chunks will also
    # include a usage field, but with a null value."
    shaper = Shaper(kind, MODEL, include_usage=True)
    raws = [shaper.frame(Delta("hi", 1))[0], shaper.frame(Finished("stop", USAGE))[0]]
    if kind == "chat":
        raws.insert(0, shaper.opening())
    chunks = [c for raw in raws for c in frames(raw) if isinstance(c, dict) and c["choices"]]
    assert len(chunks) == (3 if kind == "chat" else 2)
    for chunk in chunks:
        assert "usage" in chunk
        assert chunk["usage"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_without_include_usage_there_is_no_usage_chunk(kind: Kind) -> None:
    raw, _ = Shaper(kind, MODEL).frame(Finished("stop", USAGE))
    parsed = frames(raw)
    assert len(parsed) == 2
    assert all(c == "[DONE]" or c["choices"] for c in parsed)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("include_usage", [False, True])
def test_a_server_error_ends_with_an_error_frame_and_no_done(
    kind: Kind, include_usage: bool
) -> None:
    shaper = Shaper(kind, MODEL, include_usage=include_usage)
    raw, done = shaper.frame(Finished("error", USAGE, message="decode failed: out of memory"))
    assert done
    assert DONE not in raw
    assert one(raw) == {
        "error": {
            "message": "decode failed: out of memory",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_cancel_ends_with_an_error_frame_and_no_done(kind: Kind) -> None:
    raw, done = Shaper(kind, MODEL).frame(Finished("cancelled", USAGE))
    assert done
    assert DONE not in raw
    error = one(raw)["error"]
    assert error["type"] == "server_error"
    assert "cancel" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_passed_deadline_ends_with_a_timeout_error_and_no_done(kind: Kind) -> None:
    raw, done = Shaper(kind, MODEL, include_usage=True).frame(Finished("deadline", USAGE))
    assert done
    assert DONE not in raw
    error = one(raw)["error"]
    assert error["type"] == "timeout"
    assert error["code"] == "deadline_exceeded"
    assert error["param"] is None
    assert error["message"]


@pytest.mark.parametrize("reason", ["cancelled", "deadline", "error"])
def test_server_ends_without_a_message_still_explain_themselves(reason: FinishReason) -> None:
    raw, done = Shaper("chat", MODEL).frame(Finished(reason, USAGE))
    assert done
    message = one(raw)["error"]["message"]
    assert isinstance(message, str)
    assert message.strip()


# --- whole responses ------------------------------------------------------------------------------


def events(*texts: str, reason: FinishReason = "stop") -> list[Event]:
    out: list[Event] = [Delta(t, 1) for t in texts]
    out.append(Finished(reason, USAGE))
    return out


EXPECTED_USAGE = {
    "prompt_tokens": 7,
    "completion_tokens": 3,
    "total_tokens": 10,
    "prompt_tokens_details": {"cached_tokens": 5},
}


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_chat_response(reason: FinishReason) -> None:
    shaper = Shaper("chat", MODEL)
    body = json.loads(json.dumps(shaper.response(events("Hel", "", "lo ✓", reason=reason))))
    assert body == {
        "id": shaper.id,
        "object": "chat.completion",
        "created": shaper.created,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello ✓", "refusal": None},
                "logprobs": None,
                "finish_reason": reason,
            }
        ],
        "usage": EXPECTED_USAGE,
    }
    assert body["id"].startswith("chatcmpl-")


def test_completion_response() -> None:
    shaper = Shaper("completion", MODEL)
    body = json.loads(json.dumps(shaper.response(events("one", " two", reason="length"))))
    assert body == {
        "id": shaper.id,
        "object": "text_completion",
        "created": shaper.created,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [{"index": 0, "text": "one two", "logprobs": None, "finish_reason": "length"}],
        "usage": EXPECTED_USAGE,
    }
    assert body["id"].startswith("cmpl-")


@pytest.mark.parametrize("kind", KINDS)
def test_a_response_with_no_text_is_empty_not_missing(kind: Kind) -> None:
    body = Shaper(kind, MODEL).response([Finished("length", Usage(4, 0))])
    choice = body["choices"][0]
    assert (choice["message"]["content"] if kind == "chat" else choice["text"]) == ""
    assert body["usage"]["total_tokens"] == 4
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


@given(prompt=st.integers(0, 10**6), completion=st.integers(0, 10**6), cached=st.integers(0, 10**6))
def test_usage_totals_add_up(prompt: int, completion: int, cached: int) -> None:
    usage = usage_object(Usage(prompt, completion, cached))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt, completion)
    assert usage["prompt_tokens_details"]["cached_tokens"] == cached
