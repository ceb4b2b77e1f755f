from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model.template import (
    ChatTemplate,
    TemplateError,
    TemplateFailure,
    TemplateRejection,
    load_chat_template,
)

# Shaped like the ChatML templates shipped in SmolLM2/Qwen GGUFs: a default system turn when the
# conversation has none, one <|im_start|>role ... <|im_end|> block per message, then the prompt.
_GGUF_CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}\n"
    "{% if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
]
_WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
}


def _inline(source: str) -> ChatTemplate:
    return load_chat_template(None, override=source)


def test_gguf_template_renders_system_and_user() -> None:
    template = load_chat_template(_GGUF_CHATML)
    assert (template.name, template.stop) == ("gguf", ())
    assert template.render(_CONVERSATION) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_gguf_template_without_generation_prompt() -> None:
    template = load_chat_template(_GGUF_CHATML)
    assert template.render([{"role": "user", "content": "Hi"}], add_generation_prompt=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
    )


def test_special_tokens_are_available() -> None:
    template = load_chat_template(
        "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", bos_token="<s>", eos_token="</s>"
    )
    assert template.render([{"role": "user", "content": "x"}]) == "<s>x</s>"


def test_raise_exception_becomes_template_error_with_its_message() -> None:
    template = _inline(
        "{% if messages[0].role != 'user' %}"
        "{{ raise_exception('Conversation roles must start with user') }}{% endif %}"
    )
    with pytest.raises(TemplateRejection, match=r"^Conversation roles must start with user$"):
        template.render([{"role": "assistant", "content": "hi"}])


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.append({'role': 'system', 'content': 'injected'}) }}",
        "{{ raise_exception.__globals__['os'] }}",
    ],
)
def test_sandbox_blocks_unsafe_access(source: str) -> None:
    # A template defect, not the conversation's fault.
    with pytest.raises(TemplateFailure, match="unsafe"):
        _inline(source).render([{"role": "user", "content": "x"}])


def test_runtime_failure_names_the_template() -> None:
    template = load_chat_template("{{ messages[0].content + 1 }}")
    with pytest.raises(TemplateError, match="'gguf' cannot render") as caught:
        template.render([{"role": "user", "content": "x"}])
    assert type(caught.value) is TemplateError  # about the data: neither kind below


@pytest.mark.parametrize(
    "source",
    [
        "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
        "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    ],
)
def test_unbounded_recursion_is_a_template_failure(source: str) -> None:
    with pytest.raises(TemplateFailure, match=r"^chat template 'inline' failed: RecursionError"):
        _inline(source).render([{"role": "user", "content": "x"}])


def test_syntax_error_is_reported_at_load() -> None:
    with pytest.raises(TemplateError, match=r"'gguf' does not compile \(line 2\)"):
        load_chat_template("{% for m in messages %}\n{{ m.content }")


def test_tojson_keeps_non_ascii_and_html_and_takes_indent() -> None:
    template = _inline("{{ messages[0] | tojson }}|{{ {'a': [1]} | tojson(indent=2) }}")
    message = {"role": "user", "content": "<b>café</b> & 中"}
    assert template.render([message]) == (
        json.dumps(message, ensure_ascii=False) + "|" + json.dumps({"a": [1]}, indent=2)
    )


def test_tojson_writes_generators_as_lists() -> None:
    template = _inline("{{ messages | map(attribute='role') | tojson }}")
    roles = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert template.render(roles) == '["user", "assistant"]'


def test_variables_reach_the_template_but_never_replace_its_own() -> None:
    template = _inline("{{ enable_thinking }} {{ messages | length }} {{ add_generation_prompt }}")
    variables = {"enable_thinking": False, "messages": "forged", "add_generation_prompt": 7}
    assert template.render([{"role": "user", "content": "x"}], variables=variables) == (
        "False 1 True"
    )


def test_tools_are_passed_through() -> None:
    template = _inline(
        "{% if tools %}{% for tool in tools %}{{ tool | tojson }}{% endfor %}{% endif %}"
    )
    assert template.render([], tools=[_WEATHER_TOOL]) == json.dumps(_WEATHER_TOOL)


def test_tools_are_none_when_not_given() -> None:
    template = _inline("{{ tools is defined }} {{ tools is none }}")
    assert template.render([]) == "True True"


def test_strftime_now_and_loop_controls_and_generation_tag() -> None:
    template = _inline(
        "{{ strftime_now('%Y') | length }}"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}"
    )
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert template.render(messages) == "4a"


def test_chatml_builtin() -> None:
    template = load_chat_template(_GGUF_CHATML, override="chatml")
    assert (template.name, template.stop) == ("chatml", ("<|im_end|>",))
    messages: list[dict[str, Any]] = [
        *_CONVERSATION,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "sunny"},
    ]
    assert template.render(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n<|im_end|>\n"
        "<|im_start|>tool\nsunny<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_missing_gguf_template_falls_back_to_plain() -> None:
    template = load_chat_template(None)
    assert (template.name, template.stop) == ("plain", ("\nUser:",))
    messages = [
        *_CONVERSATION,
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Weather?"},
    ]
    assert template.render(messages) == (
        "Be brief.\n\nUser: Hi there\n\nAssistant: Hello.\n\nUser: Weather?\n\nAssistant:"
    )
    assert template.render(messages, add_generation_prompt=False) == (
        "Be brief.\n\nUser: Hi there\n\nAssistant: Hello.\n\nUser: Weather?"
    )


def test_plain_copes_with_null_content_and_other_roles() -> None:
    template = load_chat_template("   ", override="plain")
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "sunny"},
    ]
    assert template.render(messages) == (
        "User: Weather?\n\nAssistant: \n\nTool: sunny\n\nAssistant:"
    )
    assert template.render([]) == "Assistant:"


def test_override_by_file(tmp_path: Path) -> None:
    path = tmp_path / "template.jinja"
    path.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}")
    template = load_chat_template(_GGUF_CHATML, override=str(path))
    assert template.name == f"file:{path}"
    assert template.render(_CONVERSATION) == "[system] Be brief.[user] Hi there"


def test_override_inline() -> None:
    template = load_chat_template(_GGUF_CHATML, override="{{ messages | length }}")
    assert (template.name, template.stop) == ("inline", ())
    assert template.source == "{{ messages | length }}"
    assert template.render(_CONVERSATION) == "2"


def test_syntax_error_in_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.jinja"
    path.write_text("{% if %}")
    with pytest.raises(TemplateError, match=r"file:.*broken\.jinja"):
        load_chat_template(None, override=str(path))


@pytest.mark.parametrize("override", ["llama9", "/no/such/template.jinja", ""])
def test_unknown_override_names_the_choices(override: str) -> None:
    with pytest.raises(TemplateError, match="expected one of 'chatml', 'plain', a path"):
        load_chat_template(_GGUF_CHATML, override=override)
