"""The shared parts: reasoning splitting, the call ledger, markup matching, history shapes,
the registry."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.families import (
    FAMILIES,
    FLATTENED,
    ContentText,
    FamilyError,
    HistoryShape,
    OutputParser,
    ReasoningMarkers,
    ReasoningText,
    ToolCallArguments,
    ToolCallStart,
    detect_family,
    family_by_name,
    history_shape,
    parse_output,
)
from model.families.markup import ArgsStart, JsonExtent, Lit, Name, Ws, match_steps
from model.families.reasoning import ReasoningSplitter
from model.template import load_chat_template
from model.tools import parse_tools
from tests.model.families.cases import CET, PARIS, TOOLS, ids
from tests.unit.tool_text import TOOL_TEXT_PIECES, parse_tool_calls

_GENERIC = FAMILIES["generic"]
_QWEN = FAMILIES["hermes"]


def _split(markers: ReasoningMarkers, chunks: list[str], **kwargs: Any) -> tuple[str, str]:
    splitter = ReasoningSplitter(markers, inside=kwargs.pop("inside", False))
    parts = [part for chunk in chunks for part in splitter.push(chunk)]
    parts += splitter.finish(**kwargs)
    reasoning = "".join(p.text for p in parts if isinstance(p, ReasoningText))
    return reasoning, "".join(p.text for p in parts if isinstance(p, ContentText))


_THINK = ReasoningMarkers("<think>", "</think>")


@pytest.mark.parametrize(
    ("text", "inside", "truncated", "reasoning", "answer"),
    [
        ("<think>\nA plan.\n</think>\n\nThe answer.", False, False, "A plan.", "The answer."),
        ("  <think>x</think>y", False, False, "x", "y"),
        ("The answer. <think>not a block</think>", False, False, "", None),
        ("A plan.\n</think>\n\nThe answer.", True, False, "A plan.", "The answer."),
        ("A plan that never ends", True, False, "A plan that never ends", ""),
        ("A plan cut off </thi", True, True, "A plan cut off", ""),
        ("<think>A plan cut", False, True, "A plan cut", ""),
        ("<thi", False, True, "", ""),
        ("<thi", False, False, "", "<thi"),
        ("\n\n", False, False, "", "\n\n"),
        ("<think></think>", False, False, "", ""),
        ("Text </think> more", False, False, "", "Text </think> more"),
    ],
)
def test_reasoning_splitter(
    text: str, inside: bool, truncated: bool, reasoning: str, answer: str | None
) -> None:
    expected = (reasoning, text if answer is None else answer)
    assert _split(_THINK, [text], inside=inside, truncated=truncated) == expected
    for cut in range(len(text) + 1):
        chunks = [text[:cut], text[cut:]]
        assert _split(_THINK, chunks, inside=inside, truncated=truncated) == expected


def test_granite_response_tags_are_dropped() -> None:
    granite = FAMILIES["granite"].reasoning
    assert granite is not None
    text = "<think>Check.</think>\n<response>It is </ sunny.</response>"
    for cut in range(len(text) + 1):
        assert _split(granite, [text[:cut], text[cut:]]) == ("Check.", "It is </ sunny.")


def test_the_issue_example_leaves_no_content() -> None:
    # A named tool_choice with a small max_tokens used to answer with this as content.
    out = parse_output(_GENERIC, TOOLS, '<tool_call>\n{"name": "get_', truncated=True)
    assert (out.content, out.calls) == ("", [])
    kept = parse_output(_GENERIC, TOOLS, '<tool_call>\n{"name": "get_')
    assert kept.content == '<tool_call>\n{"name": "get_'  # the model itself stopped there


def test_leading_whitespace_goes_only_before_content() -> None:
    assert parse_output(_QWEN, TOOLS, "\n\nHello").content == "\n\nHello"
    call = '\n\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
    out = parse_output(_QWEN, TOOLS, call)
    assert (out.content, [c.name for c in out.calls]) == ("", ["get_time"])


def test_pieces_stream_in_order() -> None:
    parser = OutputParser(_QWEN, TOOLS, new_id=ids())
    text = (
        '<think>Plan.</think>Sure.<tool_call>{"name": "get_time", "arguments": {"zone": "CET"}}'
        '</tool_call><tool_call>{"name": "get_time", "arguments": {"zone": "CET"}}</tool_call>'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    )
    pieces = [piece for char in text for piece in parser.push(char)] + parser.finish()
    kinds = [kind.__name__ for kind, _ in itertools.groupby(type(piece) for piece in pieces)]
    assert kinds == [
        "ReasoningText",
        "ContentText",
        "ToolCallStart",
        "ToolCallArguments",
        "DuplicateCall",
        "ToolCallStart",
        "ToolCallArguments",
    ]
    starts = [p for p in pieces if isinstance(p, ToolCallStart)]
    assert [(s.index, s.id, s.name) for s in starts] == [
        (0, "call_0", "get_time"),
        (1, "call_1", "get_weather"),
    ]
    assert parser.calls == 2
    fragments = "".join(p.fragment for p in pieces if isinstance(p, ToolCallArguments))
    assert fragments == '{"zone": "CET"}{"city": "Paris"}'


_OLD_TOOLS = parse_tools(
    [
        {"type": "function", "function": {"name": "ping"}},
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "function", "function": {"name": "get-time"}},
    ]
)


@given(pieces=st.lists(st.sampled_from(TOOL_TEXT_PIECES), max_size=12))
def test_generic_reads_the_calls_model_tool_calls_reads(pieces: list[str]) -> None:
    text = "".join(pieces)
    _, old = parse_tool_calls(text, [tool.name for tool in _OLD_TOOLS])
    new = parse_output(_GENERIC, _OLD_TOOLS, text)
    # Identical calls are reported once now; otherwise the same calls, in the same order.
    unique = [call for i, call in enumerate(old) if (call.name, call.arguments) not in
              {(c.name, c.arguments) for c in old[:i]}]  # fmt: skip
    assert [(c.name, c.arguments) for c in new.calls] == [(c.name, c.arguments) for c in unique]


def test_match_steps() -> None:
    steps = (Lit("<a>"), Ws(), Lit('"'), Name(), Lit('"'), Ws(), ArgsStart())
    names = frozenset({"get_time", "get_weather"})
    assert match_steps('<a> "get_time" {', 0, steps, names).status == "yes"
    assert match_steps('<a> "get_time" {', 0, steps, names).end == len('<a> "get_time" ')
    assert match_steps('<a> "get_time" {', 0, steps, names).name == "get_time"
    assert match_steps('<a> "get_', 0, steps, names).status == "more"
    assert match_steps('<a> "got', 0, steps, names).status == "no"
    assert match_steps('<a> "get_time" x', 0, steps, names).status == "no"
    assert match_steps("<a>" + " " * 33, 0, steps, names).status == "no"
    assert match_steps('<a> "anything" {', 0, steps, None).status == "yes"


def test_json_extent() -> None:
    extent = JsonExtent("<")
    assert extent.feed('{"a": "}<{", "b": [1, ') == (len('{"a": "}<{", "b": [1, '), False)
    assert extent.feed("2]} tail") == (3, True)
    assert JsonExtent("<").feed('{"a": 1 </x>') == (8, True)


_CALLS = [
    {"id": "call_a", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    {
        "id": "call_b",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps(PARIS)},
    },
]
_TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Checking.", "tool_calls": _CALLS},
    {"role": "tool", "tool_call_id": "call_b", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_x", "content": "stray"},
    {"role": "tool", "tool_call_id": "call_a", "content": None},
]


def test_history_shape_one_call_per_turn() -> None:
    shape = HistoryShape(one_call_per_turn=True, short_ids=True)
    out = shape.apply(_TURNS, FAMILIES["llama3"])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "assistant", "tool", "tool"]
    first, second = out[1], out[3]
    assert first["content"] == "Checking."
    assert second["content"] is None
    assert first["tool_calls"][0]["function"] == {"name": "get_time", "arguments": {}}
    assert second["tool_calls"][0]["function"]["arguments"] == PARIS
    ids = [first["tool_calls"][0]["id"], second["tool_calls"][0]["id"]]
    assert all(len(i) == 9 and i.isalnum() for i in ids)
    assert [out[2]["tool_call_id"], out[4]["tool_call_id"]] == ids
    assert (out[2]["content"], out[5]["content"]) == ("", "stray")
    assert _TURNS[4]["content"] is None  # the caller's messages are left alone


def test_history_shape_strings_and_content() -> None:
    out = HistoryShape(object_arguments=False, null_content=False).apply(
        [{"role": "assistant", "content": None, "tool_calls": _CALLS[1:]}], _QWEN
    )
    assert out == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{**_CALLS[1], "function": _CALLS[1]["function"]}],
        }
    ]
    written = HistoryShape(calls_in_content=True).apply(_TURNS[1:2], FAMILIES["granite"])
    assert written == [
        {
            "role": "assistant",
            "content": 'Checking.<|tool_call|>[{"name": "get_time", "arguments": {}}, '
            '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]',
        }
    ]
    flat = FLATTENED.apply(_TURNS, _GENERIC)
    assert "<tool_response" in flat[2]["content"]


def test_templates_without_tools_are_flattened() -> None:
    template = load_chat_template(None, override="chatml")
    assert history_shape(template, detect_family(template.source)) == FLATTENED


def test_family_names() -> None:
    for name, family in FAMILIES.items():
        assert family_by_name(name) is family
        assert family.name == name
        assert family.markers
    with pytest.raises(FamilyError, match="expected one of generic, hermes"):
        family_by_name("gemma")
    assert "<|python_tag|>" in FAMILIES["llama3"].markers
    assert "<|call|>" in FAMILIES["harmony"].markers
    assert {"[THINK]", "[TOOL_CALLS]", "[ARGS]"} <= set(FAMILIES["magistral"].markers)
    assert "<think>" in FAMILIES["deepseek-r1"].markers


def test_ids_are_fresh_per_call() -> None:
    text = FAMILIES["mistral"].write_calls(
        [("get_time", {"zone": "A"}), ("get_time", {"zone": "B"})]
    )
    calls = parse_output(FAMILIES["mistral"], TOOLS, text).calls
    assert len({call.id for call in calls}) == 2
    assert all(call.id.startswith("call_") and len(call.id) == 29 for call in calls)


@pytest.mark.parametrize("name", [name for name, family in FAMILIES.items() if not family.framed])
def test_plain_text_is_never_held(name: str) -> None:
    # Only what could still become markup waits: prose streams out as it comes.
    parser = OutputParser(FAMILIES[name], TOOLS)
    text = "It is 21 degrees, says the weather service."
    assert [parser.push(char) for char in text] == [[ContentText(char)] for char in text]
    assert parser.finish() == []


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if f.end_of_reasoning])
def test_forcing_the_end_of_reasoning(name: str) -> None:
    # A thinking budget spent: the engine writes end_of_reasoning into the output itself.
    family = FAMILIES[name]
    opening = (
        "<|channel|>analysis<|message|>"
        if name == "harmony"
        else (family.reasoning.open if family.reasoning else "")
    )
    answer = family.write_calls([("get_time", CET)])
    parser = OutputParser(family, TOOLS, new_id=ids())
    pieces = parser.push(opening) + parser.push("Long thoughts")
    assert parser.in_reasoning
    pieces += parser.push(family.end_of_reasoning)
    assert not parser.in_reasoning or name == "harmony"  # harmony: the next header decides
    pieces += parser.push(answer) + parser.finish()
    assert not parser.in_reasoning
    reasoning = "".join(p.text for p in pieces if isinstance(p, ReasoningText))
    assert reasoning == "Long thoughts"
    assert [p.name for p in pieces if isinstance(p, ToolCallStart)] == ["get_time"]
    assert not [p for p in pieces if isinstance(p, ContentText)]
