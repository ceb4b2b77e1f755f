"""Whole outputs read as the engine reads them, for tool-call tests."""

from __future__ import annotations

from collections.abc import Callable, Collection

from model.events import ToolCallDelta
from model.tool_calls import (
    ContentText,
    ToolCall,
    ToolCallParser,
    ToolCallStart,
    join_tool_calls,
    new_call_id,
)


def parse_tool_calls(
    text: str, names: Collection[str] | None = None, *, new_id: Callable[[], str] = new_call_id
) -> tuple[str, list[ToolCall]]:
    """The content and the calls in a whole output: the parser's events for it, as a
    sequence emits them (choice 0), joined as a non-streamed answer joins them."""
    parser = ToolCallParser(names, new_id=new_id)
    content: list[str] = []
    parts: list[ToolCallDelta] = []
    for event in [*parser.push(text), *parser.finish()]:
        if isinstance(event, ContentText):
            content.append(event.text)
        elif isinstance(event, ToolCallStart):
            parts.append(ToolCallDelta(0, event.index, event.id, event.name, ""))
        else:
            parts.append(ToolCallDelta(0, event.index, None, None, event.fragment))
    return "".join(content), join_tool_calls(parts).get(0, [])


TOOL_TEXT_PIECES = [
    "Hello ",
    "<",
    "<tool",
    "<tool_call>",
    "</tool_call>",
    "{",
    "}",
    '"name"',
    ": ",
    "\n",
    '"ping"',
    '"get_weather"',
    ", ",
    '"arguments"',
    '{"city": "Pa<r}is"}',
    '"\\"',
    "x",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
    '<tool_call>{"name": "ping", "arguments": {"a": [1, 2]}}</tool_call>',
]
"""Fragments of tool-call markup (partial tags, names, JSON, whole calls) that property
tests join in any order to feed a parser."""
