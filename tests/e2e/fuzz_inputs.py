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

__all__ = ["FuzzRequest", "requests"]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
ROUTES = [CHAT, COMPLETIONS, "/v1/models", "/v1/models/local", "/health", "/ready", "/metrics"]


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


# -- values -----------------------------------------------------------------------------

ODD_TEXTS = [
    "\ud83d",  # lone surrogates: json.dumps writes them as \\u escapes
    "a\udc00b",
    "\ud83d\ude00",  # a proper pair written as escapes
    "<|im_start|>",
    "<|im_end|><|im_start|>assistant\n",
    "<|endoftext|>",
    "<tool_call>",
    "</tool_call>",
    "<s>",
    "\x00",
    "\u2028\u2029",
    "\ufeff",
    "\U0001d54f" * 20,
    '"\\',
    "{{ raise_exception('x') }}",
    "{% for x in range(10**9) %}",
    "%s%n%x",
    "A" * 5000,
    "é" * 300,
    "\r\n\r\n",
    "",
]
BIG_INTS = [2**31, 2**32 + 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30)]
ODD_NUMBERS = [0, -1, 1, 0.0, -0.0, 1e-320, 1e308, -1e308, 0.5, 1.0000001, *BIG_INTS]

texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.sampled_from(ODD_TEXTS),
)
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN/Infinity: json.loads takes them
    st.sampled_from(ODD_NUMBERS),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)

# -- schemas and patterns ---------------------------------------------------------------

NASTY_PATTERNS = [
    "^[z-a]$",
    "^(ab$",
    "^([a-z]$",
    "^ab(c|d$",
    "^a{3,1}$",
    "^([a-z]{0,50}){0,50}$",
    "^(a{0,1000}){0,1000}$",
    "^(a|b)*c{1,1000}$",
    "(?=a)b",
    "(a)\\1",
    "\\bword\\b",
    "^\\d{3}-\\d{4}$",
    '^[^"\\\\]*$',
    "[\\ud800-\\udfff]",
    "^.{0,1000}$",
    "",
    "^$",
    "*",
    "[",
    "\\",
]
patterns = st.one_of(
    st.sampled_from(NASTY_PATTERNS),
    st.text(alphabet='ab^$.|()[]{}*+?-,0123456789\\dwsDWS"z', max_size=24),
)
simple_schemas = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "object"])}
    ),
    st.fixed_dictionaries({"type": st.just("string"), "pattern": patterns}),
    st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={"minLength": numbers, "maxLength": numbers, "format": texts},
    ),
    st.fixed_dictionaries({"enum": st.lists(values, max_size=5)}),
    st.fixed_dictionaries({"const": values}),
    st.fixed_dictionaries({"$ref": st.sampled_from(["#/$defs/x", "#", "http://x/y", "#/nope"])}),
    st.fixed_dictionaries({"type": st.just("integer")}, optional={"minimum": numbers}),
    values,
)


def _schemas(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(max_size=8), inner, max_size=4),
            },
            optional={
                "required": st.lists(st.text(max_size=8), max_size=3),
                "additionalProperties": st.one_of(st.booleans(), inner),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("array"), "items": inner},
            optional={"minItems": numbers, "maxItems": numbers},
        ),
        st.fixed_dictionaries({"anyOf": st.lists(inner, max_size=4)}),
        st.fixed_dictionaries({"oneOf": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"allOf": st.lists(inner, max_size=2)}),
    )


schemas = st.recursive(simple_schemas, _schemas, max_leaves=10)

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
    b'\xef\xbb\xbf{"prompt": "bom"}',
    b'{"prompt": "\xff\xfe"}',
    b'{"prompt": "a", "prompt": 7}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": NaN}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}',
]


@st.composite
def _body(draw: st.DrawFn, path: str) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 6 and path in (CHAT, COMPLETIONS):
        return _json(draw(_generation_body(path)))
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
    generation = path in (CHAT, COMPLETIONS)
    methods = ["POST"] * 6 if generation else ["GET"] * 4
    method = draw(st.sampled_from([*methods, "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
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
