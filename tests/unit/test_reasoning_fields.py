"""The chat request's reasoning fields: ``reasoning_effort``, ``chat_template_kwargs`` and
``thinking_budget``, validated (400 naming the parameter) and mapped as documented; and how
the chat encoder shows reasoning (``reasoning_content`` and ``reasoning``, streamed and whole,
and ``usage.completion_tokens_details.reasoning_tokens``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from model.events import Delta, Event, Finished, Usage
from stream.adapters.chat import ChatEncoder, parse
from stream.adapters.reasoning import MAX_TEMPLATE_KWARGS, MINIMAL_BUDGET, ReasoningOptions
from stream.errors import InvalidRequest

ASK = [{"role": "user", "content": "Hi"}]


def _options(**fields: Any) -> ReasoningOptions:
    return parse({"messages": ASK, **fields}).reasoning


def _refused(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse({"messages": ASK, **fields})
    assert caught.value.status == 400
    return caught.value


def test_nothing_asked_is_nothing_set() -> None:
    assert _options() == ReasoningOptions({}, None)


@pytest.mark.parametrize(
    ("effort", "kwargs", "budget"),
    [
        ("none", {"enable_thinking": False}, 0),
        ("minimal", {}, MINIMAL_BUDGET),
        ("low", {"reasoning_effort": "low"}, None),
        ("medium", {"reasoning_effort": "medium"}, None),
        ("high", {"reasoning_effort": "high"}, None),
    ],
)
def test_reasoning_effort_maps_to_template_variables_and_budgets(
    effort: str, kwargs: dict[str, Any], budget: int | None
) -> None:
    assert _options(reasoning_effort=effort) == ReasoningOptions(kwargs, budget)


def test_explicit_fields_win_over_the_effort() -> None:
    options = _options(
        reasoning_effort="none",
        thinking_budget=50,
        chat_template_kwargs={"enable_thinking": True, "custom": "x"},
    )
    assert options == ReasoningOptions({"enable_thinking": True, "custom": "x"}, 50)


@pytest.mark.parametrize("effort", ["extreme", "", 3, True, ["low"]])
def test_an_unknown_effort_is_refused_by_name(effort: Any) -> None:
    assert _refused(reasoning_effort=effort).param == "reasoning_effort"


@pytest.mark.parametrize("budget", [-1, 1.5, "10", True, 2**31])
def test_a_bad_thinking_budget_is_refused_by_name(budget: Any) -> None:
    assert _refused(thinking_budget=budget).param == "thinking_budget"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ([1], "chat_template_kwargs"),
        ("enable_thinking", "chat_template_kwargs"),
        ({"enable_thinking": {"a": 1}}, "chat_template_kwargs.enable_thinking"),
        ({"enable_thinking": [True]}, "chat_template_kwargs.enable_thinking"),
        ({"x": "y" * 5000}, "chat_template_kwargs.x"),
        ({"x": 2**60}, "chat_template_kwargs.x"),
        ({"messages": []}, "chat_template_kwargs"),
        ({"tools": None}, "chat_template_kwargs"),
        ({"bad name": 1}, "chat_template_kwargs"),
        ({"1st": 1}, "chat_template_kwargs"),
        ({f"k{i}": i for i in range(MAX_TEMPLATE_KWARGS + 1)}, "chat_template_kwargs"),
    ],
)
def test_template_kwargs_junk_is_refused_naming_the_key(kwargs: Any, param: str) -> None:
    error = _refused(chat_template_kwargs=kwargs)
    assert error.param == param


def test_template_kwargs_take_json_scalars() -> None:
    kwargs = {"enable_thinking": False, "n": 3, "x": 0.5, "s": "text", "z": None}
    assert _options(chat_template_kwargs=kwargs).template_kwargs == kwargs


def _chunks(encoder: ChatEncoder, *events: Any) -> list[Any]:
    return [
        json.loads(document.data)
        for event in events
        for document in encoder.encode(event)
        if document.data != b"[DONE]"
    ]


def test_reasoning_streams_as_reasoning_content_and_reasoning() -> None:
    encoder = ChatEncoder("m", include_usage=True)
    usage = Usage(5, 4, 0, reasoning_tokens=3)
    chunks = _chunks(
        encoder,
        Delta("", 1, reasoning="Let me"),
        Delta("", 1, reasoning=" think"),
        Delta("", 1),  # the block's end: nothing to show
        Delta("Hi", 1),
        Finished("stop", usage),
    )
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"reasoning_content": "Let me", "reasoning": "Let me"}
    assert deltas[1] == {"reasoning_content": " think", "reasoning": " think"}
    assert deltas[2] == {"content": "Hi"}
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}


def test_a_whole_message_carries_its_reasoning() -> None:
    encoder = ChatEncoder("m")
    usage = Usage(5, 4, 0, reasoning_tokens=2)
    events: list[Event] = [
        Delta("", 1, reasoning="Hmm."),
        Delta("", 1),
        Delta("Yes.", 2),
        Finished("stop", usage),
    ]
    body = json.loads(encoder.whole(events).data)
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] == message["reasoning"] == "Hmm."
    assert message["content"] == "Yes."
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}


def test_no_reasoning_no_reasoning_fields() -> None:
    body = json.loads(
        ChatEncoder("m").whole([Delta("Yes.", 1), Finished("stop", Usage(5, 1))]).data
    )
    assert "reasoning_content" not in body["choices"][0]["message"]
    assert "completion_tokens_details" not in body["usage"]
