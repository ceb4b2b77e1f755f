from __future__ import annotations

import json
import time
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

import model.llama  # noqa: F401 - routes llama.cpp's log through logging
from model.grammar import (
    Grammar,
    GrammarError,
    check_grammar,
    json_object_grammar,
    json_schema_grammar,
    json_schema_rules,
)
from tests.model.embedded import EmbeddedModel, chat_prompt

_PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "email": {"type": ["string", "null"], "maxLength": 30},
    },
    "required": ["name", "age"],
}
_TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
            },
            "required": ["value"],
        }
    },
    "$ref": "#/$defs/node",
}
_SCHEMAS: dict[str, Any] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "enum": {"enum": ["red", "green", 3, None, {"deep": [1]}]},
    "person": _PERSON,
    "array": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
    "nested": {
        "type": "object",
        "properties": {"owner": _PERSON, "pets": {"type": "array", "items": _PERSON}},
        "required": ["owner"],
    },
    "nullable object": {
        "type": ["object", "null"],
        "properties": {"x": {"type": "number"}},
        "required": ["x"],
    },
    "anyOf": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 5}]},
    "recursive $ref": _TREE,
    "allOf": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"const": "fixed"}}, "required": ["b"]},
        ]
    },
    "formats": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
        },
    },
    "patterns": {
        "type": "object",
        "properties": {
            "phone": {"type": "string", "pattern": r"^\d{3}-\d{4}$"},
            "word": {"type": "string", "pattern": r"^[A-Z][^0-9]*\.?$"},
            "contains": {"type": "string", "pattern": "ab|cd"},
        },
    },
    "map": {"type": "object", "additionalProperties": {"type": "integer"}},
    "any value": {},
    "annotations only": {"type": "object", "properties": {"x": {"description": "anything"}}},
    "unenforced bounds": {"type": "integer", "minimum": 0, "maximum": 9, "multipleOf": 3},
    "huge maxLength": {"type": "string", "maxLength": 10**9},
}


@pytest.mark.parametrize("schema", _SCHEMAS.values(), ids=_SCHEMAS.keys())
def test_schema_grammar_compiles(vocab_model: EmbeddedModel, schema: dict[str, Any]) -> None:
    check_grammar(json_schema_grammar(schema), vocab_model.vocab)


def test_json_object_grammar_compiles(vocab_model: EmbeddedModel) -> None:
    check_grammar(json_object_grammar(), vocab_model.vocab)


def test_check_grammar_refuses_bad_gbnf(vocab_model: EmbeddedModel) -> None:
    with pytest.raises(GrammarError):
        check_grammar(Grammar('root ::= "a" missing'), vocab_model.vocab)
    with pytest.raises(GrammarError):
        check_grammar(Grammar('root ::= "a"', root="nowhere"), vocab_model.vocab)


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ('{"a": 1}', True),
        (' {"a": [1, "x", null, true, {}]}', True),
        ('  {"a": 1}', False),
        ('{\n    "a": "line\\nbreak \\u00e9"\n}', True),
        ("[1]", False),
        ('"text"', False),
        ('{"a": "raw\nnewline"}', False),
        ('{"a": 01}', False),
        ('{"a":' + " " * 2 + "1}", False),
        ("{\n" + " " * 21 + '"a": 1}', False),
    ],
)
def test_json_object_grammar(vocab_model: EmbeddedModel, text: str, accepted: bool) -> None:
    assert vocab_model.accepts(json_object_grammar(), text) is accepted


@pytest.mark.parametrize(
    ("schema", "text", "accepted"),
    [
        ({"enum": ['x"y', "a\\b", "n\nl"]}, json.dumps('x"y'), True),
        ({"enum": ['x"y', "a\\b", "n\nl"]}, json.dumps("a\\b"), True),
        ({"enum": ['x"y', "a\\b", "n\nl"]}, json.dumps("n\nl"), True),
        ({"enum": ['x"y', "a\\b", "n\nl"]}, '"n\nl"', False),
        ({"type": "string"}, '"raw\tcontrol"', False),
        ({"type": "string"}, '"escaped\\tcontrol"', True),
        (_SCHEMAS["person"], '{"name": "Ann", "age": 3}', True),
        (_SCHEMAS["person"], '{"name": "Ann", "age": 3, "email": null}', True),
        (_SCHEMAS["person"], '{"age": 3, "name": "Ann"}', False),  # schema order
        (_SCHEMAS["person"], '{"name": "Ann"}', False),
        (_SCHEMAS["person"], '{"name": "Ann", "age": 3, "x": 1}', False),
        (_SCHEMAS["person"], '{"name": "' + "n" * 21 + '", "age": 3}', False),
        (_SCHEMAS["recursive $ref"], '{"value": 1, "children": [{"value": 2}]}', True),
        (_SCHEMAS["allOf"], '{"a": 1, "b": "fixed"}', True),
        (_SCHEMAS["allOf"], '{"a": 1, "b": "other"}', False),
        (_SCHEMAS["patterns"], '{"phone": "555-1234", "word": "Hi.", "contains": "xxcdx"}', True),
        (_SCHEMAS["patterns"], '{"phone": "55-1234"}', False),
        (_SCHEMAS["patterns"], '{"word": "H1"}', False),
        (_SCHEMAS["patterns"], '{"word": "H\\""}', False),
        (_SCHEMAS["patterns"], '{"contains": "xyz"}', False),
        (_SCHEMAS["map"], '{"a": 1, "b": 2}', True),
        (_SCHEMAS["map"], '{"a": "1"}', False),
        (_SCHEMAS["nullable object"], "null", True),
        (_SCHEMAS["nullable object"], '{"x": 1.5}', True),
        (_SCHEMAS["nullable object"], "{}", False),
        (_SCHEMAS["any value"], '[1, {"a": null}]', True),
        # The converter alone reuses the property's rule for this $ref (an enum, not integer).
        (
            {
                "type": "object",
                "properties": {"foo": {"enum": ["a"]}, "bar": {"$ref": "#/$defs/foo"}},
                "required": ["foo", "bar"],
                "$defs": {"foo": {"type": "integer"}},
            },
            '{"foo": "a", "bar": 5}',
            True,
        ),
    ],
)
def test_schema_grammar_language(
    vocab_model: EmbeddedModel, schema: dict[str, Any], text: str, accepted: bool
) -> None:
    assert vocab_model.accepts(json_schema_grammar(schema), text) is accepted
    if accepted:
        jsonschema.validate(json.loads(text), schema)


