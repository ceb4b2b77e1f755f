"""Writing earlier tool calls and results back through a template, in the shape it wants.

OpenAI clients send an assistant turn's calls as ``tool_calls`` with the arguments as a JSON
string and, often, ``content: null``, and each result as a ``tool`` turn. Templates differ in
what they accept: most ``tojson`` the arguments and so want an object (a string would come out
quoted and escaped), some concatenate them and want the string; some fail on ``None`` content,
one skips the calls unless the content is ``None``; Mistral's refuse call ids that are not nine
letters and digits; Llama 3's and gpt-oss' render one call per turn (the first one raises, the
other silently drops the rest); Granite 3.3's ignore ``tool_calls`` altogether.

Rather than a table per template, :func:`history_shape` renders a small probe conversation
through the template in each candidate shape and keeps the first in which the call's argument
value, unescaped, and the result both appear; :meth:`HistoryShape.apply` then rewrites real
messages into that shape. When no shape works, or the template is ``generic`` and declares no
tools, earlier turns are flattened into Sluice's generic format (:mod:`model.tools`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..template import ChatTemplate, TemplateError
from ..tools import flatten_tool_messages, template_supports_tools
from .family import Family

__all__ = ["FLATTENED", "HistoryShape", "history_shape"]

_ID_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_PROBE_TOOL: Final = {
    "type": "function",
    "function": {
        "name": "probe_lookup",
        "description": "Look a word up.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string", "description": "The word."}},
            "required": ["word"],
        },
    },
}


@dataclass(frozen=True, slots=True)
class HistoryShape:
    """How a template wants earlier tool turns; see the module notes."""

    #: False: the template cannot write them; they are flattened into the generic format.
    native: bool = True
    #: Arguments as a parsed object (else the JSON string as sent).
    object_arguments: bool = True
    #: ``content`` of an assistant turn with calls and no text: ``None`` (else ``""``).
    null_content: bool = True
    #: Call ids rewritten to nine letters and digits, the same for a call and its result.
    short_ids: bool = False
    #: Each call in its own assistant turn, followed by its result.
    one_call_per_turn: bool = False
    #: The template ignores ``tool_calls``: they are written into the content, as the family
    #: writes them.
    calls_in_content: bool = False

    def apply(self, messages: Sequence[Mapping[str, Any]], family: Family) -> list[dict[str, Any]]:
        """``messages`` (OpenAI-shaped, string or ``None`` contents) in this shape."""
        if not self.native:
            return flatten_tool_messages(messages)
        out: list[dict[str, Any]] = []
        i = 0
        while i < len(messages):
            message = dict(messages[i])
            i += 1
            calls = message.pop("tool_calls", None) or []
            if message.get("role") == "tool":
                out.append(self._result(message))
                continue
            if calls and not message.get("content"):
                message["content"] = None if self.null_content else ""
            elif message.get("content") is None:
                message["content"] = ""
            if not calls:
                out.append(message)
                continue
            if not self.one_call_per_turn or len(calls) == 1:
                out.append(self._turn(message, calls, family))
                continue
            # Pair each call with its result from the tool turns that follow.
            results: list[dict[str, Any]] = []
            while i < len(messages) and messages[i].get("role") == "tool":
                results.append(dict(messages[i]))
                i += 1
            for n, call in enumerate(calls):
                text = message["content"] if n == 0 else None
                turn = {**message, "content": text if text or self.null_content else ""}
                out.append(self._turn(turn, [call], family))
                match = next((r for r in results if r.get("tool_call_id") == call.get("id")), None)
                if match is not None:
                    results.remove(match)
                    out.append(self._result(match))
            out += [self._result(result) for result in results]
        return out

    def _turn(
        self, message: dict[str, Any], calls: Sequence[Mapping[str, Any]], family: Family
    ) -> dict[str, Any]:
        if self.calls_in_content:
            written = family.write_calls(
                [(str(_function(call).get("name")), _object(_arguments(call))) for call in calls]
            )
            return {**message, "content": (message.get("content") or "") + written}
        shaped = []
        for call in calls:
            function = dict(_function(call))
            if self.object_arguments:
                function["arguments"] = _arguments(call)
            shaped.append({**call, "id": self._id(call.get("id")), "function": function})
        return {**message, "tool_calls": shaped}

    def _result(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("content") is None:
            message["content"] = ""
        if "tool_call_id" in message:
            message["tool_call_id"] = self._id(message["tool_call_id"])
        return message

    def _id(self, call_id: Any) -> Any:
        if not self.short_ids:
            return call_id
        digest = hashlib.sha256(str(call_id).encode()).digest()
        return "".join(_ID_ALPHABET[byte % len(_ID_ALPHABET)] for byte in digest[:9])


#: Earlier tool turns flattened into the generic format.
FLATTENED: Final = HistoryShape(native=False)


def history_shape(template: ChatTemplate, family: Family) -> HistoryShape:
    """The shape in which ``template`` writes earlier calls and results (module notes)."""
    if family.name == "generic" and not template_supports_tools(template.source):
        return FLATTENED
    # Preferred first: calls as tool_calls, arguments as an object, null content, ids as sent.
    for in_content, objects, null, short in itertools.product(
        (False, True), (True, False), (True, False), (False, True)
    ):
        shape = HistoryShape(True, objects, null, short, False, in_content)
        if _renders(template, family, shape, calls=1):
            for split in (False, True):
                multi = HistoryShape(True, objects, null, short, split, in_content)
                if _renders(template, family, multi, calls=2):
                    return multi
            return shape
    return FLATTENED


def _renders(template: ChatTemplate, family: Family, shape: HistoryShape, *, calls: int) -> bool:
    tool_calls = [
        {
            "id": f"call_probe{n}abcdef0123456789",
            "type": "function",
            "function": {"name": "probe_lookup", "arguments": f'{{"word": "probe-value-{n}"}}'},
        }
        for n in range(calls)
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Look up the probe words."},
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        *(
            {"role": "tool", "tool_call_id": call["id"], "content": f"probe-result-{n}"}
            for n, call in enumerate(tool_calls)
        ),
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Thanks."},
    ]
    try:
        text = template.render(shape.apply(messages, family), tools=[_PROBE_TOOL])
    except TemplateError:
        return False
    return all(
        f"probe-value-{n}" in text
        and f'\\"probe-value-{n}' not in text
        and f"probe-result-{n}" in text
        for n in range(calls)
    )


def _function(call: Mapping[str, Any]) -> Mapping[str, Any]:
    function = call.get("function")
    return function if isinstance(function, Mapping) else {}


def _object(arguments: Any) -> dict[str, Any]:
    return arguments if isinstance(arguments, dict) else {}


def _arguments(call: Mapping[str, Any]) -> Any:
    """The arguments as an object when they parse to one, else as sent."""
    raw = _function(call).get("arguments")
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw
