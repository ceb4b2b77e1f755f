"""Hypothesis strategies for the fuzz campaign (tests/e2e/test_fuzz.py): whole HTTP requests,
valid-shaped and hostile, for every route.

A request is a method, a path, headers and body bytes. Bodies are mostly valid-shaped chat or
legacy completion requests whose values are drawn from hostile pools (extreme and odd numbers,
huge integers, odd unicode with lone surrogates and special-token texts, deep nesting, wrong
types), with random JSON schemas and regular expressions in ``response_format`` and tools;
the rest are raw bytes, other encodings and odd JSON texts. Everything stays cheap to serve:
generations are a few tokens long unless a hostile value says otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from .fuzz_values import schemas, texts, values

__all__ = ["FuzzRequest", "requests"]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = "/v1/messages"
ROUTES = [
    CHAT,
    COMPLETIONS,
    "/v1/responses",
    "/v1/responses/resp_0",
    MESSAGES,
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/tokenize",
    "/detokenize",
    "/v1/models",
    "/v1/models/local",
    "/health",
    "/ready",
    "/metrics",
]


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    http2: bool = False

    @property
    def streamed(self) -> bool:
        return b'"stream": true' in self.body


# -- bodies ------------------------------------------------------------------------------

#: Parameters with plausible values, and a hostile pool any of them may be drawn from.
PARAMETERS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(0, 100),
    "min_p": st.floats(0, 1),
    "repeat_penalty": st.floats(0.01, 10),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "seed": st.integers(-(2**63), 2**64 - 1),
    "stop": st.one_of(texts, st.lists(texts, max_size=5)),
    "n": st.integers(1, 3),
    "logit_bias": st.dictionaries(
        st.one_of(st.integers(0, 60000).map(str), texts), st.floats(-100, 100), max_size=3
    ),
    "ignore_eos": st.booleans(),
    "timeout": st.floats(0.001, 30),
    "user": texts,
    "model": st.one_of(st.just("local"), texts),
    "best_of": st.integers(0, 3),
    "echo": st.booleans(),
    "suffix": st.one_of(st.none(), texts),
    "modalities": st.sampled_from([["text"], ["text", "audio"], [], None]),
    "functions": st.sampled_from([[], None, [{"name": "f"}]]),
    "function_call": st.sampled_from(["none", "auto", None]),
    "frobnicate": values,
}
roles = st.sampled_from(["system", "user", "assistant", "tool", "developer", "wizard", ""])
parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
        st.fixed_dictionaries({"type": texts, "image_url": values}),
        values,
    ),
    max_size=3,
)
messages = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"role": roles, "content": st.one_of(texts, parts, st.none())},
            optional={"name": texts, "tool_call_id": texts, "tool_calls": values},
        ),
        values,
    ),
    min_size=1,
    max_size=4,
)
tools = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["function", "function", "code"]),
            "function": st.fixed_dictionaries(
                {"name": st.one_of(st.just("get_weather"), texts)},
                optional={"description": texts, "parameters": schemas, "strict": st.booleans()},
            ),
        }
    ),
    min_size=1,
    max_size=3,
)
response_formats = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "xml"])}),
    st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries(
                {"name": st.just("x"), "schema": schemas}, optional={"strict": st.booleans()}
            ),
        }
    ),
    values,
)


@st.composite
def _generation_body(draw: st.DrawFn, path: str) -> dict[str, Any]:
    body: dict[str, Any] = {"max_tokens": draw(st.integers(1, 6))}
    if path == CHAT:
        body["messages"] = draw(messages)
        if draw(st.booleans()):
            body["response_format"] = draw(response_formats)
        if draw(st.integers(0, 3)) == 0:
            body["tools"] = draw(tools)
            body["tool_choice"] = draw(
                st.one_of(
                    st.sampled_from(["auto", "none", "required"]),
                    st.just({"type": "function", "function": {"name": "get_weather"}}),
                    values,
                )
            )
    else:
        body["prompt"] = draw(
            st.one_of(
                texts,
                st.lists(texts, min_size=1, max_size=3),
                st.lists(st.integers(-5, 70000), min_size=1, max_size=8),
                values,
            )
        )
    names = draw(st.lists(st.sampled_from(sorted(PARAMETERS)), max_size=4, unique=True))
    for name in names:
        hostile = draw(st.integers(0, 3)) == 0
        body[name] = draw(values if hostile else PARAMETERS[name])
    if draw(st.booleans()):
        body["stream"] = True
        if draw(st.booleans()):
            body["stream_options"] = {"include_usage": draw(st.one_of(st.booleans(), values))}
    if draw(st.integers(0, 5)) == 0:  # a hostile value replaces a required field
        body[draw(st.sampled_from(sorted(body)))] = draw(values)
    return body


def _json(data: Any) -> bytes:
    # ensure_ascii: lone surrogates become \\u escapes, as a client would write them.
    return json.dumps(data, allow_nan=True).encode()


HUGE_INT = b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + b"7" * 4400 + b"}"


def _nested(depth: int, leaf: Any, key: str) -> Any:
    for _ in range(depth):
        leaf = {key: leaf}
    return leaf


_USER = [{"role": "user", "content": "x"}]
#: Deep structures where the prompt, the template and the schema compiler walk them.
DEEP = [
    {"messages": _USER, "max_tokens": 2, "metadata": _nested(400, 1, "a")},
    {
        "messages": _USER,
        "max_tokens": 2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": _nested(200, {"type": "string"}, "items")},
        },
    },
    {
        "messages": _USER,
        "max_tokens": 2,
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "parameters": _nested(150, {}, "properties")},
            }
        ],
    },
    {
        "messages": [{"role": "user", "content": [_nested(300, "x", "text")]}],
        "max_tokens": 2,
    },
    {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "f", "arguments": _nested(300, 1, "a")},
                    }
                ],
            },
            *_USER,
        ],
        "max_tokens": 2,
    },
]
ODD_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"[" * 50_000,
    b'{"a":' * 5_000,
    HUGE_INT,
    json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode("utf-16"),
    json.dumps({"prompt": "hi"}).encode("utf-32-le"),
    *(json.dumps(body).encode() for body in DEEP),
    b'\xef\xbb\xbf{"prompt": "bom"}',
    b'{"prompt": "\xff\xfe"}',
    b'{"prompt": "a", "prompt": 7}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": NaN}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}',
]


def _other_api_body(draw: st.DrawFn, path: str) -> dict[str, Any]:
    """A valid-shaped body of the other APIs, with hostile values."""
    content = st.one_of(texts, parts)
    if path.startswith(MESSAGES):
        body: dict[str, Any] = {
            "model": "local",
            "max_tokens": draw(st.one_of(st.integers(1, 6), values)),
            "messages": draw(
                st.lists(st.fixed_dictionaries({"role": roles, "content": content}), max_size=3)
            ),
        }
        extra = {"system": texts, "stream": st.booleans(), "tools": values, "thinking": values}
    elif path.startswith("/v1/responses"):
        body = {"input": draw(st.one_of(texts, messages, values))}
        body["max_output_tokens"] = draw(st.one_of(st.integers(16, 20), values))
        extra = {"stream": st.booleans(), "text": values, "tools": values, "reasoning": values}
    elif path == "/v1/embeddings":
        body = {"input": draw(st.one_of(texts, st.lists(texts, max_size=3), values))}
        extra = {"encoding_format": st.sampled_from(["float", "base64", "x"]), "dimensions": values}
    elif path == "/tokenize":
        body = {"content": draw(st.one_of(texts, values))}
        extra = {"add_special": values, "with_pieces": values}
    else:
        body = {"tokens": draw(st.one_of(st.lists(st.integers(-5, 70000), max_size=8), values))}
        extra = {"with_pieces": values}
    for name in draw(st.lists(st.sampled_from(sorted(extra)), max_size=2, unique=True)):
        body[name] = draw(extra[name])
    return body


_other_api_bodies = st.composite(_other_api_body)


@st.composite
def _body(draw: st.DrawFn, path: str) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 6 and path in (CHAT, COMPLETIONS):
        return _json(draw(_generation_body(path)))
    if kind <= 6 and path in ROUTES[2:9]:
        return _json(draw(_other_api_bodies(path)))
    if kind <= 6:
        return _json(draw(st.dictionaries(texts, values, max_size=3)))
    if kind == 7:
        return draw(st.sampled_from(ODD_BODIES))
    if kind == 8:
        return _json(draw(values))
    return draw(st.binary(max_size=64))


header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.strip
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/json; charset=utf-16",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ]
    ),
    header_values,
)
extra_headers = st.dictionaries(
    st.sampled_from(
        [
            "x-request-id",
            "authorization",
            "accept",
            "origin",
            "accept-encoding",
            "x-stainless-lang",
            "user-agent",
            "cookie",
            "x-forwarded-for",
        ]
    ),
    header_values,
    max_size=3,
)
unknown_paths = st.from_regex(r"\A/[A-Za-z0-9._~%/-]{0,30}\Z")


@st.composite
def _request(draw: st.DrawFn) -> FuzzRequest:
    path = draw(st.one_of(st.sampled_from(ROUTES), st.sampled_from(ROUTES), unknown_paths))
    generation = path in ROUTES[:9] and path != "/v1/responses/resp_0"
    methods = ["POST"] * 6 if generation else ["GET"] * 4
    others = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
    method = draw(st.sampled_from([*methods, *others]))
    body = draw(_body(path)) if method in ("POST", "PUT", "PATCH") else b""
    headers = draw(extra_headers)
    if method in ("POST", "PUT", "PATCH"):
        kind = draw(st.one_of(st.just("application/json"), content_types, st.none()))
        if kind is not None:
            headers["content-type"] = kind
    return FuzzRequest(method, path, body, headers, http2=draw(st.booleans()))


def requests(most: int) -> st.SearchStrategy[list[FuzzRequest]]:
    """Batches of 1 to ``most`` requests, each batch sent while a reference stream runs."""
    return st.lists(_request(), min_size=1, max_size=most)