def test_whitespace_is_bounded(vocab_model: EmbeddedModel) -> None:
    grammar = json_schema_grammar(_PERSON)
    assert vocab_model.accepts(grammar, '{ "name" : "A" , "age" : 1 } ')
    assert not vocab_model.accepts(grammar, '{  "name": "A", "age": 1}')
    assert not vocab_model.accepts(grammar, '{"name": "A", "age": 1}\n')


_STRICT_OK: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}},
            "required": ["lat"],
            "additionalProperties": False,
        },
    },
    "required": ["city", "where"],
    "additionalProperties": False,
}


def test_strict_schema_is_accepted(vocab_model: EmbeddedModel) -> None:
    check_grammar(json_schema_grammar(_STRICT_OK, strict=True), vocab_model.vocab)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({**_STRICT_OK, "additionalProperties": True}, "'additionalProperties': false at #"),
        (
            {**_STRICT_OK, "properties": {**_STRICT_OK["properties"], "where": {"type": "object"}}},
            "'additionalProperties': false at #/properties/where",
        ),
        ({**_STRICT_OK, "required": ["city"]}, "# leaves out ['where']"),
        ({"type": "array", "items": {"type": "string"}}, "'type': 'object' at the root"),
    ],
)
def test_strict_violations_name_the_place(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(GrammarError, match="strict") as caught:
        json_schema_grammar(schema, strict=True)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"not": {"type": "string"}}, "'not' at #"),
        ({"if": {}, "then": {}, "else": {}}, "'if' at #"),
        (
            {"properties": {"a": {"patternProperties": {"x": {}}}}},
            "'patternProperties' at #/properties/a",
        ),
        ({"dependentSchemas": {"a": {}}}, "'dependentSchemas' at #"),
        ({"type": "array", "contains": {"type": "integer"}}, "'contains' at #"),
        ({"$ref": "https://example.com/schema.json"}, "must point inside the schema"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"type": "string", "pattern": "^(?=a)b$"}, "lookaround"),
        ({"type": "string", "pattern": "^a\\1$"}, "escape"),
        ({"type": "string", "pattern": 'say "hi"'}, "pattern"),
        ({"type": "strin"}, "'type' at #"),
        ({"enum": []}, "#/enum must be a non-empty array"),
        ({"type": "string", "minLength": 10**6}, "'minLength' at #"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "'maxLength' at # is below"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "cannot combine differing 'type'"),
        ({"properties": {"a": 5}}, "#/properties/a must be a JSON schema"),
        ({"enum": list(range(2000))}, "exceed"),
    ],
)
def test_unsupported_schemas_are_refused(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(GrammarError) as caught:
        json_schema_grammar(schema)
    assert message in str(caught.value)


@pytest.mark.parametrize("schema", [[{"type": "string"}], "object", None, 3])
def test_a_schema_must_be_an_object(schema: Any) -> None:
    with pytest.raises(GrammarError, match="must be an object"):
        json_schema_grammar(schema)


@pytest.mark.parametrize("depth", [40, 5000])
def test_deep_nesting_is_refused_not_recursion_error(depth: int) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    started = time.monotonic()
    with pytest.raises(GrammarError, match="deeper than 32"):
        json_schema_grammar(schema)
    assert time.monotonic() - started < 1


def test_self_inlining_refs_end_at_the_depth_limit() -> None:
    with pytest.raises(GrammarError, match="deeper than 32"):
        json_schema_grammar({"allOf": [{"$ref": "#"}]})


def test_rules_compose_under_caller_names(vocab_model: EmbeddedModel) -> None:
    rules = json_schema_rules({"first": _PERSON, "second": _TREE})
    grammar = Grammar(rules + 'root ::= "A:" first | "B:" second\n')
    check_grammar(grammar, vocab_model.vocab)
    assert vocab_model.accepts(grammar, 'B:{"value": 1}')
    assert not vocab_model.accepts(grammar, 'A:{"value": 1}')
    with pytest.raises(ValueError, match="cannot name"):
        json_schema_rules({"string": {}})
    with pytest.raises(ValueError, match="cannot name"):
        json_schema_rules({"Bad_Name": {}})


_GENERATED = {
    "person": _PERSON,
    "palette": {
        "type": "object",
        "properties": {
            "colors": {
                "type": "array",
                "items": {"enum": ["red", "green", "blue"]},
                "minItems": 1,
                "maxItems": 3,
            },
            "dark": {"type": "boolean"},
        },
        "required": ["colors", "dark"],
        "additionalProperties": False,
    },
    "choice": {
        "type": "object",
        "properties": {
            "answer": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 12}]},
            "sure": {"type": ["boolean", "null"]},
        },
        "required": ["answer", "sure"],
    },
    "tuple": {
        "type": "array",
        "prefixItems": [{"type": "string", "maxLength": 8}, {"const": {"fixed": [1, "two"]}}],
    },
}


