"""Unit tests for model.tool_calls: tool calls found in streamed and whole output."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.tool_calls import (
    ContentText,
    ToolCall,
    ToolCallArguments,
    ToolCallParser,
    ToolCallStart,
    ToolEvent,
)
from tests.unit.tool_text import TOOL_TEXT_PIECES, parse_tool_calls

#: The functions of the tool tests (tests/model/test_tools.py): get_weather, get-time, ping.
_NAMES = ["get_weather", "get-time", "ping"]


def _ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def _parser(names: list[str] | None = None) -> ToolCallParser:
    return ToolCallParser(names, new_id=_ids())


def _collapse(events: list[ToolEvent]) -> list[ToolEvent]:
    out: list[ToolEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, ContentText) and isinstance(last, ContentText):
            out[-1] = ContentText(last.text + event.text)
        elif (
            isinstance(event, ToolCallArguments)
            and isinstance(last, ToolCallArguments)
            and last.index == event.index
        ):
            out[-1] = ToolCallArguments(event.index, last.fragment + event.fragment)
        else:
            out.append(event)
    return out


def _feed(pieces: list[str], names: list[str] | None = None) -> list[ToolEvent]:
    parser = _parser(names)
    events = [event for piece in pieces for event in parser.push(piece)]
    return _collapse([*events, *parser.finish()])


# -- parsing ------------------------------------------------------------------------------

_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_content_passes_through_at_once() -> None:
    parser = _parser()
    assert parser.push("Hello") == [ContentText("Hello")]
    assert parser.push(" world <") == [ContentText(" world ")]
    assert parser.push("tool") == []
    assert parser.push("s are fun") == [ContentText("<tools are fun")]
    assert parser.push("<tool_c") == []
    assert parser.finish() == [ContentText("<tool_c")]


def test_a_call_streams_name_first_then_arguments() -> None:
    parser = _parser()
    assert parser.push("Sure. <tool_call>\n") == [ContentText("Sure. ")]
    assert parser.push('{"name": "get_weather", ') == []
    assert parser.push('"arguments": {"city": ') == [
        ToolCallStart(0, "call_0", "get_weather"),
        ToolCallArguments(0, '{"city": '),
    ]
    assert parser.push('"Paris"}}\n</tool_') == [ToolCallArguments(0, '"Paris"}')]
    assert parser.push("call>\n") == []
    assert parser.push("Done") == [ContentText("Done")]
    assert parser.finish() == []


def test_parse_tool_calls_whole_text() -> None:
    text = f"Let me check.\n{_CALL}\n{_CALL.replace('Paris', 'Oslo')}\nBye"
    content, calls = parse_tool_calls(text, _NAMES, new_id=_ids())
    assert content == "Let me check.\nBye"
    assert calls == [
        ToolCall("call_0", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),
    ]


def test_default_ids() -> None:
    _, [call] = parse_tool_calls(_CALL)
    assert call.id.startswith("call_")
    assert len(call.id) == 29
    int(call.id[5:], 16)


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        # Not a call: all content, nothing lost.
        ('<tool_call>{"nam": "f"}</tool_call>', '<tool_call>{"nam": "f"}</tool_call>', []),
        ("<tool_call>not json</tool_call>", "<tool_call>not json</tool_call>", []),
        (
            '<tool_call>{"name": "f", "arguments": 3}',
            '<tool_call>{"name": "f", "arguments": 3}',
            [],
        ),
        ('<tool_call>{"name": "f", "argu', '<tool_call>{"name": "f", "argu', []),
        ('<tool_call>{"name": "unknown", "arguments": {}}', None, []),
        ("<tool_call>" + " " * 40 + "{", "<tool_call>" + " " * 40 + "{", []),
        # Calls with odd endings.
        ('<tool_call>{"name": "ping", "arguments": {}}', "", [("ping", "{}")]),
        ('<tool_call>{"name":"ping","arguments":{}}\nThe answer', "The answer", [("ping", "{}")]),
        (
            '<tool_call>{"name": "ping", "arguments": {"a": 1}</tool_call>',
            "",
            [("ping", '{"a": 1}')],
        ),
        (
            '<tool_call>{"name": "ping", "arguments": {"a": 1</tool_call>x',
            "x",
            [("ping", '{"a": 1')],
        ),
        ('<tool_call>{"name": "ping", "arguments": {"a": [1, {', "", [("ping", '{"a": [1, {')]),
        (
            '<tool_call>{"name": "ping", "arguments": {}, "x": 1}</tool_call>',
            ', "x": 1}</tool_call>',
            [("ping", "{}")],
        ),
        # Odd but valid insides.
        ('<tool_call>{"name": "ping", "parameters": {}}</tool_call>', "", [("ping", "{}")]),
        (
            '<tool_call>{"name": "ping", "arguments": {"s": "}</tool_call>\\"{"}}</tool_call>',
            "",
            [("ping", '{"s": "}</tool_call>\\"{"}')],
        ),
        ('<tool_call>\t{ "name" :\n"ping" ,"arguments":{ } } </tool_call>', "", [("ping", "{ }")]),
    ],
)
def test_parser_edge_cases(text: str, content: str | None, calls: list[tuple[str, str]]) -> None:
    found_content, found = parse_tool_calls(text, _NAMES, new_id=_ids())
    assert found_content == (text if content is None else content)
    assert [(call.name, call.arguments) for call in found] == calls


def test_any_name_without_a_list() -> None:
    _, [call] = parse_tool_calls('<tool_call>{"name": "other", "arguments": {}}</tool_call>')
    assert call.name == "other"


@given(data=st.data(), pieces=st.lists(st.sampled_from(TOOL_TEXT_PIECES), max_size=12))
def test_any_split_gives_the_same_events(data: st.DataObject, pieces: list[str]) -> None:
    text = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
    assert _feed(chunks, _NAMES) == _feed([text], _NAMES)
    content, calls = parse_tool_calls(text, _NAMES, new_id=_ids())
    streamed = _feed(chunks, _NAMES)
    assert "".join(e.text for e in streamed if isinstance(e, ContentText)) == content
    assert [e.name for e in streamed if isinstance(e, ToolCallStart)] == [c.name for c in calls]
    if not calls:
        assert content == text  # nothing is ever lost when there is no call
