"""The Messages API adapter on its own: bodies to conversations, events to Anthropic events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from model.events import Delta, Event, Finished, ToolCallDelta, Usage
from model.stop import StopMatcher
from stream.adapters.messages import MessagesEncoder, _tools, error_body
from stream.adapters.messages.request import parse
from stream.errors import DeadlineExceeded, InvalidRequest, RateLimited, Unavailable

USAGE = Usage(20, 3, 8)


def body(**fields: Any) -> dict[str, Any]:
    return {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], **fields}


def test_blocks_become_the_chat_conversation() -> None:
    request = parse(
        body(
            system=[{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "is_error": True,
                            "content": [{"type": "text", "text": "no city"}],
                        },
                        {"type": "text", "text": "Thanks"},
                    ],
                },
            ],
        )
    )
    assert request.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c": "P"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no city"},
        {"role": "user", "content": "Thanks"},
    )
    assert request.count == 3


def test_tools_and_choices_map_to_the_chat_api() -> None:
    schema = {"type": "object", "properties": {}}
    request = parse(
        body(
            tools=[{"name": "w", "description": "d", "input_schema": schema}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        )
    )
    assert request.tools == [
        {"type": "function", "function": {"name": "w", "parameters": schema, "description": "d"}}
    ]
    assert (request.tool_choice, request.parallel_tool_calls) == ("required", False)
    named = parse(body(tool_choice={"type": "tool", "name": "w"}))
    assert named.tool_choice == {"type": "function", "function": {"name": "w"}}
    assert parse(body(tool_choice={"type": "none"})).tool_choice == "none"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": "x"}, "stop_sequences"),
        ({"stop_sequences": ["x"] * 17}, "stop_sequences"),
        ({"thinking": {"type": "enabled", "budget_tokens": 8}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": True}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "adaptive", "display": "full"}}, "thinking.display"),
        ({"thinking": {"type": "between_tools"}}, "thinking.type"),
        ({"thinking": "on"}, "thinking.type"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"tools": [{"type": "web_search_20250305", "name": "s"}]}, "tools[0].type"),
        ({"tools": [{"name": "s"}]}, "tools[0].input_schema"),
        ({"tool_choice": {"type": "required"}}, "tool_choice"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "1"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            "messages[1]",
        ),
    ],
)
def test_bad_bodies_name_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse({k: v for k, v in body(**fields).items() if v is not None})
    assert caught.value.param == param


@pytest.mark.parametrize("budget", [0, -5, 2**31, 10**20])
def test_a_budget_out_of_range_names_the_range(budget: int) -> None:
    # 10**20 is positive: the error must not claim otherwise.
    with pytest.raises(InvalidRequest) as caught:
        parse(body(thinking={"type": "enabled", "budget_tokens": budget}))
    assert caught.value.param == "thinking.budget_tokens"
    assert "from 1 to 2147483647" in str(caught.value)


@pytest.mark.parametrize(
    ("thinking", "kwargs", "budget", "shown"),
    [
        (None, {"enable_thinking": False}, 0, "none"),
        ({"type": "disabled"}, {"enable_thinking": False}, 0, "none"),
        ({"type": "enabled", "budget_tokens": 7}, {"enable_thinking": True}, 7, "shown"),
        ({"type": "enabled", "budget_tokens": 1024}, {"enable_thinking": True}, 1024, "shown"),
        ({"type": "adaptive"}, {"enable_thinking": True}, None, "shown"),
        ({"type": "adaptive", "display": "omitted"}, {"enable_thinking": True}, None, "omitted"),
    ],
)
def test_thinking_becomes_the_chat_routes_reasoning_options(
    thinking: Any, kwargs: dict[str, Any], budget: int | None, shown: str
) -> None:
    request = parse(body(max_tokens=2048, thinking=thinking))
    assert request.reasoning.template_kwargs == kwargs
    assert request.reasoning.thinking_budget == budget
    assert request.thinking == shown
    counted = parse({"messages": body()["messages"], "thinking": thinking}, counting=True)
    assert counted.reasoning == request.reasoning  # the same prompt is counted


def test_thinking_blocks_sent_back_are_dropped() -> None:
    request = parse(
        body(
            messages=[
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Paris, so...", "signature": "abc"},
                        {"type": "redacted_thinking", "data": "xyz"},
                        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}},
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
            ]
        )
    )
    assert [m["role"] for m in request.messages] == ["user", "assistant", "tool"]
    assert request.messages[1]["content"] is None
    assert "Paris" not in json.dumps(request.messages)


def test_count_tokens_bodies_need_no_max_tokens() -> None:
    counted = parse({"messages": [{"role": "user", "content": "hi"}]}, counting=True)
    assert counted.messages == ({"role": "user", "content": "hi"},)
    with pytest.raises(InvalidRequest):
        parse(body(), counting=True)  # max_tokens is a generation's field


def frames(encoder: MessagesEncoder, *events: Any) -> list[tuple[str | None, dict[str, Any]]]:
    documents = [*encoder.opening()]
    for event in events:
        documents += encoder.encode(event)
    return [(d.event, json.loads(d.data)) for d in documents]


def test_stream_opens_closes_and_switches_blocks() -> None:
    encoder = MessagesEncoder("m", input_tokens=20, stop_sequences=())
    out = frames(
        encoder,
        Delta("Hi", 1),
        Delta("", 1),
        Delta(" there", 1),
        ToolCallDelta(0, 0, "call_abc", "w", ""),
        ToolCallDelta(0, 0, None, None, '{"c":'),
        ToolCallDelta(0, 0, None, None, '"P"}'),
        Finished("tool_calls", USAGE),
    )
    assert [name for name, _ in out] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in out)
    start = out[0][1]["message"]
    assert start["id"] == encoder.id
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 20
    assert out[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert out[3][1]["delta"] == {"type": "text_delta", "text": " there"}
    assert out[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_abc",
        "name": "w",
        "input": {},
    }
    assert out[6][1] == {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"c":'},
    }
    assert out[9][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 8,
            "output_tokens": 3,
        },
    }
    last = encoder.encode(Finished("stop", USAGE))[-1]
    assert last.kind == "end"


THOUGHT: list[Event] = [
    Delta("", 1, reasoning="Paris"),
    Delta("", 1, reasoning=" is in France."),
    Delta("Sunny", 1, reasoning="."),  # the block closes inside one release
    ToolCallDelta(0, 0, "call_1", "w", ""),
    ToolCallDelta(0, 0, None, None, '{"c": "P"}'),
    Finished("tool_calls", USAGE),
]


def test_reasoning_streams_as_a_thinking_block_signed_empty_before_it_stops() -> None:
    encoder = MessagesEncoder("m", input_tokens=20, stop_sequences=(), thinking="shown")
    out = frames(encoder, *THOUGHT)
    assert [name for name, _ in out] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert [data["delta"] for _, data in out[2:6]] == [
        {"type": "thinking_delta", "thinking": "Paris"},
        {"type": "thinking_delta", "thinking": " is in France."},
        {"type": "thinking_delta", "thinking": "."},
        {"type": "signature_delta", "signature": ""},
    ]
    assert all(data["index"] == 0 for _, data in out[2:7])
    assert out[7][1]["content_block"] == {"type": "text", "text": ""}
    assert (out[8][1]["index"], out[8][1]["delta"]) == (1, {"type": "text_delta", "text": "Sunny"})
    assert out[10][1]["content_block"]["type"] == "tool_use"
    assert out[10][1]["index"] == 2
    whole = json.loads(
        MessagesEncoder("m", input_tokens=20, stop_sequences=(), thinking="shown")
        .whole(THOUGHT)
        .data
    )
    assert whole["content"] == [
        {"type": "thinking", "thinking": "Paris is in France..", "signature": ""},
        {"type": "text", "text": "Sunny"},
        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}},
    ]


def test_omitted_thinking_is_an_empty_block_and_no_thinking_drops_it() -> None:
    omitted = MessagesEncoder("m", input_tokens=20, stop_sequences=(), thinking="omitted")
    out = frames(omitted, *THOUGHT)
    assert out[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert out[2][1]["delta"] == {"type": "signature_delta", "signature": ""}
    assert "France" not in json.dumps(out)
    whole = json.loads(
        MessagesEncoder("m", input_tokens=20, stop_sequences=(), thinking="omitted")
        .whole(THOUGHT)
        .data
    )
    assert whole["content"][0] == {"type": "thinking", "thinking": "", "signature": ""}
    dropped = MessagesEncoder("m", input_tokens=20, stop_sequences=())
    out = frames(dropped, *THOUGHT)
    assert "France" not in json.dumps(out)
    assert [
        data["content_block"]["type"] for name, data in out if name == "content_block_start"
    ] == [
        "text",
        "tool_use",
    ]
    whole = json.loads(MessagesEncoder("m", input_tokens=20, stop_sequences=()).whole(THOUGHT).data)
    assert [block["type"] for block in whole["content"]] == ["text", "tool_use"]


def test_a_server_end_is_an_error_event() -> None:
    encoder = MessagesEncoder("m", input_tokens=5, stop_sequences=())
    [document] = encoder.encode(Finished("deadline", USAGE, "the deadline passed"))
    assert document.kind == "error"
    assert document.event == "error"
    assert json.loads(document.data) == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "the deadline passed"},
    }
    with pytest.raises(DeadlineExceeded):
        encoder.whole([Delta("x", 1), Finished("deadline", USAGE)])
    assert json.loads(encoder.error("boom").data)["error"]["type"] == "api_error"


def test_whole_message_and_stop_reasons() -> None:
    encoder = MessagesEncoder("m", input_tokens=20, stop_sequences=("END",))
    message = json.loads(
        encoder.whole(
            [
                Delta("Sure. ", 2),
                ToolCallDelta(0, 0, "call_1", "w", ""),
                ToolCallDelta(0, 0, None, None, '{"c": "P"}'),
                Finished("tool_calls", USAGE),
            ]
        ).data
    )
    assert message["content"] == [
        {"type": "text", "text": "Sure. "},
        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}},
    ]
    assert (message["stop_reason"], message["stop_sequence"]) == ("tool_use", None)

    def reason(finished: Finished) -> tuple[str, str | None]:
        shaped = json.loads(encoder.whole([finished]).data)
        return shaped["stop_reason"], shaped["stop_sequence"]

    assert reason(Finished("stop", USAGE, stop_sequence="END")) == ("stop_sequence", "END")
    # A template's own stop string ends the turn, as an end-of-generation token does.
    assert reason(Finished("stop", USAGE, stop_sequence="<|im_end|>")) == ("end_turn", None)
    assert reason(Finished("length", USAGE)) == ("max_tokens", None)


def test_stop_matcher_says_which_stop_matched() -> None:
    matcher = StopMatcher(["lo", "hello", "x"])
    assert matcher.push("say hel") == ("say ", False)
    assert matcher.which is None
    assert matcher.push("lo there") == ("", True)
    assert matcher.which == "hello"
    at_end = StopMatcher(["abc"])
    at_end.push("ab")
    assert at_end.flush() == "ab"
    assert at_end.which is None


def test_errors_read_as_anthropics() -> None:
    assert error_body(InvalidRequest("bad", param="x")) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"},
    }
    assert error_body(RateLimited("full"))["error"]["type"] == "rate_limit_error"
    assert error_body(Unavailable("loading"))["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"name": "bad name!", "input_schema": {}}]}, "tools[0].name"),
        ({"tools": [{"name": "w", "input_schema": {}, "description": 3}]}, "tools[0].description"),
        (
            {"tools": [{"name": "w", "input_schema": {}}, {"name": "w", "input_schema": {}}]},
            "tools[1].name",
        ),
        (
            {
                "tools": [{"name": "w", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "v"},
            },
            "tool_choice.name",
        ),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
    ],
)
def test_tool_errors_name_anthropics_fields(fields: dict[str, Any], param: str) -> None:
    request = parse(body(**fields))
    with pytest.raises(InvalidRequest) as caught:
        _tools(request)
    assert caught.value.param == param
    assert param in caught.value.message
    assert "function" not in caught.value.message
    assert "'required'" not in caught.value.message
