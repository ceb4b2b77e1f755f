"""Unit tests for request parsing (stream.pipeline.parse_json and the chat and completions
adapters' ``parse``): every client mistake is a 400 naming the parameter."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.params import SamplingParams
from stream.adapters.chat import ChatRequest, ResponseFormat
from stream.adapters.chat import parse as parse_chat
from stream.adapters.completions import CompletionRequest
from stream.adapters.completions import parse as parse_completion
from stream.errors import InvalidRequest
from stream.pipeline import parse_json

Parser = Callable[[dict[str, Any]], ChatRequest | CompletionRequest]

USER = [{"role": "user", "content": "Hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": USER, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "Once upon a time", **fields}


# Every common parameter is checked through both endpoints.
ENDPOINTS: list[tuple[Parser, Callable[..., dict[str, Any]]]] = [
    (parse_chat, chat),
    (parse_completion, completion),
]
BOTH = pytest.mark.parametrize(("parse", "body"), ENDPOINTS, ids=["chat", "completion"])


def refused(parse: Parser, body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.message
    assert "\n" not in error.message
    assert error.body() == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": error.param,
            "code": error.code,
        }
    }
    return error


def refused_json(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_json(raw)
    assert caught.value.status == 400
    return caught.value


# --- parse_json ---------------------------------------------------------------------------------


def test_parse_json_returns_the_object() -> None:
    assert parse_json(b'{"a": [1, "\xc3\xa9"]}') == {"a": [1, "é"]}


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a": }', b"{'a': 1}", b'{"a": 1} x'])
def test_parse_json_invalid_json_is_a_400_with_where(raw: bytes) -> None:
    error = refused_json(raw)
    assert "JSON" in error.message
    assert "line 1 column" in error.message


def test_parse_json_invalid_utf8_is_a_400() -> None:
    error = refused_json(b'{"a": "\xff\xfe\xfd"}')
    assert "UTF-8" in error.message


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"text"', b"3", b"null", b"true"])
def test_parse_json_non_object_is_a_400(raw: bytes) -> None:
    assert "object" in refused_json(raw).message


def test_parse_json_deep_nesting_is_a_400_not_a_crash() -> None:
    # Well under the default 8 MiB body limit, and deeper than the parser's recursion limit.
    error = refused_json(b"[" * 100_000)
    assert error.status == 400


# --- messages -----------------------------------------------------------------------------------


def test_minimal_chat_defaults() -> None:
    request = parse_chat({"messages": USER})
    assert request == ChatRequest(
        model=None,
        n=1,
        stream=False,
        include_usage=False,
        resumable=None,
        max_tokens=None,
        stop=(),
        sampling=SamplingParams(),
        ignore_eos=False,
        timeout=None,
        messages=({"role": "user", "content": "Hi"},),
    )


def test_missing_messages() -> None:
    error = refused(parse_chat, {"model": "m"})
    assert error.param == "messages"
    assert "messages" in error.message


@pytest.mark.parametrize("messages", [[], {}, "Hi", 3, {"role": "user", "content": "Hi"}])
def test_messages_must_be_a_non_empty_array(messages: Any) -> None:
    assert refused(parse_chat, chat(messages=messages)).param == "messages"


@pytest.mark.parametrize("message", ["Hi", ["user", "Hi"], None, 1])
def test_each_message_must_be_an_object(message: Any) -> None:
    error = refused(parse_chat, chat(messages=[*USER, message]))
    assert error.param == "messages[1]"


@pytest.mark.parametrize("role", ["bot", "", None, 3, "User"])
def test_bad_role(role: Any) -> None:
    error = refused(parse_chat, chat(messages=[*USER, {"role": role, "content": "x"}]))
    assert error.param == "messages[1].role"
    assert "messages[1].role" in error.message


@pytest.mark.parametrize("role", [["user"], {"name": "user"}])
def test_unhashable_role_is_a_400_not_a_crash(role: Any) -> None:
    error = refused(parse_chat, chat(messages=[{"role": role, "content": "x"}]))
    assert error.param == "messages[0].role"


def test_missing_role() -> None:
    assert refused(parse_chat, chat(messages=[{"content": "x"}])).param == "messages[0].role"


@pytest.mark.parametrize("role", ["system", "developer", "user", "tool"])
def test_missing_content(role: str) -> None:
    for message in ({"role": role}, {"role": role, "content": None}):
        error = refused(parse_chat, chat(messages=[*USER, message]))
        assert error.param == "messages[1].content"


def test_assistant_content_may_be_null() -> None:
    request = parse_chat(chat(messages=[*USER, {"role": "assistant", "content": None}]))
    assert request.messages[1] == {"role": "assistant", "content": None}


@pytest.mark.parametrize("content", [3, {"type": "text", "text": "x"}, True])
def test_content_of_a_wrong_type(content: Any) -> None:
    error = refused(parse_chat, chat(messages=[{"role": "user", "content": content}]))
    assert error.param == "messages[0].content"


def test_text_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]
    request = parse_chat(chat(messages=[{"role": "user", "content": parts}]))
    assert request.messages == ({"role": "user", "content": "Hello, world"},)


def test_empty_parts_give_empty_text() -> None:
    request = parse_chat(chat(messages=[{"role": "user", "content": []}]))
    assert request.messages == ({"role": "user", "content": ""},)


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
        {"type": "text"},
        {"type": "text", "text": 3},
        {"text": "no type"},
        "plain string",
    ],
)
def test_non_text_parts_are_refused_by_position(part: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]},
    ]
    error = refused(parse_chat, chat(messages=messages))
    assert error.param == "messages[1].content[1]"
    assert "messages[1].content[1]" in error.message


def test_roles_are_kept_and_developer_becomes_system() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "Hello"},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ]
    request = parse_chat(chat(messages=messages))
    # Names and tool-call ids travel on: templates and the tool format use them.
    assert request.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "Hello"},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    )


def test_assistant_tool_calls_are_kept_in_openai_shape() -> None:
    call = {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]}]
    assert parse_chat(chat(messages=messages)).messages[1]["tool_calls"] == [call]


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "assistant", "content": None, "tool_calls": {}}, "messages[1].tool_calls"),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            "messages[1].tool_calls[0]",
        ),
        ({"role": "tool", "content": "42"}, "messages[1].tool_call_id"),
    ],
)
def test_malformed_tool_turns_are_refused(message: dict[str, Any], param: str) -> None:
    assert refused(parse_chat, chat(messages=[*USER, message])).param == param


# --- prompt ---------------------------------------------------------------------------------------


def test_missing_prompt() -> None:
    error = refused(parse_completion, {"model": "m"})
    assert error.param == "prompt"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (["text"], "text"),
        ([1, 2, 3], (1, 2, 3)),
        ([[4, 5]], (4, 5)),
        ([0], (0,)),
    ],
)
def test_prompt_forms(prompt: Any, expected: str | tuple[int, ...]) -> None:
    assert parse_completion(completion(prompt=prompt)).prompt == expected


@pytest.mark.parametrize(
    "prompt",
    [[], [[]], ["a", "b"], [[1], [2]], [1, "a"], [True, False], [1.0], [[True]], 3, {"a": 1}],
)
def test_bad_prompts(prompt: Any) -> None:
    assert refused(parse_completion, completion(prompt=prompt)).param == "prompt"


# --- max_tokens ---------------------------------------------------------------------------------


def test_completions_default_to_16_tokens() -> None:
    assert parse_completion(completion()).max_tokens == 16
    assert parse_completion(completion(max_tokens=None)).max_tokens == 16
    assert parse_completion(completion(max_tokens=200)).max_tokens == 200


def test_chat_has_no_default_limit() -> None:
    assert parse_chat(chat()).max_tokens is None
    assert parse_chat(chat(max_tokens=5)).max_tokens == 5
    assert parse_chat(chat(max_completion_tokens=7)).max_tokens == 7


def test_max_completion_tokens_is_preferred() -> None:
    assert parse_chat(chat(max_tokens=5, max_completion_tokens=9)).max_tokens == 9
    assert parse_chat(chat(max_tokens=5, max_completion_tokens=None)).max_tokens == 5


def test_max_tokens_is_still_checked_next_to_max_completion_tokens() -> None:
    error = refused(parse_chat, chat(max_completion_tokens=9, max_tokens="lots"))
    assert error.param == "max_tokens"


def test_max_completion_tokens_is_chat_only() -> None:
    assert refused(parse_completion, completion(max_completion_tokens=5)).param == (
        "max_completion_tokens"
    )


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", ["10", 10.0, 2.5, True, [10], 0, -1])
def test_chat_token_limits_are_positive_integers(name: str, value: Any) -> None:
    assert refused(parse_chat, chat(**{name: value})).param == name


@pytest.mark.parametrize("value", ["10", 10.0, True, 0, -3])
def test_completion_max_tokens_is_a_positive_integer(value: Any) -> None:
    assert refused(parse_completion, completion(max_tokens=value)).param == "max_tokens"


# --- type errors name the parameter -------------------------------------------------------------

WRONG_TYPES: list[tuple[str, Any]] = [
    ("temperature", "0.5"),
    ("temperature", True),
    ("temperature", [1]),
    ("temperature", {"v": 1}),
    ("top_p", "1"),
    ("top_p", False),
    ("min_p", "0.1"),
    ("repeat_penalty", "1.1"),
    ("presence_penalty", True),
    ("frequency_penalty", "0"),
    ("seed", "42"),
    ("seed", 4.2),
    ("seed", 42.0),
    ("seed", True),
    ("top_k", "40"),
    ("top_k", 4.5),
    ("stream", "true"),
    ("stream", 1),
    ("stream", 0),
    ("ignore_eos", "yes"),
    ("stop", 3),
    ("stop", ["a", 3]),
    ("stop", {"a": 1}),
    ("stop", [None]),
    ("n", "1"),
    ("n", True),
    ("model", 3),
    ("model", ["m"]),
    ("logit_bias", [1, 2]),
    ("logit_bias", "50256:-100"),
    ("stream_options", "include_usage"),
    ("stream_options", []),
]


@BOTH
@pytest.mark.parametrize(("name", "value"), WRONG_TYPES)
def test_wrong_types_are_a_400_naming_the_parameter(
    parse: Parser, body: Callable[..., dict[str, Any]], name: str, value: Any
) -> None:
    fields: dict[str, Any] = {name: value}
    if name == "stream_options":
        fields["stream"] = True
    error = refused(parse, body(**fields))
    assert error.param == name
    assert name in error.message


@BOTH
@pytest.mark.parametrize(
    "name", ["temperature", "top_p", "min_p", "repeat_penalty", "presence_penalty", "timeout"]
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(
    parse: Parser, body: Callable[..., dict[str, Any]], name: str, value: float
) -> None:
    # Python's json accepts NaN and Infinity literals; they must not reach the sampler.
    raw = json.dumps(body(**{name: value})).encode()
    assert refused(parse, parse_json(raw)).param == name


@BOTH
@pytest.mark.parametrize(
    "name", ["temperature", "top_p", "presence_penalty", "frequency_penalty", "timeout"]
)
def test_huge_integers_are_a_400_not_a_crash(
    parse: Parser, body: Callable[..., dict[str, Any]], name: str
) -> None:
    raw = json.dumps(body()).encode()[:-1] + f', "{name}": 1{"0" * 400}}}'.encode()
    assert refused(parse, parse_json(raw)).param == name


# --- ranges ---------------------------------------------------------------------------------------

RANGES: list[tuple[str, float, float]] = [
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("min_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
    ("repeat_penalty", 0.01, 10.0),  # 0 multiplies a grammar's -inf into NaN
]


@BOTH
@pytest.mark.parametrize(("name", "lo", "hi"), RANGES)
def test_number_ranges_inclusive(
    parse: Parser, body: Callable[..., dict[str, Any]], name: str, lo: float, hi: float
) -> None:
    for value in (lo, hi, (lo + hi) / 2, int(hi)):
        assert getattr(parse(body(**{name: value})).sampling, name) == value
    for value in (lo - 0.01, hi + 0.01, hi + 1, lo - 1):
        error = refused(parse, body(**{name: value}))
        assert error.param == name
        assert name in error.message


@given(temperature=st.floats(0.0, 2.0), top_p=st.floats(0.0, 1.0))
def test_any_number_in_range_round_trips(temperature: float, top_p: float) -> None:
    request = parse_chat(chat(temperature=temperature, top_p=top_p))
    assert request.sampling.temperature == temperature
    assert request.sampling.top_p == top_p
    assert isinstance(request.sampling.temperature, float)


@given(
    name=st.sampled_from(["presence_penalty", "frequency_penalty"]),
    value=st.floats(-2.0, 2.0) | st.integers(-2, 2),
)
def test_any_penalty_in_range_round_trips_as_float(name: str, value: float) -> None:
    sampling = parse_completion(completion(**{name: value})).sampling
    assert getattr(sampling, name) == value
    assert isinstance(getattr(sampling, name), float)


@given(value=st.floats(allow_nan=False).filter(lambda v: not 0.0 <= v <= 2.0))
def test_any_temperature_out_of_range_is_refused(value: float) -> None:
    assert refused(parse_chat, chat(temperature=value)).param == "temperature"


def test_sampling_defaults_follow_openai() -> None:
    sampling = parse_chat(chat()).sampling
    assert (sampling.temperature, sampling.top_p) == (1.0, 1.0)
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.0, 0.0)
    assert sampling.seed is None
    assert dict(sampling.logit_bias) == {}


def test_every_sampling_field_is_read() -> None:
    request = parse_chat(
        chat(
            temperature=0,
            top_p=0.9,
            top_k=40,
            min_p=0.05,
            seed=1234,
            repeat_penalty=1.1,
            presence_penalty=-0.5,
            frequency_penalty=0.5,
            logit_bias={"50256": -100, "13": 2.5},
        )
    )
    assert request.sampling == SamplingParams(
        temperature=0.0,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        seed=1234,
        repeat_penalty=1.1,
        presence_penalty=-0.5,
        frequency_penalty=0.5,
        logit_bias={50256: -100.0, 13: 2.5},
    )
    assert request.sampling.greedy


@pytest.mark.parametrize(
    ("seed", "expected"),
    [(0, 0), (42, 42), (-1, 0xFFFFFFFF), (2**32 + 5, 5), (2**64 - 1, 0xFFFFFFFF)],
)
def test_seed_is_folded_to_32_bits(seed: int, expected: int) -> None:
    assert parse_chat(chat(seed=seed)).sampling.seed == expected


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_seed_out_of_range(seed: int) -> None:
    assert refused(parse_chat, chat(seed=seed)).param == "seed"


def test_top_k_must_not_be_negative() -> None:
    assert refused(parse_chat, chat(top_k=-1)).param == "top_k"
    assert parse_chat(chat(top_k=0)).sampling.top_k == 0


@pytest.mark.parametrize("bias", [-100, 100, 0, -100.0, 37.5])
def test_logit_bias_range_inclusive(bias: float) -> None:
    assert dict(parse_chat(chat(logit_bias={"7": bias})).sampling.logit_bias) == {7: bias}


@pytest.mark.parametrize("bias", [-100.5, 101, 1e9])
def test_logit_bias_out_of_range(bias: float) -> None:
    error = refused(parse_chat, chat(logit_bias={"7": bias}))
    assert error.param is not None
    assert error.param.startswith("logit_bias")
    assert "logit_bias" in error.message


@pytest.mark.parametrize("bias", ["-100", True, [1]])
def test_logit_bias_value_of_a_wrong_type(bias: Any) -> None:
    error = refused(parse_chat, chat(logit_bias={"7": bias}))
    assert error.param is not None
    assert error.param.startswith("logit_bias")
    assert "logit_bias" in error.message


@pytest.mark.parametrize("key", ["token", "", "1.5", "0x10", " 7", "-"])
def test_logit_bias_key_must_be_a_token_id(key: str) -> None:
    error = refused(parse_chat, chat(logit_bias={key: 1}))
    assert error.param == "logit_bias"


@pytest.mark.parametrize("key", ["--5", "²", "1²"])
def test_logit_bias_odd_digit_keys_are_a_400_not_a_crash(key: str) -> None:
    assert refused(parse_chat, chat(logit_bias={key: 1})).param == "logit_bias"


# --- stop -----------------------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (None, ()),
        ("\n", ("\n",)),
        ([], ()),
        (["a"], ("a",)),
        (["a", "b", "c", "d"], ("a", "b", "c", "d")),
        ("", ()),
        (["", "x"], ("x",)),
    ],
)
def test_stop_string_or_list(
    parse: Parser, body: Callable[..., dict[str, Any]], stop: Any, expected: tuple[str, ...]
) -> None:
    assert parse(body(stop=stop)).stop == expected


@BOTH
def test_at_most_four_stops(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    error = refused(parse, body(stop=["a", "b", "c", "d", "e"]))
    assert error.param == "stop"
    assert "4" in error.message


# --- unsupported, accepted and unknown parameters ---------------------------------------------

UNSUPPORTED: list[tuple[str, Any]] = [
    ("functions", [{"name": "f"}]),
    ("function_call", "auto"),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}),
]


@pytest.mark.parametrize(("name", "value"), UNSUPPORTED)
def test_unsupported_chat_parameters_are_refused_by_name(name: str, value: Any) -> None:
    error = refused(parse_chat, chat(**{name: value}))
    assert error.param == name
    assert name in error.message


@pytest.mark.parametrize(("name", "value"), [("best_of", 2), ("suffix", "end"), ("echo", True)])
def test_unsupported_completion_parameters_are_refused_by_name(name: str, value: Any) -> None:
    error = refused(parse_completion, completion(**{name: value}))
    assert error.param == name


@pytest.mark.parametrize(("name", "value"), [("echo", False), ("audio", None)])
def test_unsupported_parameters_left_unset_are_fine(name: str, value: Any) -> None:
    parse_chat(chat(**{name: value}))
    parse_completion(completion(**{name: value}))


def test_tools_pass_through_to_the_service() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    request = parse_chat(chat(tools=tools, tool_choice="auto", parallel_tool_calls=False))
    assert (request.tools, request.tool_choice, request.parallel_tool_calls) == (
        tools,
        "auto",
        False,
    )
    assert refused(parse_completion, completion(tools=tools)).param == "tools"


def test_several_unsupported_parameters_are_all_named() -> None:
    error = refused(parse_chat, chat(modalities=["audio"], audio={"voice": "alloy"}))
    assert "modalities" in error.message
    assert "audio" in error.message


@BOTH
@pytest.mark.parametrize("n", [2, 128])
def test_n_greater_than_one(parse: Parser, body: Callable[..., dict[str, Any]], n: int) -> None:
    # Accepted here; the service checks n against its slots.
    assert parse(body(n=n)).n == n


@BOTH
@pytest.mark.parametrize("n", [0, -1, 129])
def test_n_out_of_range(parse: Parser, body: Callable[..., dict[str, Any]], n: int) -> None:
    assert refused(parse, body(n=n)).param == "n"


@BOTH
def test_n_of_one_is_fine(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    parse(body(n=1))
    parse(body(n=None))


def test_chat_logprobs() -> None:
    assert parse_chat(chat(logprobs=True)).logprobs == 0
    assert parse_chat(chat(logprobs=True, top_logprobs=20)).logprobs == 20
    assert parse_chat(chat(logprobs=False)).logprobs is None
    assert refused(parse_chat, chat(top_logprobs=2)).param == "top_logprobs"
    assert refused(parse_chat, chat(logprobs=True, top_logprobs=21)).param == "top_logprobs"
    assert refused(parse_chat, chat(logprobs=3)).param == "logprobs"


def test_completion_logprobs() -> None:
    assert parse_completion(completion(logprobs=3)).logprobs == 3
    assert parse_completion(completion(logprobs=0)).logprobs == 0
    assert parse_completion(completion(logprobs=None)).logprobs is None
    assert refused(parse_completion, completion(logprobs=6)).param == "logprobs"


def test_response_formats() -> None:
    assert parse_chat(chat(response_format={"type": "json_object"})).response_format == (
        ResponseFormat("json_object")
    )
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    spec = {"name": "x", "schema": schema, "strict": True}
    parsed = parse_chat(chat(response_format={"type": "json_schema", "json_schema": spec}))
    assert parsed.response_format == ResponseFormat("json_schema", schema, True)


@pytest.mark.parametrize(
    ("fmt", "param"),
    [
        ("json_object", "response_format"),
        ({}, "response_format"),
        ({"type": "yaml"}, "response_format"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        # A name is optional (llama.cpp server's clients send none), but must be a string.
        (
            {"type": "json_schema", "json_schema": {"name": 3, "schema": {}}},
            "response_format.json_schema",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": []}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_malformed_response_formats_are_refused(fmt: Any, param: str) -> None:
    assert refused(parse_chat, chat(response_format=fmt)).param == param


def test_response_format_text_is_fine() -> None:
    parse_chat(chat(response_format={"type": "text"}))


@BOTH
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user", "user-1234"),
        ("metadata", {"team": "a"}),
        ("store", False),
        ("service_tier", "auto"),
        ("prompt_cache_key", "k"),
        ("safety_identifier", "s"),
    ],
)
def test_bookkeeping_parameters_are_accepted_and_ignored(
    parse: Parser, body: Callable[..., dict[str, Any]], name: str, value: Any
) -> None:
    assert parse(body(**{name: value})) == parse(body())


@BOTH
@pytest.mark.parametrize("name", ["temprature", "Temperature", "foo", "messages_"])
def test_unknown_fields_are_refused_by_name(
    parse: Parser, body: Callable[..., dict[str, Any]], name: str
) -> None:
    error = refused(parse, body(**{name: 1}))
    assert error.param == name
    assert name in error.message


def test_endpoint_specific_fields_do_not_cross_over() -> None:
    assert refused(parse_completion, completion(messages=USER)).param == "messages"
    assert refused(parse_completion, completion(response_format={"type": "text"})).param == (
        "response_format"
    )
    assert refused(parse_chat, chat(prompt="x")).param == "prompt"


# --- streaming ------------------------------------------------------------------------------------


@BOTH
def test_stream_and_include_usage(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    plain = parse(body())
    assert (plain.stream, plain.include_usage) == (False, False)
    streamed = parse(body(stream=True))
    assert (streamed.stream, streamed.include_usage) == (True, False)
    usage = parse(body(stream=True, stream_options={"include_usage": True}))
    assert (usage.stream, usage.include_usage) == (True, True)
    off = parse(body(stream=True, stream_options={"include_usage": False}))
    assert (off.stream, off.include_usage) == (True, False)
    assert parse(body(stream=True, stream_options={})).include_usage is False


@BOTH
@pytest.mark.parametrize("stream", [False, None])
def test_stream_options_without_stream(
    parse: Parser, body: Callable[..., dict[str, Any]], stream: bool | None
) -> None:
    fields: dict[str, Any] = {"stream_options": {"include_usage": True}}
    if stream is not None:
        fields["stream"] = stream
    error = refused(parse, body(**fields))
    assert error.param == "stream_options"


@BOTH
def test_null_stream_options_without_stream_is_fine(
    parse: Parser, body: Callable[..., dict[str, Any]]
) -> None:
    assert parse(body(stream_options=None)).stream is False


@BOTH
def test_include_usage_must_be_a_boolean(
    parse: Parser, body: Callable[..., dict[str, Any]]
) -> None:
    error = refused(parse, body(stream=True, stream_options={"include_usage": "yes"}))
    assert "include_usage" in error.message


@BOTH
@pytest.mark.parametrize("timeout", [0.5, 30, 86_400.0])
def test_timeout_in_seconds(
    parse: Parser, body: Callable[..., dict[str, Any]], timeout: float
) -> None:
    assert parse(body()).timeout is None
    assert parse(body(timeout=None)).timeout is None
    parsed = parse(body(timeout=timeout)).timeout
    assert parsed == timeout
    assert isinstance(parsed, float)


@BOTH
@pytest.mark.parametrize("timeout", [0, 0.0, -1, "30", True, [30]])
def test_timeout_must_be_a_positive_number(
    parse: Parser, body: Callable[..., dict[str, Any]], timeout: Any
) -> None:
    error = refused(parse, body(timeout=timeout))
    assert error.param == "timeout"
    assert "timeout" in error.message


@BOTH
def test_ignore_eos(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    assert parse(body()).ignore_eos is False
    assert parse(body(ignore_eos=True)).ignore_eos is True


@BOTH
def test_model_is_optional(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    fields = body()
    del fields["model"]
    assert parse(fields).model is None
    assert parse(body()).model == "m"


def test_a_request_through_json() -> None:
    raw = json.dumps(
        {
            "model": "smollm2",
            "messages": [
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": [{"type": "text", "text": "Bonjour ✓"}]},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": 32,
            "temperature": 0.2,
            "stop": "\n\n",
            "user": "u-1",
        },
        ensure_ascii=False,
    ).encode()
    request = parse_chat(parse_json(raw))
    assert request.model == "smollm2"
    assert request.messages == (
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Bonjour ✓"},
    )
    assert (request.stream, request.include_usage, request.max_tokens) == (True, True, 32)
    assert request.stop == ("\n\n",)
    assert request.sampling.temperature == 0.2
