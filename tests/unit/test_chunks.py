"""Unit tests for the chat and completion encoders: OpenAI chunk and response shapes, parsed
back from the wire (each document framed as the SSE transport frames it).

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

from model.events import Delta, Event, Finished, FinishReason, ToolCallDelta, Usage
from stream.adapters.chat import ChatEncoder
from stream.adapters.choices import ChoicesEncoder, usage_object
from stream.adapters.completions import CompletionEncoder
from stream.documents import json_document
from stream.errors import APIError
from stream.transports.sse import frame

Kind = Literal["chat", "completion"]

MODEL = "smollm2-135m-instruct"
USAGE = Usage(prompt_tokens=7, completion_tokens=3, cached_tokens=5)
KINDS: list[Kind] = ["chat", "completion"]
DONE = b"data: [DONE]\n\n"


def encoder_for(kind: Kind, model: str, **options: Any) -> ChoicesEncoder:
    """The encoder of one response of ``kind``."""
    cls = ChatEncoder if kind == "chat" else CompletionEncoder
    return cls(model, **options)


def opening(encoder: ChoicesEncoder) -> bytes:
    return b"".join(frame(document) for document in encoder.opening())


def wire(encoder: ChoicesEncoder, event: Event) -> tuple[bytes, bool]:
    """The SSE bytes of one event, and whether they end the stream."""
    documents = encoder.encode(event)
    done = any(document.kind != "event" for document in documents)
    return b"".join(frame(document) for document in documents), done


def whole(encoder: ChoicesEncoder, events: list[Event]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encoder.whole(events).data)
    return body


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


def check_chunk(chunk: dict[str, Any], encoder: ChoicesEncoder) -> None:
    object_name = "chat.completion.chunk" if isinstance(encoder, ChatEncoder) else "text_completion"
    assert chunk["id"] == encoder.id
    assert chunk["object"] == object_name
    assert isinstance(chunk["created"], int)
    assert not isinstance(chunk["created"], bool)
    assert chunk["model"] == MODEL
    assert isinstance(chunk["choices"], list)


# --- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "prefix"), [("chat", "chatcmpl-"), ("completion", "cmpl-")])
def test_ids_are_prefixed_stable_and_unique(kind: Kind, prefix: str) -> None:
    encoder = encoder_for(kind, MODEL)
    assert re.fullmatch(re.escape(prefix) + r"[0-9a-f]{8,}", encoder.id)

    raws = [
        opening(encoder),
        wire(encoder, Delta("a", 1))[0],
        wire(encoder, Finished("stop", USAGE))[0],
    ]
    ids = {c["id"] for raw in raws for c in frames(raw) if isinstance(c, dict)}
    assert ids == {encoder.id}
    assert whole(encoder, [Finished("stop", USAGE)])["id"] == encoder.id
    createds = {c["created"] for raw in raws for c in frames(raw) if isinstance(c, dict)}
    assert createds == {encoder.created}

    assert len({encoder_for(kind, MODEL).id for _ in range(20)}) == 20


# --- opening --------------------------------------------------------------------------------------


def test_chat_opening_announces_the_assistant_role() -> None:
    encoder = encoder_for("chat", MODEL)
    chunk = one(opening(encoder))
    check_chunk(chunk, encoder)
    assert chunk["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]


def test_completion_opening_is_empty() -> None:
    assert opening(encoder_for("completion", MODEL)) == b""


# --- deltas -------------------------------------------------------------------------------------


def test_chat_delta_chunk() -> None:
    encoder = encoder_for("chat", MODEL)
    raw, done = wire(encoder, Delta("Hello", 1))
    assert not done
    chunk = one(raw)
    check_chunk(chunk, encoder)
    assert chunk["choices"] == [
        {"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}
    ]
    assert DONE not in raw


def test_completion_delta_chunk() -> None:
    encoder = encoder_for("completion", MODEL)
    raw, done = wire(encoder, Delta(" world", 2))
    assert not done
    chunk = one(raw)
    check_chunk(chunk, encoder)
    assert chunk["choices"] == [
        {"index": 0, "text": " world", "logprobs": None, "finish_reason": None}
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_delta_sends_nothing(kind: Kind) -> None:
    assert wire(encoder_for(kind, MODEL), Delta("", 1)) == (b"", False)


@given(text=st.text(min_size=1))
def test_any_delta_text_round_trips(text: str) -> None:
    chat = one(wire(encoder_for("chat", MODEL), Delta(text, 1))[0])
    assert chat["choices"][0]["delta"]["content"] == text
    completion = one(wire(encoder_for("completion", MODEL), Delta(text, 1))[0])
    assert completion["choices"][0]["text"] == text


# --- the end of a stream ------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_chat_finish_then_done(reason: FinishReason) -> None:
    encoder = encoder_for("chat", MODEL)
    raw, done = wire(encoder, Finished(reason, USAGE))
    assert done
    assert raw.endswith(DONE)
    final, marker = frames(raw)
    check_chunk(final, encoder)
    assert final["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
    ]
    assert marker == "[DONE]"
    assert "usage" not in final or final["usage"] is None


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_completion_finish_then_done(reason: FinishReason) -> None:
    encoder = encoder_for("completion", MODEL)
    raw, done = wire(encoder, Finished(reason, USAGE))
    assert done
    final, marker = frames(raw)
    check_chunk(final, encoder)
    assert final["choices"] == [{"index": 0, "text": "", "logprobs": None, "finish_reason": reason}]
    assert marker == "[DONE]"


@pytest.mark.parametrize("kind", KINDS)
def test_include_usage_adds_a_usage_chunk_before_done(kind: Kind) -> None:
    encoder = encoder_for(kind, MODEL, include_usage=True)
    raw, done = wire(encoder, Finished("stop", USAGE))
    assert done
    final, usage, marker = frames(raw)
    check_chunk(final, encoder)
    assert final["choices"][0]["finish_reason"] == "stop"
    check_chunk(usage, encoder)
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
    encoder = encoder_for(kind, MODEL, include_usage=True)
    raws = [wire(encoder, Delta("hi", 1))[0], wire(encoder, Finished("stop", USAGE))[0]]
    if kind == "chat":
        raws.insert(0, opening(encoder))
    chunks = [c for raw in raws for c in frames(raw) if isinstance(c, dict) and c["choices"]]
    assert len(chunks) == (3 if kind == "chat" else 2)
    for chunk in chunks:
        assert "usage" in chunk
        assert chunk["usage"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_without_include_usage_there_is_no_usage_chunk(kind: Kind) -> None:
    raw, _ = wire(encoder_for(kind, MODEL), Finished("stop", USAGE))
    parsed = frames(raw)
    assert len(parsed) == 2
    assert all(c == "[DONE]" or c["choices"] for c in parsed)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("include_usage", [False, True])
def test_a_server_error_ends_with_an_error_frame_and_no_done(
    kind: Kind, include_usage: bool
) -> None:
    encoder = encoder_for(kind, MODEL, include_usage=include_usage)
    raw, done = wire(encoder, Finished("error", USAGE, message="decode failed: out of memory"))
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
    raw, done = wire(encoder_for(kind, MODEL), Finished("cancelled", USAGE))
    assert done
    assert DONE not in raw
    error = one(raw)["error"]
    assert error["type"] == "server_error"
    assert "cancel" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_passed_deadline_ends_with_a_timeout_error_and_no_done(kind: Kind) -> None:
    raw, done = wire(encoder_for(kind, MODEL, include_usage=True), Finished("deadline", USAGE))
    assert done
    assert DONE not in raw
    error = one(raw)["error"]
    assert error["type"] == "timeout"
    assert error["code"] == "deadline_exceeded"
    assert error["param"] is None
    assert error["message"]


@pytest.mark.parametrize("reason", ["cancelled", "deadline", "error"])
def test_server_ends_without_a_message_still_explain_themselves(reason: FinishReason) -> None:
    raw, done = wire(encoder_for("chat", MODEL), Finished(reason, USAGE))
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
    encoder = encoder_for("chat", MODEL)
    body = whole(encoder, events("Hel", "", "lo ✓", reason=reason))
    assert body == {
        "id": encoder.id,
        "object": "chat.completion",
        "created": encoder.created,
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
    encoder = encoder_for("completion", MODEL)
    body = whole(encoder, events("one", " two", reason="length"))
    assert body == {
        "id": encoder.id,
        "object": "text_completion",
        "created": encoder.created,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [{"index": 0, "text": "one two", "logprobs": None, "finish_reason": "length"}],
        "usage": EXPECTED_USAGE,
    }
    assert body["id"].startswith("cmpl-")


@pytest.mark.parametrize("kind", KINDS)
def test_a_response_with_no_text_is_empty_not_missing(kind: Kind) -> None:
    body = whole(encoder_for(kind, MODEL), [Finished("length", Usage(4, 0))])
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


# --- tool calls -----------------------------------------------------------------------------------


def test_tool_call_deltas_stream_as_openai_tool_call_chunks() -> None:
    encoder = encoder_for("chat", MODEL)
    start = one(wire(encoder, ToolCallDelta(0, 0, "call_1", "get_weather", ""))[0])
    part = one(wire(encoder, ToolCallDelta(0, 0, None, None, '{"city": "Oslo"}'))[0])
    check_chunk(start, encoder)
    assert start["choices"] == [
        {
            "index": 0,
            "delta": {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"arguments": "", "name": "get_weather"},
                    }
                ]
            },
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert part["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Oslo"}'}}]
    }
    final, marker = frames(wire(encoder, Finished("tool_calls", USAGE))[0])
    assert final["choices"][0]["finish_reason"] == "tool_calls"
    assert marker == "[DONE]"


def test_a_whole_answer_joins_each_choices_tool_calls() -> None:
    encoder = encoder_for("chat", MODEL, n=2)
    body = whole(
        encoder,
        [
            ToolCallDelta(0, 0, "call_a", "f", ""),
            ToolCallDelta(1, 0, "call_b", "g", ""),
            ToolCallDelta(0, 0, None, None, '{"x": '),
            ToolCallDelta(0, 0, None, None, "1}"),
            ToolCallDelta(0, 1, "call_c", "f", ""),
            ToolCallDelta(0, 1, None, None, "{}"),
            Delta("plain", 1, index=1),
            Finished("tool_calls", USAGE, index=0),
            Finished("stop", USAGE, index=1),
        ],
    )
    first, second = body["choices"]
    assert first["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "f", "arguments": '{"x": 1}'},
            },
            {"id": "call_c", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        ],
    }
    assert first["finish_reason"] == "tool_calls"
    assert second["message"]["tool_calls"] == [
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}
    ]
    assert second["message"]["content"] == "plain"
    assert body["usage"]["completion_tokens"] == 6


# --- server ends of whole answers, and documents ----------------------------------------------


@pytest.mark.parametrize(
    ("reason", "status", "kind", "code"),
    [
        ("cancelled", 503, "server_error", None),
        ("deadline", 504, "timeout", "deadline_exceeded"),
        ("error", 500, "server_error", None),
    ],
)
@pytest.mark.parametrize("kind_of", KINDS)
def test_a_server_end_of_a_whole_answer_is_an_error_status(
    kind_of: Kind, reason: FinishReason, status: int, kind: str, code: str | None
) -> None:
    with pytest.raises(APIError) as caught:
        encoder_for(kind_of, MODEL).whole([Delta("partial", 1), Finished(reason, USAGE)])
    assert caught.value.status == status
    body = caught.value.body()["error"]
    assert (body["type"], body["code"]) == (kind, code)
    assert body["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_documents_say_which_one_ends_the_stream(kind: Kind) -> None:
    encoder = encoder_for(kind, MODEL, include_usage=True)
    assert [d.kind for d in encoder.encode(Delta("a", 1))] == ["event"]
    assert [d.kind for d in encoder.encode(Finished("stop", USAGE))] == ["event", "event", "end"]
    assert [d.kind for d in encoder.encode(Finished("error", USAGE))] == ["error"]
    failure = encoder.error("internal error while streaming")
    assert failure.kind == "error"
    assert json.loads(failure.data)["error"]["type"] == "server_error"
    assert all(d.event is None and d.id is None for d in encoder.opening())


@given(text=st.text(min_size=1), kind=st.sampled_from(KINDS))
def test_the_token_fast_path_is_the_general_serialization(text: str, kind: Kind) -> None:
    # Plain text takes a precomputed head and tail around one JSON string; it must be byte
    # for byte what serializing the whole chunk gives.
    encoder = encoder_for(kind, MODEL)
    [fast] = encoder.encode(Delta(text, 1))
    expected = json_document(encoder._chunk(encoder._choice(0, text, None)))
    assert fast.data == expected.data
