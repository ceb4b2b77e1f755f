"""Each family with its real templates and realistic output, written from reading the
templates and the families' documented formats.

``history_call`` is an earlier call exactly as the family's template renders it in the prompt
(the rendering test checks that); it is also what the model writes for that call, so the parser
must read it and, when ``canonical`` is left at ``None``, the forced-call grammar must accept it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model.families import Family, family_by_name
from model.tools import Tool, parse_tools

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20, "description": "The city."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "description": "Days ahead."},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 10, "description": "Zone."}},
            "required": ["zone"],
        },
    },
}
TOOLS: tuple[Tool, ...] = parse_tools([WEATHER, TIME])
PARIS: dict[str, Any] = {"city": "Paris", "unit": "celsius"}
ROME: dict[str, Any] = {"city": "Rome", "unit": "celsius", "days": 2}
CET: dict[str, Any] = {"zone": "CET"}


@dataclass(frozen=True)
class Sample:
    """Output text and what it holds; ``prompt``: the end of the prompt it follows."""

    text: str
    reasoning: str = ""
    content: str = ""
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    prompt: str = ""


@dataclass(frozen=True)
class Case:
    family: str
    #: Real templates (llama.cpp's file names) detected as this family.
    templates: tuple[str, ...]
    #: The template the history test renders through, with its BOS and EOS texts.
    render: str
    bos: str
    eos: str
    history_call: str
    samples: tuple[Sample, ...]
    canonical: str | None = None
    #: The end of the prompt a forced answer follows (functionary's ">>>").
    prompt: str = ""
    #: Templates whose generation prompt opens the reasoning block.
    opens_reasoning: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def family_object(self) -> Family:
        return family_by_name(self.family)


def ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


CASES: tuple[Case, ...] = (
    Case(
        family="hermes",
        templates=(
            "Qwen-Qwen2.5-7B-Instruct.jinja",
            "Qwen-Qwen3-0.6B.jinja",
            "Qwen-QwQ-32B.jinja",
            "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
            "ibm-granite-granite-4.0.jinja",
        ),
        render="Qwen-Qwen3-0.6B.jinja",
        bos="",
        eos="<|im_end|>",
        history_call=(
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": '
            '"celsius"}}\n</tool_call>'
        ),
        samples=(
            Sample(
                "<think>\nThe user wants the weather in Paris, so I call get_weather.\n</think>"
                '\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
                '"unit": "celsius"}}\n</tool_call>',
                reasoning="The user wants the weather in Paris, so I call get_weather.",
                calls=(("get_weather", PARIS),),
            ),
            Sample(
                'I will check both.\n<tool_call>\n{"name": "get_weather", "arguments": '
                '{"city": "Rome", "unit": "celsius", "days": 2}}\n</tool_call>\n<tool_call>\n'
                '{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
                content="I will check both.\n",
                calls=(("get_weather", ROME), ("get_time", CET)),
            ),
            Sample(
                "<think>\n\n</think>\n\nIt is 21 degrees in Paris.",
                content="It is 21 degrees in Paris.",
            ),
            Sample(
                "Okay, the tool said 21 degrees.\n</think>\n\nIt is 21 degrees <b>today</b>.",
                reasoning="Okay, the tool said 21 degrees.",
                content="It is 21 degrees <b>today</b>.",
                prompt="<|im_start|>assistant\n<think>\n",
            ),
        ),
    ),
    Case(
        family="qwen3-coder",
        templates=("Qwen3-Coder.jinja", "Qwen3.5-4B.jinja"),
        render="Qwen3-Coder.jinja",
        bos="",
        eos="<|im_end|>",
        history_call=(
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
            "<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>"
        ),
        opens_reasoning=("Qwen3.5-4B.jinja",),
        samples=(
            Sample(
                "I'll look that up.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
                "Rome\n</parameter>\n<parameter=unit>\ncelsius\n</parameter>\n"
                "<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>",
                content="I'll look that up.\n\n",
                calls=(("get_weather", ROME),),
            ),
            Sample(
                "The user asks for Paris and the time.\n</think>\n\n<tool_call>\n"
                "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                "<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>\n"
                "<tool_call>\n<function=get_time>\n<parameter=zone>\nCET\n</parameter>\n"
                "</function>\n</tool_call>",
                reasoning="The user asks for Paris and the time.",
                calls=(("get_weather", PARIS), ("get_time", CET)),
                prompt="<|im_start|>assistant\n<think>\n",
            ),
            Sample(
                "<tool_call>\n<function=get_time>\n<parameter=zone>\nUTC+1 <b>\n"
                'x"y\n</parameter>\n</function>\n</tool_call>',
                calls=(("get_time", {"zone": 'UTC+1 <b>\nx"y'}),),
            ),
        ),
    ),
    Case(
        family="llama3",
        templates=(
            "meta-llama-Llama-3.1-8B-Instruct.jinja",
            "meta-llama-Llama-3.2-3B-Instruct.jinja",
            "meta-llama-Llama-3.3-70B-Instruct.jinja",
        ),
        render="meta-llama-Llama-3.1-8B-Instruct.jinja",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        history_call=(
            '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}'
        ),
        samples=(
            Sample(
                '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
                calls=(("get_weather", PARIS),),
            ),
            Sample(
                '<|python_tag|>{"type": "function", "name": "get_time", "parameters": '
                '{"zone": "CET"}}; {"name": "get_weather", "parameters": {"city": "Rome", '
                '"unit": "celsius", "days": 2}}',
                calls=(("get_time", CET), ("get_weather", ROME)),
            ),
            Sample(
                'It is 21 degrees. As JSON: {"name": "get_weather", "parameters": {}}',
                content='It is 21 degrees. As JSON: {"name": "get_weather", "parameters": {}}',
            ),
            Sample('{"temperature": 21}', content='{"temperature": 21}'),
        ),
    ),
    Case(
        family="mistral",
        templates=(
            "Mistral-Small-3.2-24B-Instruct-2506.jinja",
            "unsloth-mistral-Devstral-Small-2507.jinja",
        ),
        render="unsloth-mistral-Devstral-Small-2507.jinja",
        bos="<s>",
        eos="</s>",
        history_call='[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}',
        samples=(
            Sample(
                '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome", "unit": "celsius", "days": 2}'
                '[TOOL_CALLS]get_time[ARGS]{"zone": "CET"}',
                calls=(("get_weather", ROME), ("get_time", CET)),
            ),
            Sample(
                'Let me check.[TOOL_CALLS]get_time[CALL_ID]a1B2c3D4e[ARGS]{"zone": "CET"}',
                content="Let me check.",
                calls=(("get_time", CET),),
            ),
            Sample("It is [21] degrees.", content="It is [21] degrees."),
        ),
    ),
    Case(
        family="mistral-array",
        templates=("mistralai-Mistral-Nemo-Instruct-2407.jinja",),
        render="mistralai-Mistral-Nemo-Instruct-2407.jinja",
        bos="<s>",
        eos="</s>",
        history_call='[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": '
        '"celsius"}, "id": "',
        canonical='[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": '
        '"celsius"}}]',
        samples=(
            Sample(
                '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome", "unit": '
                '"celsius", "days": 2}, "id": "k9X2mP4qZ"}, {"name": "get_time", "arguments": '
                '{"zone": "CET"}}]',
                calls=(("get_weather", ROME), ("get_time", CET)),
            ),
            Sample(
                '[TOOL_CALLS] [{"name":"get_time","arguments":{"zone":"CET"}}]',
                calls=(("get_time", CET),),
            ),
        ),
    ),
    Case(
        family="magistral",
        templates=("mistralai-Ministral-3-14B-Reasoning-2512.jinja",),
        render="mistralai-Ministral-3-14B-Reasoning-2512.jinja",
        bos="<s>",
        eos="</s>",
        history_call='[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}',
        samples=(
            Sample(
                "[THINK]The user wants Paris weather; call the tool.[/THINK]"
                '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}',
                reasoning="The user wants Paris weather; call the tool.",
                calls=(("get_weather", PARIS),),
            ),
            Sample(
                "[THINK]Simple question.[/THINK]It is **21** degrees.",
                reasoning="Simple question.",
                content="It is **21** degrees.",
            ),
        ),
    ),
    Case(
        family="deepseek-r1",
        templates=(
            "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
            "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
            "llama-cpp-deepseek-r1.jinja",
        ),
        render="deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
        bos="<｜begin▁of▁sentence｜>",
        eos="<｜end▁of▁sentence｜>",
        history_call=(
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
            '```json\n{"city": "Paris", "unit": "celsius"}\n```<｜tool▁call▁end｜>'
            "<｜tool▁calls▁end｜>"
        ),
        opens_reasoning=(
            "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
            "llama-cpp-deepseek-r1.jinja",
        ),
        samples=(
            Sample(
                "Okay, the user wants the weather in Rome and the time.\n</think>\n\n"
                "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
                '```json\n{"city": "Rome", "unit": "celsius", "days": 2}\n```'
                "<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
                '```json\n{"zone": "CET"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
                reasoning="Okay, the user wants the weather in Rome and the time.",
                calls=(("get_weather", ROME), ("get_time", CET)),
                prompt="<｜Assistant｜><think>\n",
            ),
            Sample(
                "Simple.\n</think>\n\nIt is 21 degrees.",
                reasoning="Simple.",
                content="It is 21 degrees.",
                prompt="<｜Assistant｜><think>\n",
            ),
        ),
    ),
    Case(
        family="deepseek-v3.1",
        templates=("deepseek-ai-DeepSeek-V3.1.jinja",),
        render="deepseek-ai-DeepSeek-V3.1.jinja",
        bos="<｜begin▁of▁sentence｜>",
        eos="<｜end▁of▁sentence｜>",
        history_call=(
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
            '{"city": "Paris", "unit": "celsius"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
        ),
        samples=(
            Sample(
                "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>"
                '{"zone": "CET"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather'
                '<｜tool▁sep｜>{"city": "Rome", "unit": "celsius", "days": 2}'
                "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
                calls=(("get_time", CET), ("get_weather", ROME)),
                prompt="<｜Assistant｜><think></think>",
            ),
        ),
    ),
    Case(
        family="harmony",
        templates=("openai-gpt-oss-120b.jinja",),
        render="openai-gpt-oss-120b.jinja",
        bos="<|startoftext|>",
        eos="<|return|>",
        history_call=(
            "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>"
            '{"city": "Paris", "unit": "celsius"}<|call|>'
        ),
        canonical=(
            "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
            '{"city": "Paris", "unit": "celsius"}<|call|>'
        ),
        samples=(
            Sample(
                "<|channel|>analysis<|message|>User asks weather in Paris. Use get_weather."
                "<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather "
                '<|constrain|>json<|message|>{"city":"Paris","unit":"celsius"}',
                reasoning="User asks weather in Paris. Use get_weather.",
                calls=(("get_weather", PARIS),),
                prompt="<|start|>assistant",
            ),
            Sample(
                "<|channel|>analysis<|message|>Tool said 21.<|end|><|start|>assistant"
                "<|channel|>final<|message|>It is 21 degrees in Paris.",
                reasoning="Tool said 21.",
                content="It is 21 degrees in Paris.",
                prompt="<|start|>assistant",
            ),
            Sample(
                ' to=functions.get_time<|channel|>commentary json<|message|>{"zone": "CET"}'
                "<|call|>",
                calls=(("get_time", CET),),
                prompt="<|start|>assistant",
            ),
        ),
    ),
    Case(
        family="granite",
        templates=("ibm-granite-granite-3.3-2B-Instruct.jinja",),
        render="ibm-granite-granite-3.3-2B-Instruct.jinja",
        bos="",
        eos="<|end_of_text|>",
        history_call=(
            '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris", "unit": '
            '"celsius"}}]'
        ),
        samples=(
            Sample(
                '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Rome", "unit": '
                '"celsius", "days": 2}}, {"name": "get_time", "arguments": {"zone": "CET"}}]',
                calls=(("get_weather", ROME), ("get_time", CET)),
            ),
            Sample(
                "<think>The tool said 21.</think><response>It is 21 degrees.</response>",
                reasoning="The tool said 21.",
                content="It is 21 degrees.",
            ),
        ),
    ),
    Case(
        family="functionary-v3.1",
        templates=("meetkai-functionary-medium-v3.1.jinja",),
        render="meetkai-functionary-medium-v3.1.jinja",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        history_call='<function=get_weather>{"city": "Paris", "unit": "celsius"}</function>',
        samples=(
            Sample(
                '<function=get_time>{"zone": "CET"}</function>',
                calls=(("get_time", CET),),
            ),
        ),
    ),
    Case(
        family="functionary-v3.2",
        templates=("meetkai-functionary-medium-v3.2.jinja",),
        render="meetkai-functionary-medium-v3.2.jinja",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        history_call='>>>get_weather\n{"city": "Paris", "unit": "celsius"}',
        canonical='get_weather\n{"city": "Paris", "unit": "celsius"}',
        prompt="<|start_header_id|>assistant<|end_header_id|>\n\n>>>",
        samples=(
            Sample(
                'all\nLet me check that.>>>get_weather\n{"city": "Rome", "unit": "celsius", '
                '"days": 2}>>>get_time\n{"zone": "CET"}',
                content="Let me check that.",
                calls=(("get_weather", ROME), ("get_time", CET)),
                prompt="<|start_header_id|>assistant<|end_header_id|>\n\n>>>",
            ),
            Sample(
                "all\nIt is 21 degrees.",
                content="It is 21 degrees.",
                prompt="<|start_header_id|>assistant<|end_header_id|>\n\n>>>",
            ),
        ),
    ),
)


def case_id(case: Case) -> str:
    return case.family
