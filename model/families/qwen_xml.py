"""Qwen3-Coder and Qwen3.5: XML-style calls, parameters converted to JSON arguments.

::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    <parameter=days>
    3
    </parameter>
    </function>
    </tool_call>

becomes ``get_weather`` with ``{"city": "Paris", "days": 3}``. One newline after
``<parameter=...>`` and one before ``</parameter>`` are markup. Each value is typed by the tool's
schema for that parameter: a string parameter's value is a JSON string, streamed as it arrives;
any other value is read whole and kept as JSON when it parses to an allowed type (a number, an
object, ``null``), else made a string. A parameter the schema does not declare is JSON when it
parses, else a string. A missing ``</parameter>`` is tolerated where the next ``<parameter=`` or
``</function>`` begins, and a ``<function=`` block without ``<tool_call>`` around it is a call too.
When the model stops in the middle of a call its arguments are closed (``"`` and ``}``); when
the output was cut short they are left as far as they got.

The forced-call grammar writes declared parameters in schema order (required ones always,
optional ones maybe); a string value there cannot contain ``</`` (nor ``<`` when its length is
bounded), and string constraints other than ``enum`` and lengths are not enforced.
Reasoning: ``<think>...</think>``, opened by Qwen3.5's template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from ..grammar import json_schema_rules
from ..params import Grammar
from ..tools import Tool, ToolChoice
from .family import CallSyntax, Family, ForcedCalls, gbnf_literal, names_of
from .markup import WHITESPACE, Lit, Name, Ws, match_any, partial_suffix
from .pieces import CallArgs, CallBegin, CallEnd, ContentText, SyntaxEvent

__all__ = ["QWEN3_CODER", "QwenXml"]

OPEN_TAG: Final = "<tool_call>"
CLOSE_TAG: Final = "</tool_call>"
FUNCTION: Final = "<function="
FUNCTION_END: Final = "</function>"
PARAMETER: Final = "<parameter="
PARAMETER_END: Final = "</parameter>"
_HEADS: Final = (
    (Lit(OPEN_TAG), Ws(), Lit(FUNCTION), Name(), Lit(">")),
    (Lit(FUNCTION), Name(), Lit(">")),
)
_VALUE_ENDS: Final = (PARAMETER_END, PARAMETER, FUNCTION_END)
_MAX_PARAMETER_NAME: Final = 128
_STRING: Final = frozenset({"string"})


class QwenXml(Family):
    """Qwen3-Coder's XML calls (module notes)."""

    name = "qwen3-coder"

    def syntax(self, tools: Sequence[Tool], prompt: str) -> CallSyntax:
        return _XmlParser(tools)

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
        forced = ForcedCalls.of(tools, choice)  # validates the chosen tools' schemas
        lines: list[str] = []
        schemas: dict[str, Mapping[str, Any]] = {}
        for i, tool in forced.tools:
            properties = tool.parameters.get("properties")
            required = set(tool.parameters.get("required") or ())
            defs = {k: v for k, v in tool.parameters.items() if k in ("$defs", "definitions")}
            body: list[str] = []
            for k, (key, schema) in enumerate(dict(properties or {}).items()):
                value = _string_value(schema)
                if value is None:
                    value = f"tool-value-{i}-{k}"
                    schemas[value] = {**schema, **defs} if isinstance(schema, Mapping) else {}
                rule = f"tool-param-{i}-{k}"
                head, tail = (
                    gbnf_literal(f"{PARAMETER}{key}>\n"),
                    gbnf_literal(f"\n{PARAMETER_END}\n"),
                )
                lines.append(f"{rule} ::= {head} {value} {tail}")
                body.append(rule if key in required else f"{rule}?")
            opening = gbnf_literal(f"{OPEN_TAG}\n{FUNCTION}{tool.name}>\n")
            closing = gbnf_literal(f"{FUNCTION_END}\n{CLOSE_TAG}")
            lines.append(f"tool-call-{i} ::= {' '.join([opening, *body, closing])}")
        lines.append('xml-text ::= ([^<] | "<" [^/])*')
        rules = json_schema_rules(schemas) if schemas else ""
        root = forced.repeat("tool-call", gbnf_literal("\n"))
        return Grammar(
            f"{rules}root ::= {root}\ntool-call ::= {forced.alternatives('tool-call')}\n"
            + "\n".join(lines)
            + "\n"
        )

    def write_calls(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        written = []
        for name, args in calls:
            parameters = "".join(
                f"{PARAMETER}{key}>\n"
                f"{value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
                f"\n{PARAMETER_END}\n"
                for key, value in args.items()
            )
            written.append(
                f"{OPEN_TAG}\n{FUNCTION}{name}>\n{parameters}{FUNCTION_END}\n{CLOSE_TAG}"
            )
        return "\n".join(written)

    @property
    def call_markers(self) -> tuple[str, ...]:
        return (OPEN_TAG, CLOSE_TAG, FUNCTION, FUNCTION_END, PARAMETER, PARAMETER_END)


def _string_value(schema: Any) -> str | None:
    """The grammar of a string parameter's bare value, or None for other types."""
    if not isinstance(schema, Mapping) or _kinds(schema) != _STRING:
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return "(" + " | ".join(gbnf_literal(v) for v in enum) + ")"
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(high, int) or isinstance(low, int):
        # Bounded text leaves out "<" altogether, so that the bound counts characters.
        low = low if isinstance(low, int) and low > 0 else 0
        return f"[^<]{{{low},{high if isinstance(high, int) else ''}}}"
    return "xml-text"


def _kinds(schema: Any) -> frozenset[str] | None:
    """The JSON types a schema allows; None when it does not say."""
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return frozenset({kind})
    if isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        return frozenset(kind)
    for key in ("enum", "const"):
        if key in schema:
            values = schema[key] if key == "enum" else [schema[key]]
            if isinstance(values, list):
                return frozenset(_kind_of(v) for v in values)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            kinds = [_kinds(option) for option in options]
            if any(k is None for k in kinds):
                return None
            return frozenset().union(*(k for k in kinds if k is not None))
    return None


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def _typed(text: str, kinds: frozenset[str] | None) -> str:
    """A whole non-string value as JSON text (see the module notes)."""
    try:
        value = json.loads(text.strip(WHITESPACE))
    except ValueError:
        return json.dumps(text, ensure_ascii=False)
    kind = _kind_of(value)
    allowed = kinds is None or kind in kinds or (kind == "integer" and "number" in kinds)
    if not allowed or (kind == "string" and kinds is not None):
        return json.dumps(text, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


_State = Literal["text", "head", "params", "name", "value", "tail"]


class _XmlParser:
    def __init__(self, tools: Sequence[Tool]) -> None:
        self._names = names_of(tools)
        self._schemas = {tool.name: tool.parameters for tool in tools}
        self._buffer = ""
        self._state: _State = "text"
        self._opener = ""
        self._properties: Mapping[str, Any] = {}
        self._first = True
        self._kinds: frozenset[str] | None = None
        self._streamed = False  # the value is a string, streamed as it comes
        self._fresh = True  # the value's first newline (markup) may still come
        self._closed = False  # the tail's </tool_call> was seen
        self._steps = {
            "text": self._text,
            "head": self._head,
            "params": self._params,
            "name": self._name,
            "value": self._value,
            "tail": self._tail,
        }

    def push(self, text: str) -> list[SyntaxEvent]:
        self._buffer += text
        return self._run(final=False, truncated=False)

    def finish(self, *, truncated: bool = False) -> list[SyntaxEvent]:
        return self._run(final=True, truncated=truncated)

    def _run(self, *, final: bool, truncated: bool) -> list[SyntaxEvent]:
        events: list[SyntaxEvent] = []
        while self._steps[self._state](events, final, truncated):
            pass
        return events

    def _text(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        buffer = self._buffer
        hits = [(at, tag) for tag in (OPEN_TAG, FUNCTION) if (at := buffer.find(tag)) >= 0]
        if hits:
            start, self._opener = min(hits)
            _content(events, buffer[:start])
            self._buffer, self._state = buffer[start:], "head"
            return True
        held = partial_suffix(buffer, (OPEN_TAG, FUNCTION))
        if final:
            buffer, held = (buffer[: len(buffer) - held] if truncated else buffer), 0
        _content(events, buffer[: len(buffer) - held])
        self._buffer = buffer[len(buffer) - held :]
        return False

    def _head(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        found = match_any(self._buffer, 0, _HEADS, self._names)
        if found.status == "yes":
            events += [CallBegin(found.name), CallArgs("{")]
            properties = self._schemas[found.name].get("properties")
            self._properties = properties if isinstance(properties, Mapping) else {}
            self._buffer, self._state, self._first = self._buffer[found.end :], "params", True
            return True
        if found.status == "more" and not final:
            return False
        if found.status == "more" and truncated:
            self._buffer = ""
            return False
        _content(events, self._opener)
        self._buffer, self._state = self._buffer[len(self._opener) :], "text"
        return True

    def _params(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        rest = self._buffer.lstrip(WHITESPACE)
        if rest.startswith(PARAMETER):
            self._buffer, self._state = rest[len(PARAMETER) :], "name"
            return True
        if rest.startswith(FUNCTION_END):
            events += [CallArgs("}"), CallEnd()]
            self._buffer, self._state = rest[len(FUNCTION_END) :], "tail"
            return True
        partial = not rest or PARAMETER.startswith(rest) or FUNCTION_END.startswith(rest)
        if partial and not final:
            return False
        # The block broke off (or the output ended): close the call; what follows is text,
        # unless it is the start of more markup at the very end.
        events += [CallEnd()] if truncated else [CallArgs("}"), CallEnd()]
        self._buffer, self._state = "" if truncated or partial else rest, "text"
        return True

    def _name(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        end = self._buffer.find(">")
        if end < 0 and len(self._buffer) <= _MAX_PARAMETER_NAME and not final:
            return False
        if end < 0 or end > _MAX_PARAMETER_NAME:
            events += [CallEnd()] if truncated else [CallArgs("}"), CallEnd()]
            self._buffer, self._state = "" if truncated or end < 0 else self._buffer, "text"
            return True
        key = self._buffer[:end]
        self._kinds = _kinds(self._properties.get(key)) if key in self._properties else None
        self._streamed = self._kinds == _STRING
        lead = "" if self._first else ", "
        self._first = False
        opening = '"' if self._streamed else ""
        events.append(CallArgs(f"{lead}{json.dumps(key, ensure_ascii=False)}: {opening}"))
        self._buffer, self._state, self._fresh = self._buffer[end + 1 :], "value", True
        return True

    def _value(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        buffer = self._buffer
        if self._fresh:
            if not buffer and not final:
                return False
            if buffer.startswith("\n"):
                buffer = buffer[1:]
            self._buffer, self._fresh = buffer, False
        hits = [(at, end) for end in _VALUE_ENDS if (at := buffer.find(end)) >= 0]
        if hits:
            at, end = min(hits)
            value = buffer[:at].removesuffix("\n")
            self._emit_value(events, value, closed=True)
            consumed = at + len(end) if end == PARAMETER_END else at
            self._buffer, self._state = buffer[consumed:], "params"
            return True
        if final:
            if truncated:
                value = buffer[: len(buffer) - partial_suffix(buffer, _VALUE_ENDS)]
                if self._streamed:
                    self._emit_value(events, value, closed=False)
                events.append(CallEnd())
            else:
                self._emit_value(events, buffer.removesuffix("\n"), closed=True)
                events += [CallArgs("}"), CallEnd()]
            self._buffer, self._state = "", "text"
            return False
        if self._streamed:
            held = partial_suffix(buffer, _VALUE_ENDS)
            ready = buffer[: len(buffer) - held]
            if ready.endswith("\n"):  # perhaps the newline before </parameter>
                ready = ready[:-1]
            self._emit_value(events, ready, closed=False)
            self._buffer = buffer[len(ready) :]
        return False

    def _emit_value(self, events: list[SyntaxEvent], value: str, *, closed: bool) -> None:
        if self._streamed:
            text = json.dumps(value, ensure_ascii=False)[1:-1] + ('"' if closed else "")
        else:
            text = _typed(value, self._kinds) if closed else ""
        if text:
            events.append(CallArgs(text))

    def _tail(self, events: list[SyntaxEvent], final: bool, truncated: bool) -> bool:
        # After </function>: whitespace, </tool_call>, whitespace, all dropped.
        rest = self._buffer.lstrip(WHITESPACE)
        if not self._closed and rest.startswith(CLOSE_TAG):
            rest, self._closed = rest[len(CLOSE_TAG) :].lstrip(WHITESPACE), True
        partial = not rest or (not self._closed and CLOSE_TAG.startswith(rest))
        if partial and not final:
            self._buffer = rest
            return False
        self._buffer, self._state, self._closed = "" if partial else rest, "text", False
        return True


def _content(events: list[SyntaxEvent], text: str) -> None:
    if text:
        events.append(ContentText(text))


QWEN3_CODER: Final = QwenXml()
