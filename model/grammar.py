"""Structured output: llama.cpp GBNF grammars that hold generation to JSON.

A JSON schema is checked and rewritten by :mod:`model.json_schema` (whose notes list what is
refused, what is not enforced and what is narrowed), then converted by llama-cpp-python's
converter (``llama_cpp.llama_grammar``) with three fixes, in a subclass:

- literals (enum values, consts, property names) holding ``"``, ``\\`` or escapes are written
  as valid GBNF for the JSON text; the converter writes them broken or unescaped;
- each ``$ref`` gets its own rule; the converter reuses any existing rule of the same name;
- a string character excludes raw control characters, which JSON forbids;
- a ``pattern`` becomes the rules of a deterministic automaton (:mod:`model.automaton`);
- an ``enum`` is written as a trie of its values' JSON texts, so that values sharing a prefix
  hold one parse stack, not one each, while it is read.

Whitespace is bounded so a model cannot run away in it: at most one space after each token in
schema grammars (the converter's rule); in the ``json_object`` grammar, a space, or a newline
and up to 20 indentation characters, between tokens and before the object.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from .automaton import Automaton
from .errors import InvalidInput
from .json_schema import SAFE_STRING_CHAR, SchemaError, literal_trie, normalize_schema
from .params import Grammar

__all__ = [
    "Grammar",
    "GrammarError",
    "check_grammar",
    "gbnf_literal",
    "json_object_grammar",
    "json_schema_grammar",
    "json_schema_rules",
    "trie_rules",
]

_RULE_NAME: Final = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_JSON_CHAR: Final = SAFE_STRING_CHAR + r' | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_JSON_OBJECT: Final = rf"""root ::= ws object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}}" ws
array ::= "[" ws ( value ( "," ws value )* )? "]" ws
string ::= "\"" char* "\"" ws
char ::= {_JSON_CHAR}
number ::= "-"? ("0" | [1-9] [0-9]{{0,15}}) ("." [0-9]{{1,16}})? ([eE] [-+]? [0-9]{{1,3}})? ws
ws ::= | " " | "\n" [ \t]{{0,20}}
"""


class GrammarError(InvalidInput):
    """The requested format cannot be enforced; the message is client-facing (becomes a 400)."""


def json_object_grammar() -> Grammar:
    """Any JSON object (``response_format: {"type": "json_object"}``)."""
    return Grammar(_JSON_OBJECT)


def json_schema_grammar(schema: Mapping[str, Any], *, strict: bool = False) -> Grammar:
    """A grammar for JSON text valid against ``schema`` (see the module notes for the limits).

    :raises GrammarError: the schema is malformed, too large, or uses what cannot be enforced;
        with ``strict``, also a schema breaking OpenAI's strict rules.
    """
    return Grammar(_schema_rules({"root": schema}, strict=strict))


def json_schema_rules(schemas: Mapping[str, Mapping[str, Any]], *, strict: bool = False) -> str:
    """GBNF rules for several schemas in one grammar, the rule for ``schemas[name]`` being
    ``name``, so that callers can write rules around them.

    Names are lowercase words joined by hyphens (``tool-args-0``). Generated rules are either
    capitalised (``S0-...``) or JSON primitives (``string``, ``value``, ``space``, ...), so a
    caller's own lowercase rule names cannot collide with them unless they are such a primitive.

    :raises GrammarError: as :func:`json_schema_grammar`.
    :raises ValueError: a name is not a lowercase hyphenated word, or is a primitive's.
    """
    for name in schemas:
        if not _RULE_NAME.fullmatch(name) or name in _converter_class().reserved:
            raise ValueError(f"{name!r} cannot name a grammar rule here")
    return _schema_rules(schemas, strict=strict)


def check_grammar(grammar: Grammar, vocab: Any) -> None:
    """Compile ``grammar`` with llama.cpp against a model's ``vocab`` and free it again.

    :raises GrammarError: llama.cpp does not accept the grammar (it logs the reason).
    """
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(
        vocab, grammar.text.encode(), grammar.root.encode()
    )
    if not sampler:
        raise GrammarError("llama.cpp cannot parse the grammar built for this format")
    llama_cpp.llama_sampler_free(sampler)


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def trie_rules(entries: Mapping[str, str], claim: Callable[[], str]) -> list[tuple[str, str]]:
    """GBNF rules for "one of the texts of ``entries``, then its continuation" (a GBNF
    fragment; empty for none), written as a trie: texts sharing a prefix share its parse.

    Returns ``(name, body)`` pairs, the first the entry rule; ``claim`` gives a new rule name
    each call.
    """
    first = claim()
    rules: list[tuple[str, str]] = []
    todo = [(literal_trie(entries), first)]
    while todo:  # iterative: a thousand nested prefixes must not recurse a thousand deep
        node, name = todo.pop()
        options = []
        for key, child in node.items():
            if key == "":
                options.append(entries[child] or '""')
                continue
            chain = key
            while len(child) == 1 and "" not in child:
                ((key, child),) = child.items()
                chain += key
            if len(child) == 1:  # nothing but the end of one text
                options.append(f"{gbnf_literal(chain)} {entries[child['']]}".rstrip())
            else:
                sub = claim()
                options.append(f"{gbnf_literal(chain)} {sub}")
                todo.append((child, sub))
        rules.append((name, " | ".join(options)))
    return rules


def _schema_rules(schemas: Mapping[str, Mapping[str, Any]], *, strict: bool) -> str:
    refs: dict[str, Any] = {}
    tops: dict[str, Any] = {}
    try:
        for i, (name, schema) in enumerate(schemas.items()):
            tops[name] = normalize_schema(schema, strict=strict, ref_prefix=f"S{i}", refs=refs)
        converter = _converter_class()(refs)
        for i, (name, normal) in enumerate(tops.items()):
            converter.alias(name, converter.visit(normal, f"S{i}"))
        return str(converter.format_grammar()) + "\n"
    except SchemaError as exc:
        raise GrammarError(str(exc)) from exc
    # The converter reports what it cannot handle with assertions and assorted exceptions.
    except (AssertionError, ValueError, LookupError, TypeError, RecursionError) as exc:
        raise GrammarError(f"cannot turn the schema into a grammar: {str(exc)[:200]}") from exc


@functools.cache
def _converter_class() -> Any:
    # Imported on first use: importing llama_cpp loads the native library (see model.llama).
    from llama_cpp import llama_grammar as lg

    base: Any = lg.SchemaConverter  # untyped
    unique = object()

    class Converter(base):  # type: ignore[misc]
        reserved = frozenset({*lg.RESERVED_NAMES, "space", *(f"uuid{i}" for i in range(1, 6))})

        def __init__(self, refs: dict[str, Any]) -> None:
            super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
            self._refs = refs
            self._ref_rules: dict[str, str] = {}

        def _format_literal(self, literal: str) -> str:
            return gbnf_literal(literal)

        def visit(self, schema: Any, name: str) -> Any:
            if isinstance(schema, dict) and schema.keys() == {"enum"}:
                rule = name + "-" if name in lg.RESERVED_NAMES else name or "root"
                entries = {json.dumps(value): "" for value in schema["enum"]}
                rules = trie_rules(entries, self._claimer(rule))
                for key, body in rules:
                    self._rules[key] = body
                return rules[0][0]
            return super().visit(schema, name)

        def _visit_pattern(self, pattern: Automaton, name: str) -> str:
            claim = self._claimer(f"{name}-q")
            names = ["" if pattern.final(s) else claim() for s in range(len(pattern.moves))]
            for state, body in enumerate(pattern.rules(names)):
                if names[state]:
                    self._rules[names[state]] = body
            entry = f"{names[0]} " if names[0] else ""
            return str(self._add_rule(name, f'"\\"" {entry}"\\"" space'))

        def _claimer(self, base: str) -> Callable[[], str]:
            # A placeholder equal to nothing makes _add_rule pick a name no rule has yet.
            return lambda: str(self._add_rule(base, object()))

        def _resolve_ref(self, ref: str) -> str:
            rule = self._ref_rules.get(ref)
            if rule is None:
                # Claim a name first, so that a recursive reference inside resolves to it.
                rule = self._ref_rules[ref] = self._add_rule(ref, unique)
                self._rules[rule] = self.visit(self._refs[ref], f"{rule}-def")
            return rule

        def _add_primitive(self, name: str, rule: Any) -> Any:
            if name == "char":
                rule = lg.BuiltinRule(_JSON_CHAR, [])
            return super()._add_primitive(name, rule)

        def alias(self, name: str, rule: str) -> None:
            self._rules[name] = rule

    return Converter
