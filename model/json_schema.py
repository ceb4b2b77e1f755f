"""JSON schemas checked and rewritten into what llama-cpp-python's grammar converter handles.

Used by :mod:`model.grammar`. This is where the schema side of structured output deviates from
JSON Schema, on purpose:

- Refused (:class:`SchemaError`, a 400 naming keyword and place): ``not``, ``if``/``then``/
  ``else``, ``patternProperties``, ``propertyNames``, ``dependentSchemas``, ``dependencies``,
  ``unevaluated*``, ``contains``, dynamic refs, refs outside the schema (anything but ``#...``),
  ``allOf`` parts (or siblings of ``anyOf``/``$ref``) that disagree, ``pattern``s that are
  malformed, outside the subset :mod:`model.pattern` lists, or too costly to enforce (see
  :mod:`model.automaton`), nesting deeper than 32, more than 10000 subschemas or 1000 enum
  values, and more than :data:`MAX_BRANCHES` alternatives open at once (see below).
- Accepted, not enforced: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``,
  ``multipleOf``, ``uniqueItems``, ``minProperties``, ``maxProperties``, ``format`` other than
  ``date``, ``time``, ``date-time`` and ``uuid``, ``maxLength``/``maxItems`` above 1000.
- Narrower than the schema (the output still validates): an object that declares
  ``properties`` gets no others, a schema without ``type`` takes the types its keywords imply,
  ``oneOf`` acts as ``anyOf``, tuples (``prefixItems``) are written in full, ``format`` and
  lengths beside a ``pattern`` are dropped.
- ``strict`` adds OpenAI's Structured Outputs rules: an object at the root, and every object
  with ``additionalProperties: false`` and all its properties in ``required``.

Alternatives open at once: llama.cpp's grammar keeps a parse stack for every alternative that
still fits the output so far, and its pass over the whole vocabulary (needed whenever the
model's own choice does not fit) costs about half a millisecond per stack on a small CPU, in
the step every stream shares. So a schema may hold at most :data:`MAX_BRANCHES` open together:
an ``anyOf`` counts the sum of its branches, an object its optional properties plus one, an
``enum`` the most characters that can follow a common prefix of its values (they are written
as a trie), a ``$ref`` what it points to (a recursive one counts 1; the engine's per-token
bound covers what recursion adds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .automaton import compile_pattern
from .errors import InvalidInput
from .pattern import PatternError

__all__ = ["MAX_BRANCHES", "SAFE_STRING_CHAR", "SchemaError", "literal_trie", "normalize_schema"]

#: Alternatives a schema may hold open at once (see the notes). Measured with the embedded
#: model on the 2-core CI machine: a whole-vocabulary grammar pass costs at most 65 ms of CPU
#: at this limit (an anyOf of 64 objects sharing their first key), 15 ms for json_object.
MAX_BRANCHES: Final = 64

_MAX_DEPTH: Final = 32
_MAX_NODES: Final = 10_000
_MAX_LITERALS: Final = 1000
_MAX_LITERAL_CHARS: Final = 100_000
# llama.cpp's grammar parser fails on optional repetitions nested much deeper than this.
_MAX_REPEAT: Final = 1000
_TYPES: Final = ("object", "array", "string", "number", "integer", "boolean", "null")
# Keyword lists read better as words.
_REFUSED: Final = frozenset(
    "not if then else patternProperties propertyNames dependentSchemas dependentRequired"  # noqa: SIM905
    " dependencies unevaluatedProperties unevaluatedItems contains minContains maxContains"
    " additionalItems $dynamicRef $recursiveRef".split()
)
_IGNORED: Final = frozenset(
    "title description default examples $comment deprecated readOnly writeOnly $schema $id"  # noqa: SIM905
    " $anchor $dynamicAnchor $recursiveAnchor $vocabulary $defs definitions contentEncoding"
    " contentMediaType contentSchema minimum maximum exclusiveMinimum exclusiveMaximum"
    " multipleOf uniqueItems minProperties maxProperties".split()
)
_IMPLIED: Final = (
    ("object", ("properties", "additionalProperties", "required")),
    ("array", ("items", "prefixItems", "minItems", "maxItems")),
    ("string", ("pattern", "format", "minLength", "maxLength")),
)
_ANY: Final = ("object", "array", "string", "number", "boolean", "null")
_FORMATS: Final = re.compile(r"date|time|date-time|uuid[1-5]?")
#: A JSON string character that needs no escape, as a GBNF (and regex) character class.
SAFE_STRING_CHAR: Final = r'[^"\\\x7F\x00-\x1F]'


class SchemaError(InvalidInput):
    """The schema is malformed or asks for what cannot be enforced; says what and where."""


def normalize_schema(
    schema: Mapping[str, Any], *, strict: bool, ref_prefix: str, refs: dict[str, Any]
) -> dict[str, Any]:
    """``schema`` checked and rewritten; each ``$ref`` becomes ``ref_prefix + ref``, a key
    that ``refs`` maps to the rewritten target.

    :raises SchemaError: see the module notes.
    """
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a JSON schema must be an object, not {type(schema).__name__}")
    if strict and schema.get("type") != "object":
        raise SchemaError("strict schemas need 'type': 'object' at the root")
    return _Normalizer(schema, strict=strict, prefix=ref_prefix, refs=refs).schema(schema, "#", 0)


class _Normalizer:
    """Checks a schema and rewrites it into the subset the converter handles correctly."""

    def __init__(
        self, root: Mapping[str, Any], *, strict: bool, prefix: str, refs: dict[str, Any]
    ) -> None:
        self._root = root
        self._strict = strict
        self._prefix = prefix
        self._refs = refs
        self._nodes = 0
        self._literals = 0
        self._literal_chars = 0
        #: id(normalized node) -> (node, alternatives it holds open); the node keeps the id.
        self._widths: dict[int, tuple[Mapping[str, Any], int]] = {}
        self._measuring: set[str] = set()

    def schema(self, node: Any, path: str, depth: int) -> dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise SchemaError(f"the schema nests deeper than {_MAX_DEPTH} levels at {path}")
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise SchemaError(f"the schema has more than {_MAX_NODES} subschemas")
        if node is True:
            node = {}
        if not isinstance(node, Mapping):
            raise SchemaError(f"{path} must be a JSON schema (an object), not {node!r:.40}")
        for key in node:
            if key in _REFUSED:
                raise SchemaError(f"'{key}' at {path} cannot be enforced")
        node = {k: v for k, v in node.items() if k not in _IGNORED}
        if "$ref" in node:
            return self._ref(node, path, depth)
        if "allOf" in node:
            merged = {k: v for k, v in node.items() if k != "allOf"}
            for part in _array(node["allOf"], f"{path}/allOf"):
                merged = self._merge(merged, part, path)
            return self.schema(merged, path, depth + 1)
        if "anyOf" in node or "oneOf" in node:
            if "anyOf" in node and "oneOf" in node:
                raise SchemaError(f"{path} has both 'anyOf' and 'oneOf'")
            key = "anyOf" if "anyOf" in node else "oneOf"
            rest = {k: v for k, v in node.items() if k != key}
            options = _array(node[key], f"{path}/{key}")
            union = {
                "anyOf": [
                    self.schema(
                        self._merge(rest, opt, path) if rest else opt,
                        f"{path}/{key}/{i}",
                        depth + 1,
                    )
                    for i, opt in enumerate(options)
                ]
            }
            return self._bounded(union, f"{path}/{key}")
        if "const" in node or "enum" in node:
            values = [node["const"]] if "const" in node else _array(node["enum"], f"{path}/enum")
            self._literals += len(values)
            self._literal_chars += sum(len(json.dumps(value)) for value in values)
            if self._literals > _MAX_LITERALS or self._literal_chars > _MAX_LITERAL_CHARS:
                raise SchemaError(f"the schema's enum and const values exceed {_MAX_LITERALS}")
            return self._bounded({"enum": values}, f"{path}/enum" if "enum" in node else path)
        types = self._types(node, path)
        typed = [self._typed(node, t, path, depth) for t in types]
        return typed[0] if len(typed) == 1 else self._bounded({"anyOf": typed}, f"{path}/type")

    def _types(self, node: Mapping[str, Any], path: str) -> list[str]:
        declared = node.get("type")
        if declared is None:
            types = [t for t, keys in _IMPLIED if any(k in node for k in keys)] or list(_ANY)
        else:
            types = [declared] if isinstance(declared, str) else declared
            if not isinstance(types, list) or not types or any(t not in _TYPES for t in types):
                raise SchemaError(f"'type' at {path} must be one of {', '.join(_TYPES)}")
        if node.get("nullable") is True:
            types = [*types, "null"]
        return list(dict.fromkeys(types))

    def _typed(self, node: Mapping[str, Any], type_: str, path: str, depth: int) -> dict[str, Any]:
        if type_ == "object":
            return self._object(node, path, depth)
        if type_ == "array":
            return self._array(node, path, depth)
        if type_ != "string":
            return {"type": type_}
        if "pattern" in node:
            pattern = node["pattern"]
            if not isinstance(pattern, str):
                raise SchemaError(f"{path}/pattern must be a string")
            try:
                automaton = compile_pattern(pattern, f"{path}/pattern")
            except PatternError as exc:
                raise SchemaError(str(exc)) from None
            return {"type": "string", "pattern": automaton}
        if isinstance(node.get("format"), str) and _FORMATS.fullmatch(node["format"]):
            return {"type": "string", "format": node["format"]}
        return {"type": "string", **_bounds(node, "minLength", "maxLength", path)}

    def _object(self, node: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        if not isinstance(node.get("properties", {}), Mapping):
            raise SchemaError(f"'properties' at {path} must be an object")
        props = dict(node.get("properties", {}))
        required = node.get("required", [])
        extra = node.get("additionalProperties")
        if not isinstance(required, list) or not all(isinstance(n, str) for n in required):
            raise SchemaError(f"'required' at {path} must be an array of property names")
        if self._strict:
            if extra is not False:
                raise SchemaError(f"strict schemas need 'additionalProperties': false at {path}")
            if missing := [name for name in props if name not in required]:
                raise SchemaError(
                    f"strict schemas require every property; {path} leaves out {missing}"
                )
        for name in required:
            if name not in props:
                if extra is False:
                    raise SchemaError(f"'required' at {path} names {name!r}, not a property")
                props[name] = True
        out: dict[str, Any] = {"type": "object"}
        if "properties" in node or props:
            out["properties"] = {
                name: self.schema(sub, f"{path}/properties/{name}", depth + 1)
                for name, sub in props.items()
            }
            out["required"] = list(dict.fromkeys(required))
        elif extra is False:
            out["properties"] = {}
        elif isinstance(extra, Mapping):
            out["additionalProperties"] = self.schema(
                extra, f"{path}/additionalProperties", depth + 1
            )
        return self._bounded(out, path)

    def _array(self, node: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        items, tuple_ = node.get("items"), node.get("prefixItems")
        if isinstance(items, list):
            items, tuple_ = None, items
        bounds = _bounds(node, "minItems", "maxItems", path)
        if items is False and tuple_ is None:
            tuple_ = []
        if tuple_ is not None:
            size = len(tuple_) if isinstance(tuple_, list) else -1
            if not bounds.get("minItems", 0) <= size <= bounds.get("maxItems", size):
                raise SchemaError(f"the tuple at {path} cannot be enforced with its item counts")
            prefix = [
                self.schema(s, f"{path}/prefixItems/{i}", depth + 1) for i, s in enumerate(tuple_)
            ]
            return {"type": "array", "prefixItems": prefix}
        if items is None and not bounds:
            return {"type": "array"}
        item = _any() if items in (None, True) else self.schema(items, f"{path}/items", depth + 1)
        return {"type": "array", "items": item, **bounds}

    def _bounded(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """``node``, once its alternatives open at once are known to be within the bound."""
        width = self._width(node)
        if width > MAX_BRANCHES:
            raise SchemaError(
                f"{path} holds up to {width} alternatives open at once; more than "
                f"{MAX_BRANCHES} would slow every stream on this server (fewer anyOf "
                "branches or optional properties, or enum values that differ sooner)"
            )
        return node

    def _width(self, node: Mapping[str, Any]) -> int:
        """Alternatives ``node`` (normalized) can hold open at once, as the notes count them."""
        known = self._widths.get(id(node))
        if known is not None:
            return known[1]
        if "$ref" in node:
            ref = node["$ref"]
            if ref in self._measuring or ref not in self._refs:
                return 1  # a recursion, or a target still being normalized
            self._measuring.add(ref)
            width = self._width(self._refs[ref])
            self._measuring.discard(ref)
        elif "anyOf" in node:
            width = sum(self._width(option) for option in node["anyOf"])
        elif "enum" in node:
            width = _trie_width(json.dumps(value) for value in node["enum"])
        elif node.get("type") == "object":
            props = node.get("properties", {})
            required = set(node.get("required", ()))
            extra = node.get("additionalProperties")
            children = [*props.values(), *([extra] if isinstance(extra, Mapping) else [])]
            opened = 1 + sum(name not in required for name in props) + isinstance(extra, Mapping)
            width = max([opened, *(self._width(child) for child in children)])
        elif node.get("type") == "array":
            children = [*node.get("prefixItems", ()), *([node["items"]] if "items" in node else [])]
            width = max([1, *(self._width(child) for child in children)])
        else:
            width = 1
        self._widths[id(node)] = (node, width)
        return width

    def _ref(self, node: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        ref = node["$ref"]
        if len(node) > 1:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return self.schema(self._merge(rest, {"$ref": ref}, path), path, depth + 1)
        key = f"{self._prefix}{ref}"
        if key not in self._refs:
            self._refs[key] = {}  # claimed: a recursive reference stops here
            self._refs[key] = self.schema(self._target(ref, path), str(ref), depth + 1)
        return {"$ref": key}

    def _target(self, ref: Any, path: str) -> Any:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise SchemaError(
                f"'$ref' at {path} must point inside the schema ('#/...'), not {ref!r:.80}"
            )
        target: Any = self._root
        for part in ref[2:].split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise SchemaError(f"'$ref' {ref!r:.80} at {path} does not resolve")
        return target

    def _merge(self, base: Mapping[str, Any], part: Any, path: str) -> dict[str, Any]:
        # allOf, and anyOf/oneOf/$ref with sibling keywords: both sides must hold at once.
        if isinstance(part, Mapping) and "$ref" in part and len(part) == 1:
            part = self._target(part["$ref"], path)
        if part is True:
            part = {}
        if not isinstance(part, Mapping):
            raise SchemaError(f"the parts combined at {path} must be JSON schemas")
        merged = dict(base)
        for key, value in part.items():
            if key in _IGNORED or key not in merged:
                merged.setdefault(key, value)
            elif key == "properties" and isinstance(value, Mapping):
                if not isinstance(merged[key], Mapping):
                    raise SchemaError(f"'properties' at {path} must be an object")
                for name, sub in value.items():
                    if merged[key].get(name, sub) != sub:
                        raise SchemaError(
                            f"cannot combine two schemas of property {name!r} at {path}"
                        )
                merged[key] = {**merged[key], **value}
            elif key == "required" and isinstance(value, list) and isinstance(merged[key], list):
                merged[key] = [*merged[key], *value]
            elif merged[key] != value:
                raise SchemaError(f"cannot combine differing '{key}' at {path}")
        return merged


def _any() -> dict[str, Any]:
    return {"anyOf": [{"type": t} for t in _ANY]}


def _array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise SchemaError(f"{path} must be a non-empty array")
    return value


def _bounds(node: Mapping[str, Any], low_key: str, high_key: str, path: str) -> dict[str, int]:
    # The bounds worth writing: a minimum above 0, a maximum the grammar can hold.
    low, high = node.get(low_key, 0), node.get(high_key)
    for key, value in ((low_key, low), (high_key, high)):
        if value is not None and (type(value) is not int or value < 0):
            raise SchemaError(f"'{key}' at {path} must be a non-negative integer")
    if low > _MAX_REPEAT:
        raise SchemaError(f"'{low_key}' at {path} above {_MAX_REPEAT} cannot be enforced")
    if high is not None and high < low:
        raise SchemaError(f"'{high_key}' at {path} is below '{low_key}'")
    bounds = {low_key: low} if low else {}
    return bounds | ({high_key: high} if high is not None and high <= _MAX_REPEAT else {})


def literal_trie(texts: Iterable[str]) -> dict[str, Any]:
    """The texts as a trie of characters: a key ``""`` marks where a text ends, its value is
    that text; every other key is one character, its value the subtrie after it."""
    root: dict[str, Any] = {}
    for text in texts:
        node = root
        for char in text:
            node = node.setdefault(char, {})
        node[""] = text
    return root


def _trie_width(texts: Iterable[str]) -> int:
    widest, todo = 1, [literal_trie(texts)]
    while todo:
        node = todo.pop()
        widest = max(widest, len(node))
        todo.extend(child for key, child in node.items() if key)
    return widest
