"""Every sampling value that passes validation reaches llama.cpp and comes back as an answer,
with and without a grammar: the review of issue 8 over real HTTP. (Their effect on the
sampler alone is tested in tests/unit/test_sampling.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .server import RunningServer

CHAT = "/v1/chat/completions"
#: The embedded model's end-of-generation tokens and its last token id.
_EOG = ("0", "2", "4")
_LAST = "49151"

_EDGES: dict[str, dict[str, Any]] = {
    "temperature 0": {"temperature": 0},
    "temperature 2": {"temperature": 2},
    "top_p 0": {"top_p": 0},
    "min_p 1": {"min_p": 1},
    "top_k 0": {"top_k": 0},
    "top_k 1": {"top_k": 1},
    "top_k past int64": {"top_k": 2**70},
    "repeat_penalty 0.01": {"repeat_penalty": 0.01},
    "repeat_penalty 10": {"repeat_penalty": 10},
    "penalties +2": {"presence_penalty": 2, "frequency_penalty": 2},
    "penalties -2": {"presence_penalty": -2, "frequency_penalty": -2},
    "end tokens +100": {"logit_bias": dict.fromkeys(_EOG, 100)},
    "end tokens -100": {"logit_bias": dict.fromkeys(_EOG, -100)},
    "last token +100": {"logit_bias": {_LAST: 100}},
    "a thousand tokens -100": {"logit_bias": {str(i): -100 for i in range(5, 1005)}},
    "lowest seed": {"seed": -(2**63)},
    "highest seed": {"seed": 2**64 - 1},
    "llama.cpp's random seed": {"seed": 2**32 - 1},
    "top_logprobs 20": {"logprobs": True, "top_logprobs": 20},
    "max_tokens 1": {"max_tokens": 1},
    "n at the slot count": {"n": 4},
}
_FORMATS: dict[str, dict[str, Any] | None] = {
    "free": None,
    "json_schema": {
        "type": "json_schema",
        "json_schema": {
            "name": "x",
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    },
}


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=180) as client:
        yield client


@pytest.mark.parametrize("fmt", _FORMATS.values(), ids=_FORMATS.keys())
@pytest.mark.parametrize("fields", _EDGES.values(), ids=_EDGES.keys())
def test_an_edge_value_gives_an_answer(
    http: httpx.Client, fields: dict[str, Any], fmt: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Give me a number."}],
        "max_tokens": 4,
        **fields,
    }
    if fmt is not None:
        body["response_format"] = fmt
    reply = http.post(CHAT, json=body)
    assert reply.status_code == 200, reply.text
    choices = reply.json()["choices"]
    assert len(choices) == body.get("n", 1)
    for choice in choices:
        assert choice["finish_reason"] in ("stop", "length")
        if fmt is not None and choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["message"]["content"]), dict)
    assert http.get("/health").status_code == 200


def test_the_vocabulary_edge_is_checked(http: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    reply = http.post(CHAT, json={**body, "logit_bias": {"49152": 5}})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "logit_bias"
    prompt = {"prompt": [1, 49151], "max_tokens": 2}
    assert http.post("/v1/completions", json=prompt).status_code == 200
    reply = http.post("/v1/completions", json={**prompt, "prompt": [1, 49152]})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "prompt"
