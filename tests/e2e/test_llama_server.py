"""llama.cpp server's request extensions on the OpenAI routes, against the real server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]

from .server import RunningServer

ASK = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "rank": {"type": "integer"}},
    "required": ["city", "rank"],
    "additionalProperties": False,
}


def post(server: RunningServer, route: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.api}/{route}", json=body, timeout=120)


def ok(server: RunningServer, route: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = post(server, route, body)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def test_gbnf_grammar_holds_the_output(server: RunningServer) -> None:
    grammar = 'root ::= "yes" | "no"'
    for seed in (1, 2):
        chat = ok(server, "chat/completions", {"messages": ASK, "grammar": grammar, "seed": seed})
        assert chat["choices"][0]["message"]["content"] in ("yes", "no")
        assert chat["choices"][0]["finish_reason"] == "stop"
    text = ok(server, "completions", {"prompt": "Q: Is fire hot?\nA:", "grammar": grammar})
    assert text["choices"][0]["text"] in ("yes", "no")


def test_invalid_gbnf_is_a_400_naming_grammar(server: RunningServer) -> None:
    for grammar in (
        "root ::= undefined-rule",
        'root ::= root "a"',  # left recursion
        'answer ::= "a"',  # no root
        'root ::= "a',
        "root ::= \x00",
    ):
        for route, body in (
            ("chat/completions", {"messages": ASK}),
            ("completions", {"prompt": "x"}),
        ):
            reply = post(server, route, {**body, "grammar": grammar})
            assert reply.status_code == 400, (grammar, reply.text)
            assert reply.json()["error"]["param"] == "grammar"
    healthy = ok(server, "completions", {"prompt": "Hello", "max_tokens": 2})
    assert healthy["usage"]["completion_tokens"] == 2


def test_n_predict_cache_prompt_and_id_slot(server: RunningServer) -> None:
    body = {"prompt": "Once upon a time", "n_predict": 5, "ignore_eos": True}
    text = ok(server, "completions", {**body, "cache_prompt": True, "id_slot": 0})
    assert text["usage"]["completion_tokens"] == 5
    assert text["choices"][0]["finish_reason"] == "length"
    chat = ok(server, "chat/completions", {"messages": ASK, "n_predict": 3, "ignore_eos": True})
    assert chat["usage"]["completion_tokens"] == 3
    both = post(server, "completions", {**body, "max_tokens": 5})
    assert both.status_code == 400
    assert both.json()["error"]["param"] == "n_predict"


def test_json_schemas_in_llama_server_places(server: RunningServer) -> None:
    ask = [{"role": "user", "content": "Name a big city and its rank as JSON."}]
    for extra in (
        {"json_schema": CITY},
        {"response_format": {"type": "json_object", "schema": CITY}},
        {"response_format": {"type": "json_schema", "json_schema": {"schema": CITY}}},
    ):
        chat = ok(server, "chat/completions", {"messages": ask, "max_tokens": 40, **extra})
        assert chat["choices"][0]["finish_reason"] == "stop", extra
        jsonschema.validate(json.loads(chat["choices"][0]["message"]["content"]), CITY)
    text = ok(
        server, "completions", {"prompt": "A city as JSON: ", "json_schema": CITY, "max_tokens": 40}
    )
    assert text["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(text["choices"][0]["text"]), CITY)
    bad = post(server, "completions", {"prompt": "x", "json_schema": {"type": "object", "not": {}}})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "json_schema"


def test_n_probs_and_samplers(server: RunningServer) -> None:
    chat = ok(server, "chat/completions", {"messages": ASK, "n_probs": 3, "max_tokens": 3})
    entries = chat["choices"][0]["logprobs"]["content"]
    assert entries
    assert all(len(entry["top_logprobs"]) == 3 for entry in entries)
    text = ok(server, "completions", {"prompt": "Hello", "n_probs": 2, "max_tokens": 2})
    assert all(len(top) == 2 for top in text["choices"][0]["logprobs"]["top_logprobs"])

    samplers = ["penalties", "dry", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]
    body = {"prompt": "Hello", "max_tokens": 4, "seed": 7, "top_k": 40, "top_p": 0.9}
    ordered = ok(server, "completions", {**body, "samplers": samplers})
    plain = ok(server, "completions", body)
    assert ordered["choices"][0]["text"] == plain["choices"][0]["text"]  # the same chain
    reordered = post(server, "completions", {**body, "samplers": ["temperature", "top_k", "top_p"]})
    assert reordered.status_code == 400
    assert reordered.json()["error"]["param"] == "samplers"
