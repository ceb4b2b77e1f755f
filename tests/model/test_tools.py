from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from model.grammar import check_grammar
from model.template import load_chat_template
from model.tools import (
    Tool,
    ToolChoice,
    ToolError,
    flatten_tool_messages,
    format_tool_call,
    messages_with_tools,
    parse_tool_choice,
    parse_tools,
    template_supports_tools,
    tool_call_grammar,
    tools_system_prompt,
)
from tests.model.embedded import EmbeddedModel, chat_prompt
from tests.unit.tool_text import parse_tool_calls

_WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
_TIME = {
    "type": "function",
    "function": {
        "name": "get-time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 10}},
            "required": ["zone"],
        },
    },
}
_PING = {"type": "function", "function": {"name": "ping"}}
_TOOLS = parse_tools([_WEATHER, _TIME, _PING])
_NAMES = [tool.name for tool in _TOOLS]


def _ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


# -- validation ---------------------------------------------------------------------------


def test_parse_tools() -> None:
    weather, time, ping = _TOOLS
    assert weather == Tool(
        "get_weather", "Current weather in a city.", _WEATHER["function"]["parameters"], True
    )
    assert (time.name, time.description, time.strict) == ("get-time", None, False)
    assert ping.parameters == {"type": "object", "properties": {}}
    assert ping.spec() == {
        "type": "function",
        "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}},
    }
    strict_left_out = {k: v for k, v in _WEATHER["function"].items() if k != "strict"}
    assert weather.spec() == {"type": "function", "function": strict_left_out}
    assert parse_tools(None) == ()


def _function(**fields: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", **fields}}


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"type": "function"}, "tools"),
        ([], "tools"),
        ([_PING] * 129, "tools"),
        (["ping"], "tools[0].type"),
        ([_PING, {"type": "retrieval"}], "tools[1].type"),
        ([{"type": "function"}], "tools[0].function"),
        ([_function(name="has space")], "tools[0].function.name"),
        ([_function(name="x" * 65)], "tools[0].function.name"),
        ([_function(name="")], "tools[0].function.name"),
        ([_PING, _TIME, _PING], "tools[2].function.name"),
        ([_function(description=3)], "tools[0].function.description"),
        ([_function(parameters="object")], "tools[0].function.parameters"),
        ([_function(strict="yes")], "tools[0].function.strict"),
        ([_function(strict=True, parameters={"type": "object"})], "tools[0].function.parameters"),
    ],
)
def test_invalid_tools_name_the_param(raw: Any, param: str) -> None:
    with pytest.raises(ToolError) as caught:
        parse_tools(raw)
    assert caught.value.param == param
    assert str(caught.value).startswith(param)


def test_parse_tool_choice() -> None:
    assert parse_tool_choice(None, _TOOLS) == ToolChoice("auto", None, True)
    assert parse_tool_choice(None, ()) == ToolChoice("none", None, True)
    assert parse_tool_choice("none", ()) == ToolChoice("none")
    assert parse_tool_choice("required", _TOOLS, parallel_tool_calls=False) == ToolChoice(
        "required", None, False
    )
    named = {"type": "function", "function": {"name": "get-time"}}
    assert parse_tool_choice(named, _TOOLS) == ToolChoice("required", "get-time", True)


@pytest.mark.parametrize(
    ("raw", "tools", "parallel", "param"),
    [
        ("always", _TOOLS, None, "tool_choice"),
        (
            {"type": "function", "function": {"name": "nope"}},
            _TOOLS,
            None,
            "tool_choice.function.name",
        ),
        ({"type": "function"}, _TOOLS, None, "tool_choice.function.name"),
        ("required", (), None, "tool_choice"),
        ("auto", _TOOLS, "yes", "parallel_tool_calls"),
    ],
)
def test_invalid_tool_choice(raw: Any, tools: tuple[Tool, ...], parallel: Any, param: str) -> None:
    with pytest.raises(ToolError) as caught:
        parse_tool_choice(raw, tools, parallel_tool_calls=parallel)
    assert caught.value.param == param


# -- prompting ----------------------------------------------------------------------------

_SMOLLM_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_template_supports_tools() -> None:
    assert not template_supports_tools(_SMOLLM_TEMPLATE)
    assert not template_supports_tools("Use no tools here. {{ messages[0].content }}")
    assert template_supports_tools("{%- if tools %}{{ tools | tojson }}{% endif %}")
    assert template_supports_tools("{% for tool in tools %}{{ tool.function.name }}{% endfor %}")


def test_tools_system_prompt_lists_functions_and_format() -> None:
    prompt = tools_system_prompt(_TOOLS, ToolChoice())
    for tool in _TOOLS:
        assert json.dumps(tool.spec()) in prompt
    assert "<tools>\n" in prompt
    assert '<tool_call>\n{"name": "<function name>", "arguments"' in prompt
    assert "only when they help" in prompt
    assert "at most one" in tools_system_prompt(_TOOLS, ToolChoice(parallel=False))
    assert "must call one or more" in tools_system_prompt(_TOOLS, ToolChoice("required"))
    named = tools_system_prompt(_TOOLS, ToolChoice("required", "ping"))
    assert "must call the function ping" in named
    assert tools_system_prompt(_TOOLS, ToolChoice("none")) == ""


_CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris and the time?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get-time", "arguments": "{bad"},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
    {"role": "assistant", "content": "18 C at noon."},
]


