"""Unit tests for the Responses API adapter: the typed event sequence an encoder streams for
scripted engine events (framed as the SSE transport frames them), the whole response, the
request's validation, and the bounded store.

Event and object shapes follow the OpenAI API reference (*Streaming events*, *The response
object*).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import JSONResponse
from starlette.types import Message

from model.events import Delta, Event, Finished, ToolCallDelta, Usage
from stream.adapters.responses import (
    ResponsesEncoder,
    ResponseStore,
    StoredResponse,
    parse,
    retrieve,
)
from stream.adapters.responses.items import messages
from stream.adapters.responses.request import tools_of
from stream.errors import DeadlineExceeded, InvalidRequest, NotFound
from stream.routes import Request
from stream.transports.sse import frames

USAGE = Usage(prompt_tokens=9, completion_tokens=4, cached_tokens=6)
ECHO: dict[str, Any] = {"instructions": None, "tools": [], "tool_choice": "auto", "store": True}
_FRAME = re.compile(r"event: (?P<event>[^\n]+)\ndata: (?P<data>[^\n]+)\n\n")


def stream(events: list[Event]) -> tuple[list[dict[str, Any]], bool, list[dict[str, Any]]]:
    """Every event's JSON as a client reads it off the wire, whether the stream ended, and
    what ``on_done`` received."""
    done: list[dict[str, Any]] = []
    encoder = ResponsesEncoder("m", ECHO, on_done=done.append)
    body, last = frames(encoder.opening())
    assert not last
    for event in events:
        assert not last, "documents after the end"
        chunk, last = frames(encoder.encode(event))
        body += chunk
    parsed = []
    position = 0
    text = body.decode()
    for match in _FRAME.finditer(text):
        assert match.start() == position, "bytes between frames"
        position = match.end()
        payload = json.loads(match["data"])
        assert payload["type"] == match["event"]
        parsed.append(payload)
    assert position == len(text), "a frame that is not 'event:' + 'data:' (a [DONE]?)"
    return parsed, last, done


def names(parsed: list[dict[str, Any]]) -> list[str]:
    return [p["type"] for p in parsed]


def test_a_text_answer_streams_the_reference_sequence() -> None:
    events: list[Event] = [Delta("Hel", 1), Delta("", 1), Delta("lo", 1), Finished("stop", USAGE)]
    parsed, ended, done = stream(events)
    assert ended
    assert names(parsed) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [p["sequence_number"] for p in parsed] == list(range(len(parsed)))
    created = parsed[0]["response"]
    assert created["status"] == "in_progress"
    assert created["output"] == []
    assert created["id"].startswith("resp_")
    assert created["object"] == "response"
    item = parsed[2]["item"]
    assert item["type"] == "message"
    assert item["role"] == "assistant"
    assert item["status"] == "in_progress"
    assert item["id"].startswith("msg_")
    deltas = [p for p in parsed if p["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ["Hel", "lo"]
    for d in deltas:
        assert (d["item_id"], d["output_index"], d["content_index"]) == (item["id"], 0, 0)
        assert d["logprobs"] == []
    assert parsed[6]["text"] == "Hello"
    assert parsed[7]["part"] == {
        "type": "output_text",
        "text": "Hello",
        "annotations": [],
        "logprobs": [],
    }
    assert parsed[8]["item"]["status"] == "completed"
    final = parsed[-1]["response"]
    assert final["id"] == created["id"]
    assert created["completed_at"] is None
    assert final["completed_at"] >= created["created_at"]
    assert final["status"] == "completed"
    assert final["incomplete_details"] is None
    assert final["error"] is None
    assert final["output"] == [parsed[8]["item"]]
    assert final["usage"] == {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 6},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 13,
    }
    assert done == [final]


def test_text_then_tool_calls_close_each_item_before_the_next() -> None:
    events: list[Event] = [
        Delta("Let me check.", 3),
        ToolCallDelta(0, 0, "call_1", "weather", ""),
        ToolCallDelta(0, 0, None, None, '{"city": '),
        ToolCallDelta(0, 0, None, None, '"Paris"}'),
        ToolCallDelta(0, 1, "call_2", "time", ""),
        ToolCallDelta(0, 1, None, None, "{}"),
        Finished("tool_calls", USAGE),
    ]
    parsed, ended, _ = stream(events)
    assert ended
    assert names(parsed)[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    first = parsed[8]["item"]
    assert first["type"] == "function_call"
    assert first["id"].startswith("fc_")
    assert (first["call_id"], first["name"], first["arguments"]) == ("call_1", "weather", "")
    assert parsed[8]["output_index"] == 1
    argument_deltas = parsed[9:11]
    assert all(d["item_id"] == first["id"] and d["output_index"] == 1 for d in argument_deltas)
    assert parsed[11]["arguments"] == '{"city": "Paris"}'
    assert parsed[11]["name"] == "weather"
    final = parsed[-1]["response"]
    calls = [i for i in final["output"] if i["type"] == "function_call"]
    assert [(c["call_id"], c["arguments"], c["status"]) for c in calls] == [
        ("call_1", '{"city": "Paris"}', "completed"),
        ("call_2", "{}", "completed"),
    ]
    assert final["output"][0]["content"][0]["text"] == "Let me check."


def test_reasoning_is_an_item_before_the_answer_with_its_own_events() -> None:
    usage = Usage(prompt_tokens=9, completion_tokens=7, reasoning_tokens=4)
    events: list[Event] = [
        Delta("", 1, reasoning="Let me"),
        Delta("", 2, reasoning=" think."),
        Delta("Hi", 1, reasoning=" Done."),  # the block closes inside one release
        ToolCallDelta(0, 0, "call_1", "weather", ""),
        ToolCallDelta(0, 0, None, None, "{}"),
        Finished("tool_calls", usage),
    ]
    parsed, ended, done = stream(events)
    assert ended
    assert names(parsed)[2:] == [
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [p["sequence_number"] for p in parsed] == list(range(len(parsed)))
    added = parsed[2]["item"]
    assert added["id"].startswith("rs_")
    assert added["type"] == "reasoning"
    assert (added["summary"], added["content"], added["status"]) == ([], [], "in_progress")
    for delta in parsed[3:6]:
        assert (delta["item_id"], delta["output_index"], delta["content_index"]) == (
            added["id"],
            0,
            0,
        )
    assert [d["delta"] for d in parsed[3:6]] == ["Let me", " think.", " Done."]
    assert parsed[6]["text"] == "Let me think. Done."
    item = parsed[7]["item"]
    assert item == {
        "id": added["id"],
        "type": "reasoning",
        "status": "completed",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Let me think. Done."}],
    }
    assert parsed[8]["output_index"] == 1  # the message after the reasoning
    final = parsed[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][0] == item
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 4}
    assert done == [final]
    whole = json.loads(ResponsesEncoder("m", ECHO).whole(events).data)
    assert whole["output"][0]["content"] == item["content"]
    assert whole["usage"] == final["usage"]


def test_reasoning_cut_off_by_the_output_limit_is_an_incomplete_item() -> None:
    parsed, ended, _ = stream([Delta("", 3, reasoning="Hmm"), Finished("length", USAGE)])
    assert ended
    assert names(parsed)[-3:] == [
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    final = parsed[-1]["response"]
    assert final["output"][0]["status"] == "incomplete"
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "Hmm"}]


@pytest.mark.parametrize(
    ("effort", "kwargs", "budget"),
    [
        (None, {}, None),
        ("none", {"enable_thinking": False}, 0),
        ("minimal", {}, 256),
        ("low", {"reasoning_effort": "low"}, None),
        ("xhigh", {"reasoning_effort": "high"}, None),
    ],
)
def test_reasoning_effort_is_mapped_as_the_chat_routes(
    effort: str | None, kwargs: dict[str, Any], budget: int | None
) -> None:
    request = parse({"input": "hi", "reasoning": {"effort": effort, "summary": "auto"}})
    assert request.reasoning.template_kwargs == kwargs
    assert request.reasoning.thinking_budget == budget


def test_a_stored_reasoning_item_is_dropped_from_the_next_prompt() -> None:
    previous = (
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Q"}]},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "think"}],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A"}]},
    )
    request = parse({"input": "Again"}, previous=previous)
    turns = messages(request.conversation)
    assert [(t["role"], t["content"]) for t in turns] == [
        ("user", "Q"),
        ("assistant", "A"),
        ("user", "Again"),
    ]


def test_the_output_limit_makes_the_response_incomplete() -> None:
    parsed, ended, done = stream([Delta("abc", 2), Finished("length", USAGE)])
    assert ended
    assert names(parsed)[-1] == "response.incomplete"
    final = parsed[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"
    assert done == [final]


def test_a_server_end_mid_stream_is_response_failed_and_nothing_is_stored() -> None:
    events: list[Event] = [Delta("ab", 1), Finished("error", USAGE, "the engine failed")]
    parsed, ended, done = stream(events)
    assert ended
    assert names(parsed)[-2:] == ["response.output_item.done", "response.failed"]
    failed = parsed[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "the engine failed"}
    assert done == []


def test_a_transport_failure_is_response_failed_too() -> None:
    encoder = ResponsesEncoder("m", ECHO)
    encoder.opening()
    sent = encoder.encode(Delta("partial", 1))
    document = encoder.error("internal error while streaming")
    assert document.kind == "error"
    assert document.event == "response.failed"
    payload = json.loads(document.data)
    assert payload["sequence_number"] == 2 + len(sent)  # none skipped
    assert payload["response"]["output"][0]["status"] == "in_progress"
    assert payload["response"]["error"]["message"] == "internal error while streaming"


@given(
    st.lists(
        st.one_of(
            st.text(max_size=5).map(lambda t: ("text", t)),
            st.text(max_size=5).map(lambda t: ("reasoning", t)),
            st.tuples(st.just("call"), st.text(max_size=5)),
        ),
        max_size=12,
    ),
    st.sampled_from(["stop", "length", "tool_calls"]),
)
def test_whole_is_the_streamed_final_response(pieces: list[tuple[str, str]], reason: Any) -> None:
    events: list[Event] = []
    calls = 0
    for kind, text in pieces:
        if kind == "text":
            events.append(Delta(text, 1))
        elif kind == "reasoning":
            events.append(Delta("", 1, reasoning=text))
        else:
            events.append(ToolCallDelta(0, calls, f"call_{calls}", "f", ""))
            events.append(ToolCallDelta(0, calls, None, None, text))
            calls += 1
    events.append(Finished(reason, USAGE))
    parsed, _, _ = stream(events)
    streamed = parsed[-1]["response"]
    whole = json.loads(ResponsesEncoder("m", ECHO).whole(events).data)

    def shape(response: dict[str, Any]) -> Any:
        # Ids are fresh per response; everything else must agree.
        items = [{k: v for k, v in i.items() if k != "id"} for i in response["output"]]
        rest = {
            k: v
            for k, v in response.items()
            if k not in ("id", "output", "created_at", "completed_at")
        }
        return items, rest

    assert shape(whole) == shape(streamed)
    text = "".join(t for k, t in pieces if k == "text")
    joined = "".join(
        part["text"]
        for item in whole["output"]
        if item["type"] == "message"
        for part in item["content"]
    )
    assert joined == text
    thought = "".join(
        part["text"]
        for item in whole["output"]
        if item["type"] == "reasoning"
        for part in item["content"]
    )
    assert thought == "".join(t for k, t in pieces if k == "reasoning")


def test_whole_past_its_deadline_is_a_504() -> None:
    encoder = ResponsesEncoder("m", ECHO)
    with pytest.raises(DeadlineExceeded):
        encoder.whole([Delta("a", 1), Finished("deadline", USAGE)])


# -- requests -----------------------------------------------------------------------------


def refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    return caught.value


@pytest.mark.parametrize(
    "tool", ["web_search_preview", "file_search", "computer_use_preview", "mcp", "code_interpreter"]
)
def test_hosted_tools_are_refused_by_name(tool: str) -> None:
    error = refused({"input": "hi", "tools": [{"type": tool}]})
    assert error.param == "tools[0].type"
    assert tool in error.message


@pytest.mark.parametrize("part", ["input_image", "input_file", "input_audio"])
def test_other_modalities_are_refused_by_name(part: str) -> None:
    content = [{"type": "input_text", "text": "look"}, {"type": part, "image_url": "x"}]
    error = refused({"input": [{"role": "user", "content": content}]})
    assert error.param == "input[0].content[1].type"
    assert part in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": "hi", "truncation": "auto"}, "truncation"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"input": "hi", "metadata": {"k" * 65: "v"}}, "metadata"),
        ({"input": "hi", "metadata": {"k": "v" * 513}}, "metadata"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "temperature": 3}, "temperature"),
        (
            {"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
        ),
        ({"input": "hi", "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"input": "hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
        ({"input": "hi", "n": 2}, "n"),
        ({"input": "hi", "include": ["message.output_text.logprobs"]}, "include"),
    ],
)
def test_bad_fields_are_400s_naming_them(body: dict[str, Any], param: str) -> None:
    assert refused(body).param == param


def test_metadata_at_its_limits_is_accepted_and_echoed() -> None:
    metadata = {f"{i:0>64}": "v" * 512 for i in range(16)}
    request = parse(
        {"input": "hi", "metadata": metadata, "user": "u", "reasoning": {"effort": "low"}}
    )
    assert request.reasoning_effort == "low"
    assert request.echo is not None
    assert request.echo["metadata"] == metadata


def test_items_become_chat_turns() -> None:
    request = parse(
        {
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Hi"}],
                },
                {"type": "reasoning", "summary": []},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "two"}],
                },
            ],
        },
        previous=(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Before"}],
            },
        ),
    )
    assert request.instructions == "Be brief."
    turns = messages(request.conversation)
    assert [t["role"] for t in turns] == ["user", "system", "user", "assistant", "tool", "tool"]
    assert turns[0]["content"] == "Before"
    assert turns[3]["content"] == "Checking."
    assert [c["id"] for c in turns[3]["tool_calls"]] == ["c1", "c2"]
    assert turns[3]["tool_calls"][1]["function"] == {"name": "g", "arguments": '{"a":1}'}
    assert (turns[5]["tool_call_id"], turns[5]["content"]) == ("c2", "two")
    assert len(request.input_items) == 7  # the reasoning item is dropped


def test_flat_function_tools_are_checked_as_chat_tools_naming_flat_fields() -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    request = parse(
        {"input": "hi", "tools": [tool], "tool_choice": {"type": "function", "name": "get_weather"}}
    )
    tools, choice = tools_of(request)
    assert [t.name for t in tools] == ["get_weather"]
    assert (choice.mode, choice.function) == ("required", "get_weather")
    bad = parse({"input": "hi", "tools": [{**tool, "name": "no spaces allowed"}]})
    with pytest.raises(InvalidRequest) as caught:
        tools_of(bad)
    assert caught.value.param == "tools[0].name"
    unknown = parse(
        {"input": "hi", "tools": [tool], "tool_choice": {"type": "function", "name": "x"}}
    )
    with pytest.raises(InvalidRequest) as caught:
        tools_of(unknown)
    assert caught.value.param == "tool_choice.name"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_KEYS = [
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "metadata",
    "reasoning",
    "max_output_tokens",
    "temperature",
    "store",
    "include",
    "truncation",
    "user",
]
_ITEM = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning"])},
    optional={
        "role": st.sampled_from(["user", "assistant", "developer", "tool"]),
        "content": _JSON
        | st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["input_text", "output_text", "refusal"]), "text": _JSON}
            ),
            max_size=2,
        ),
        "call_id": _JSON,
        "name": _JSON,
        "arguments": _JSON,
        "output": _JSON,
    },
)


@given(
    st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=5),
    st.lists(_ITEM, max_size=4),
)
def test_any_body_is_a_request_or_a_400(body: dict[str, Any], items: list[dict[str, Any]]) -> None:
    if items:
        body = {**body, "input": items}
    refused: InvalidRequest | None = None
    try:
        request = parse(body)
        tools_of(request)
    except InvalidRequest as exc:
        refused = exc
    if refused is not None:
        assert refused.param
        return
    turns = messages(request.conversation)
    assert all(isinstance(t["content"], str | None) for t in turns)


# -- store --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def entry(n: int, owner: str | None = None, text: str = "") -> StoredResponse:
    return StoredResponse({"id": f"resp_{n}", "text": text}, (), (), owner)


def test_the_store_evicts_the_least_recently_used_past_its_count() -> None:
    store = ResponseStore(max_count=2, max_bytes=1 << 20, ttl=60)
    assert store.put(entry(1))
    assert store.put(entry(2))
    assert store.get("resp_1", None) is not None  # 1 is now the more recent
    store.put(entry(3))
    assert store.get("resp_2", None) is None
    assert store.get("resp_1", None) is not None
    assert store.get("resp_3", None) is not None
    assert len(store) == 2


def test_the_store_keeps_within_its_bytes() -> None:
    size = entry(1, text="x" * 100).size()
    store = ResponseStore(max_count=100, max_bytes=2 * size + 10, ttl=60)
    for n in range(1, 4):
        store.put(entry(n, text="x" * 100))
    assert len(store) == 2
    assert store.bytes <= 2 * size + 10
    assert store.get("resp_1", None) is None
    assert not store.put(entry(9, text="x" * (3 * size)))  # larger than the whole store


def test_stored_responses_expire() -> None:
    clock = Clock()
    store = ResponseStore(max_count=2, max_bytes=1 << 20, ttl=30, clock=clock)
    store.put(entry(1))
    clock.now = 29.9
    store.put(entry(2))
    assert store.get("resp_1", None) is not None  # resp_2 is now the least recently used
    clock.now = 30.0
    # Storing drops what expired first, so an expired entry never pushes a live one out.
    store.put(entry(3))
    assert store.get("resp_1", None) is None
    assert store.get("resp_2", None) is not None
    assert store.bytes == entry(2).size() + entry(3).size()
    clock.now = 60.0
    assert store.get("resp_2", None) is None
    assert len(store) == 0
    assert store.bytes == 0


def test_each_owner_sees_and_deletes_only_its_own() -> None:
    store = ResponseStore(max_count=10, max_bytes=1 << 20, ttl=30)
    store.put(entry(1, owner="a"))
    assert store.get("resp_1", "b") is None
    assert not store.delete("resp_1", "b")
    assert store.delete("resp_1", "a")
    assert store.get("resp_1", "a") is None


@pytest.mark.parametrize(("count", "size", "ttl"), [(0, 100, 1.0), (5, 0, 1.0), (5, 100, 0.0)])
def test_any_bound_at_zero_turns_storing_off(count: int, size: int, ttl: float) -> None:
    store = ResponseStore(max_count=count, max_bytes=size, ttl=ttl)
    assert not store.enabled
    assert not store.put(entry(1))
    assert len(store) == 0


# -- stored responses over HTTP -----------------------------------------------------------


async def get(store: ResponseStore, path: str, query: str = "") -> Any:
    scope = {"type": "http", "method": "GET", "headers": [], "query_string": query.encode()}
    handler = retrieve(store, private=False)
    response = await handler(Request(scope, _no_receive, params={"id": path}))
    assert isinstance(response, JSONResponse)
    return json.loads(bytes(response.body))


async def _no_receive() -> Message:
    raise AssertionError("a GET handler reads no body")


@pytest.mark.anyio
async def test_input_items_are_listed_in_pages() -> None:
    store = ResponseStore(max_count=10, max_bytes=1 << 20, ttl=60)
    items = tuple({"type": "message", "id": f"msg_{n}", "role": "user"} for n in range(5))
    store.put(StoredResponse({"id": "resp_1"}, items, items))
    assert await get(store, "resp_1") == {"id": "resp_1"}
    newest = await get(store, "resp_1/input_items", "limit=2")
    assert [i["id"] for i in newest["data"]] == ["msg_4", "msg_3"]
    assert (newest["first_id"], newest["last_id"], newest["has_more"]) == ("msg_4", "msg_3", True)
    rest = await get(store, "resp_1/input_items", "order=asc&after=msg_2")
    assert [i["id"] for i in rest["data"]] == ["msg_3", "msg_4"]
    assert rest["has_more"] is False
    for query, param in [("limit=0", "limit"), ("order=up", "order"), ("stream=true", "stream")]:
        with pytest.raises(InvalidRequest) as caught:
            await get(store, "resp_1/input_items", query)
        assert caught.value.param == param
    for path in ["resp_2", "resp_1/other"]:
        with pytest.raises(NotFound):
            await get(store, path)
