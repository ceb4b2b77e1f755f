"""Each family against its real chat templates: detection, the prompt with tools and history
in the family's shape, and whether the generation prompt opens the reasoning block."""

from __future__ import annotations

import json
from typing import Any

import pytest

from model.families import FAMILIES, detect_family, history_shape, parse_output, tools_prompt
from model.tools import ToolChoice, template_supports_tools
from tests.model.families.cases import CASES, PARIS, TIME, TOOLS, WEATHER, Case, case_id
from tests.model.families.templates import ChatTemplates

_RESULT = '{"temperature": 21}'
_CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a weather assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_8f2d0c1e9b7a4d3c2b1a0f9e",
                "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps(PARIS)},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_8f2d0c1e9b7a4d3c2b1a0f9e", "content": _RESULT},
    {"role": "assistant", "content": "It is 21 degrees in Paris."},
    {"role": "user", "content": "And the time in CET?"},
]


def test_every_case_names_a_family() -> None:
    assert {case.family for case in CASES} == set(FAMILIES) - {"generic"}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_templates_are_detected(chat_templates: ChatTemplates, case: Case) -> None:
    for name in case.templates:
        assert detect_family(chat_templates.source(name)).name == case.family, name


@pytest.mark.parametrize(
    "name",
    [
        "google-gemma-2-2b-it.jinja",
        "microsoft-Phi-3.5-mini-instruct.jinja",
        "HuggingFaceTB-SmolLM3-3B.jinja",
        "GLM-4.6.jinja",
    ],
)
def test_other_templates_keep_the_generic_format(chat_templates: ChatTemplates, name: str) -> None:
    assert detect_family(chat_templates.source(name)).name == "generic"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_history_renders_in_the_family_shape(chat_templates: ChatTemplates, case: Case) -> None:
    template = chat_templates.template(case.render, bos=case.bos, eos=case.eos)
    family = case.family_object
    shape = history_shape(template, family)
    assert shape.native
    messages = shape.apply(_CONVERSATION, family)
    choice = ToolChoice("auto")
    if template_supports_tools(template.source):
        prompt = template.render(messages, tools=[WEATHER, TIME])
    else:  # the tools go into the system message, in the family's syntax
        system = f"{messages[0]['content']}\n\n{tools_prompt(family, TOOLS, choice)}"
        prompt = template.render([{**messages[0], "content": system}, *messages[1:]])
    assert case.history_call in prompt
    assert "Current weather in a city." in prompt
    assert _RESULT in prompt or json.dumps(_RESULT) in prompt
    assert prompt.index("What is the weather") < prompt.index(case.history_call)
    assert prompt.rindex("And the time in CET?") > prompt.index("It is 21 degrees in Paris.")
    # What the template writes for a call, the parser reads back as that call.
    text = case.canonical or case.history_call
    parsed = parse_output(family, TOOLS, text, prompt=case.prompt)
    assert [(call.name, json.loads(call.arguments)) for call in parsed.calls] == [
        ("get_weather", PARIS)
    ]
    assert parsed.content == ""


@pytest.mark.parametrize(
    "case", [case for case in CASES if case.family_object.reasoning], ids=case_id
)
def test_generation_prompt_opens_reasoning(chat_templates: ChatTemplates, case: Case) -> None:
    family = case.family_object
    assert family.reasoning is not None
    for name in case.templates:
        template = chat_templates.template(name)
        # Hermes' templates need tools; llama.cpp's DeepSeek-R1 one cannot render them here
        # (its `map | tojson` meets model.template's tojson, which takes no generator).
        tools = [WEATHER] if "Hermes" in name else None
        prompt = template.render([{"role": "user", "content": "Hi"}], tools=tools)
        assert family.reasoning.open_at_end(prompt) is (name in case.opens_reasoning), name


def test_multiple_calls_in_one_turn_reach_templates_that_render_one(
    chat_templates: ChatTemplates,
) -> None:
    calls = [
        {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": args}}
        for n, (name, args) in enumerate(
            [("get_weather", json.dumps(PARIS)), ("get_time", '{"zone": "CET"}')]
        )
    ]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_0", "content": _RESULT},
    ]
    for name in ("meta-llama-Llama-3.1-8B-Instruct.jinja", "openai-gpt-oss-120b.jinja"):
        template = chat_templates.template(name)
        family = detect_family(template.source)
        shape = history_shape(template, family)
        assert shape.one_call_per_turn, name
        prompt = template.render(shape.apply(messages, family), tools=[WEATHER, TIME])
        # Each call is followed by its own result, in call order.
        order = [_at(prompt, s) for s in ('"city": "Paris"', _RESULT, '"zone": "CET"', "12:00")]
        assert order == sorted(order), name


def _at(prompt: str, text: str) -> int:
    """Where ``text`` is in ``prompt``, as is or as a JSON string (templates differ)."""
    at = prompt.find(text)
    return at if at >= 0 else prompt.index(json.dumps(text))


def test_mistral_call_ids_become_nine_characters(chat_templates: ChatTemplates) -> None:
    template = chat_templates.template("mistralai-Mistral-Nemo-Instruct-2407.jinja", eos="</s>")
    family = detect_family(template.source)
    shape = history_shape(template, family)
    assert shape.short_ids
    prompt = template.render(shape.apply(_CONVERSATION, family), tools=[WEATHER, TIME])
    start = prompt.index('"id": "') + len('"id": "')
    call_id = prompt[start : start + 9]
    assert call_id.isalnum()
    assert f'"call_id": "{call_id}"' in prompt  # the result names the same id


def test_granite_calls_are_written_into_the_content(chat_templates: ChatTemplates) -> None:
    template = chat_templates.template("ibm-granite-granite-3.3-2B-Instruct.jinja")
    shape = history_shape(template, detect_family(template.source))
    assert shape.calls_in_content  # the template renders no tool_calls of its own


def test_tools_prompt_asks_for_the_family_syntax() -> None:
    choice = ToolChoice("required")
    deepseek = tools_prompt(FAMILIES["deepseek-r1"], TOOLS, choice)
    assert "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>" in deepseek
    assert "get_weather" in deepseek
    assert "You must call one or more functions now." in deepseek
    hermes = tools_prompt(FAMILIES["hermes"], TOOLS, choice)
    assert "<tool_call>" in hermes
    assert "<｜" not in hermes
    assert tools_prompt(FAMILIES["llama3"], TOOLS, ToolChoice("none")) == ""