def test_flatten_tool_messages() -> None:
    flat = flatten_tool_messages(_CONVERSATION)
    assert flat == [
        _CONVERSATION[0],
        {
            "role": "assistant",
            "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '</tool_call>\n<tool_call>\n{"name": "get-time", "arguments": "{bad"}\n</tool_call>',
        },
        {
            "role": "user",
            "content": '<tool_response name="get_weather" id="call_1">\n18 C\n</tool_response>\n'
            '<tool_response name="get-time" id="call_2">\nnoon\n</tool_response>',
        },
        _CONVERSATION[4],
    ]
    # The blocks of an assistant turn read back as the same calls.
    content, calls = parse_tool_calls(flat[1]["content"], new_id=_ids())
    assert content == '<tool_call>\n{"name": "get-time", "arguments": "{bad"}\n</tool_call>'
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]


def test_flattened_tool_turns_render_in_chatml() -> None:
    messages = messages_with_tools(_CONVERSATION, _TOOLS, ToolChoice())
    prompt = load_chat_template(_SMOLLM_TEMPLATE).render(messages)
    assert prompt.startswith("<|im_start|>system\n# Tools\n")
    assert "<|im_start|>user\n<tool_response" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_messages_with_tools_extends_a_system_message() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = messages_with_tools(messages, _TOOLS, ToolChoice())
    assert out[0]["content"].startswith("Be brief.\n\n# Tools\n")
    assert out[1:] == messages[1:]
    assert messages_with_tools(messages, _TOOLS, ToolChoice("none")) == messages


def test_format_tool_call() -> None:
    assert format_tool_call("f", '{"a": [1]}') == (
        '<tool_call>\n{"name": "f", "arguments": {"a": [1]}}\n</tool_call>'
    )


# -- grammars ------------------------------------------------------------------------------


_ARGS = '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'
_TIME_ARGS = '{"name": "get-time", "arguments": {"zone": "UTC"}}'


@pytest.mark.parametrize(
    ("choice", "text", "accepted"),
    [
        (ToolChoice("required", "get_weather"), f"<tool_call>\n{_ARGS}\n</tool_call>", True),
        (ToolChoice("required", "get_weather"), f"<tool_call>\n{_TIME_ARGS}\n</tool_call>", False),
        (
            ToolChoice("required", "get_weather"),
            f"<tool_call>\n{_ARGS}\n</tool_call>\n<tool_call>\n{_ARGS}\n</tool_call>",
            False,
        ),
        (ToolChoice("required", "get_weather"), "Sure!", False),
        (ToolChoice("required"), f"<tool_call>\n{_TIME_ARGS}\n</tool_call>", True),
        (
            ToolChoice("required"),
            f"<tool_call>\n{_TIME_ARGS}\n</tool_call>\n<tool_call>\n{_ARGS}\n</tool_call>",
            True,
        ),
        (
            ToolChoice("required", parallel=False),
            f"<tool_call>\n{_TIME_ARGS}\n</tool_call>\n<tool_call>\n{_ARGS}\n</tool_call>",
            False,
        ),
        (
            ToolChoice("required"),
            '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>',
            True,
        ),
        (
            ToolChoice("required"),
            '<tool_call>\n{"name": "ping", "arguments": {"a": 1}}\n</tool_call>',
            False,
        ),
    ],
)
def test_tool_call_grammar(
    vocab_model: EmbeddedModel, choice: ToolChoice, text: str, accepted: bool
) -> None:
    grammar = tool_call_grammar(_TOOLS, choice)
    check_grammar(grammar, vocab_model.vocab)
    assert vocab_model.accepts(grammar, text) is accepted


def test_tool_call_grammar_needs_a_forced_choice() -> None:
    with pytest.raises(ValueError, match="forces no call"):
        tool_call_grammar(_TOOLS, ToolChoice("auto"))


def test_tool_call_grammar_names_unenforceable_parameters() -> None:
    tools = parse_tools([_PING, _function(parameters={"type": "object", "not": {}})])
    with pytest.raises(ToolError) as caught:
        tool_call_grammar(tools, ToolChoice("required"))
    assert caught.value.param == "tools[1].function.parameters"
    tool_call_grammar(tools, ToolChoice("required", "ping"))  # the other one is not needed


@pytest.mark.parametrize(
    "choice", [ToolChoice("required", "get_weather"), ToolChoice("required", parallel=False)]
)
def test_forced_calls_generate_valid_arguments(
    full_model: EmbeddedModel, choice: ToolChoice
) -> None:
    grammar = tool_call_grammar(_TOOLS, choice)
    system = tools_system_prompt(_TOOLS, choice)
    schemas = {tool.name: tool.parameters for tool in _TOOLS}
    for seed in (1, 2):
        text = full_model.generate(
            chat_prompt(system, "Weather in Oslo?"), grammar, seed=seed, limit=200
        )
        assert text is not None, "no end within 200 tokens"
        content, calls = parse_tool_calls(text, _NAMES)
        assert content == ""
        assert calls
        for call in calls:
            assert choice.function in (None, call.name)
            jsonschema.validate(json.loads(call.arguments), schemas[call.name])


def test_a_forced_call_among_many_tools_shares_its_opening(vocab_model: EmbeddedModel) -> None:
    # The most tools a request may carry, names sharing long prefixes: one trie, any of them.
    raw = [_function(name=f"lookup_{i:03d}") for i in range(128)]
    grammar = tool_call_grammar(parse_tools(raw), ToolChoice("required"))
    check_grammar(grammar, vocab_model.vocab)
    for name in ("lookup_000", "lookup_127", "lookup_064"):
        call = f'<tool_call>\n{{"name": "{name}", "arguments": {{}}}}\n</tool_call>'
        assert vocab_model.accepts(grammar, call)
    missing = '<tool_call>\n{"name": "lookup_128", "arguments": {}}\n</tool_call>'
    assert not vocab_model.accepts(grammar, missing)
