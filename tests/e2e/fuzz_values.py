"""Hostile JSON values for the fuzz campaign: odd numbers and texts (lone surrogates, special
token texts, template syntax), nested values, random JSON schemas and regular expressions."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["numbers", "patterns", "schemas", "texts", "values"]

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


#: Deferred rather than st.recursive: the nesting dies out as composite branches are drawn
#: less often than leaves.
schemas: st.SearchStrategy[Any] = st.deferred(
    lambda: st.one_of(simple_schemas, simple_schemas, simple_schemas, _schemas(schemas))
)
