"""llama.cpp server's request extensions, as the chat and completions adapters parse them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stream.adapters.chat import ChatRequest, ResponseFormat
from stream.adapters.chat import parse as parse_chat
from stream.adapters.completions import CompletionRequest
from stream.adapters.completions import parse as parse_completion
from stream.errors import InvalidRequest

Parser = Callable[[dict[str, Any]], ChatRequest | CompletionRequest]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Hi"}], **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"prompt": "Once", **fields}


BOTH = pytest.mark.parametrize(
    ("parse", "body"), [(parse_chat, chat), (parse_completion, completion)], ids=["chat", "text"]
)


def refused(parse: Parser, body: dict[str, Any]) -> str | None:
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    return caught.value.param


@BOTH
def test_hints_are_accepted(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    parse(body(cache_prompt=True, id_slot=3))
    parse(body(cache_prompt=False, id_slot=-1))
    assert refused(parse, body(cache_prompt="yes")) == "cache_prompt"
    assert refused(parse, body(id_slot=-2)) == "id_slot"


@BOTH
def test_n_predict_is_max_tokens(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    assert parse(body(n_predict=7)).max_tokens == 7
    assert parse(body(n_predict=-1)).max_tokens is None  # the context is the limit
    assert refused(parse, body(n_predict=0)) == "n_predict"
    assert refused(parse, body(n_predict=-2)) == "n_predict"
    assert refused(parse, body(n_predict=5, max_tokens=5)) == "n_predict"


def test_n_predict_conflicts_with_the_newer_chat_limit() -> None:
    assert refused(parse_chat, chat(n_predict=5, max_completion_tokens=5)) == "n_predict"


@BOTH
def test_grammar_is_bounded(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    grammar = 'root ::= "yes" | "no"'
    assert parse(body(grammar=grammar)).grammar == grammar
    # Counts inside literals and classes are text, not repetitions.
    parse(body(grammar='root ::= "{5000}" [{9999}]? x{3,1000}\nx ::= "a"'))
    assert refused(parse, body(grammar="")) == "grammar"
    assert refused(parse, body(grammar=3)) == "grammar"
    assert refused(parse, body(grammar='root ::= "a"\x00 "b"')) == "grammar"  # ends a C string
    assert refused(parse, body(grammar='root ::= "a"{1001}')) == "grammar"
    assert refused(parse, body(grammar='root ::= "a"{2,5000}')) == "grammar"
    assert refused(parse, body(grammar="root ::= " + '"a" ' * 5000)) == "grammar"
    assert refused(parse, body(grammar=grammar, json_schema=SCHEMA)) == "grammar"


def test_json_schemas_become_the_response_format() -> None:
    top = parse_chat(chat(json_schema=SCHEMA)).response_format
    assert top == ResponseFormat("json_schema", SCHEMA, param="json_schema")
    held = parse_chat(chat(response_format={"type": "json_object", "schema": SCHEMA}))
    assert held.response_format == ResponseFormat(
        "json_schema", SCHEMA, param="response_format.schema"
    )
    nameless = {"type": "json_schema", "json_schema": {"schema": SCHEMA}}
    assert parse_chat(chat(response_format=nameless)).response_format == ResponseFormat(
        "json_schema", SCHEMA
    )
    assert parse_completion(completion(json_schema=SCHEMA)).json_schema == SCHEMA
    fmt = {"type": "json_object"}
    assert refused(parse_chat, chat(json_schema=SCHEMA, response_format=fmt)) == "json_schema"
    assert refused(parse_chat, chat(json_schema=[])) == "json_schema"
    assert refused(parse_chat, chat(grammar='root ::= "a"', response_format=fmt)) == "grammar"
    bad = {"type": "json_object", "schema": []}
    assert refused(parse_chat, chat(response_format=bad)) == "response_format.schema"


def test_n_probs_is_top_logprobs() -> None:
    assert parse_chat(chat(n_probs=3)).logprobs == 3
    assert parse_completion(completion(n_probs=2)).logprobs == 2
    assert refused(parse_chat, chat(n_probs=21)) == "n_probs"
    assert refused(parse_completion, completion(n_probs=6)) == "n_probs"
    assert refused(parse_chat, chat(n_probs=2, logprobs=True)) == "n_probs"
    assert refused(parse_completion, completion(n_probs=2, logprobs=1)) == "n_probs"


@BOTH
def test_samplers_in_sluices_order(parse: Parser, body: Callable[..., dict[str, Any]]) -> None:
    parse(
        body(
            samplers=["penalties", "dry", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]
        )
    )
    parse(body(samplers=["top_k", "temperature"], top_k=40, temperature=0.5))
    parse(body(samplers=[]))  # nothing set, nothing left out
    assert refused(parse, body(samplers=["temperature", "top_k"])) == "samplers"
    assert refused(parse, body(samplers=["top_k", "top_k"])) == "samplers"
    assert refused(parse, body(samplers=["mirostat"])) == "samplers"
    assert refused(parse, body(samplers="kpt")) == "samplers"
    assert refused(parse, body(samplers=["temperature"], top_k=40)) == "samplers"
    assert refused(parse, body(samplers=["top_k"], temperature=0)) == "samplers"


@BOTH
def test_other_llama_server_fields_are_refused_by_name(
    parse: Parser, body: Callable[..., dict[str, Any]]
) -> None:
    for name in ("mirostat", "dry_multiplier", "typical_p", "n_keep", "t_max_predict_ms"):
        assert refused(parse, body(**{name: 1})) == name