@pytest.mark.parametrize("schema", _GENERATED.values(), ids=_GENERATED.keys())
def test_constrained_generation_validates(
    full_model: EmbeddedModel, schema: dict[str, Any]
) -> None:
    grammar = json_schema_grammar(schema)
    prompt = chat_prompt("Reply in JSON.", "Describe something.")
    for seed in (1, 2):
        text = full_model.generate(prompt, grammar, seed=seed, limit=150)
        assert text is not None, "no end within 150 tokens"
        jsonschema.validate(json.loads(text), schema)


def _branch(i: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"kind": {"const": f"k{i}"}, "v": {"type": "integer"}},
        "required": ["kind", "v"],
    }


@pytest.mark.parametrize(
    ("schema", "place"),
    [
        # Each whole-vocabulary grammar pass took about 3 s for every stream.
        (
            {
                "anyOf": [
                    {"type": "object", "properties": {f"key{i}": {"type": "string"}}}
                    for i in range(3000)
                ]
            },
            "#/anyOf holds up to 6000 alternatives",
        ),
        ({"oneOf": [_branch(i) for i in range(65)]}, "#/oneOf holds up to 65 alternatives"),
        (
            {
                "type": "object",
                "properties": {
                    "x": {"anyOf": [_branch(i) for i in range(40)]},
                    "y": {"anyOf": [_branch(i) for i in range(40)]},
                },
            },
            None,  # two unions of 40, never open together: accepted
        ),
        (
            {
                "type": "object",
                "properties": {
                    "x": {
                        "anyOf": [
                            {"anyOf": [_branch(i) for i in range(40)]},
                            {"anyOf": [_branch(i) for i in range(40)]},
                        ]
                    }
                },
            },
            "#/properties/x/anyOf holds up to 80 alternatives",
        ),
        (
            {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(70)}},
            "# holds up to 71 alternatives",
        ),
        (
            {
                "$defs": {"u": {"anyOf": [_branch(i) for i in range(40)]}},
                "anyOf": [{"$ref": "#/$defs/u"}, {"$ref": "#/$defs/u"}],
            },
            "#/anyOf holds up to 80 alternatives",
        ),
    ],
)
def test_alternatives_open_at_once_are_bounded(
    vocab_model: EmbeddedModel, schema: dict[str, Any], place: str | None
) -> None:
    if place is None:
        check_grammar(json_schema_grammar(schema), vocab_model.vocab)
        return
    with pytest.raises(GrammarError) as caught:
        json_schema_grammar(schema)
    assert place in str(caught.value)
    assert "alternatives open at once" in str(caught.value)


_ENUM = ["a", "ab", "abc", "b", 1, 10, None, {"k": [1]}, 'q"uote', "new\nline"]


@pytest.mark.parametrize("value", _ENUM)
def test_enum_trie_accepts_each_value(vocab_model: EmbeddedModel, value: Any) -> None:
    assert vocab_model.accepts(json_schema_grammar({"enum": _ENUM}), json.dumps(value))


@pytest.mark.parametrize("text", ['"abd"', '""', '"abcd"', "100", "0", '{"k": [2]}', '"q"'])
def test_enum_trie_refuses_everything_else(vocab_model: EmbeddedModel, text: str) -> None:
    assert not vocab_model.accepts(json_schema_grammar({"enum": _ENUM}), text)


def test_a_thousand_enum_values_share_their_prefixes(vocab_model: EmbeddedModel) -> None:
    values = [f"value number {i}" for i in range(1000)]
    grammar = json_schema_grammar({"type": "object", "properties": {"v": {"enum": values}}})
    check_grammar(grammar, vocab_model.vocab)
    assert vocab_model.accepts(grammar, '{"v": "value number 999"}')
    assert not vocab_model.accepts(grammar, '{"v": "value number 1000"}')
