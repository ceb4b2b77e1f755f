"""Responses API input items: validated, normalized, and turned into chat turns.

Normalized items are what the store keeps and ``input_items`` lists: ``message`` items (with
an id and a list of ``input_text`` or ``output_text`` parts), ``function_call`` and
``function_call_output`` items. Deviations from the OpenAI reference: ``reasoning`` items are
dropped, whether sent back in ``input`` or stored as an earlier response's output (chat
templates drop earlier turns' reasoning too); ``item_reference`` items are refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from stream.errors import InvalidRequest

__all__ = ["input_items", "messages"]

_ROLES = {"user", "assistant", "system", "developer"}
_NOT_TEXT = {"input_image", "input_file", "input_audio"}


def input_items(value: Any) -> tuple[dict[str, Any], ...]:
    """``input`` (a string or items) as normalized items. :raises InvalidRequest: naming
    the item or part."""
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(value, str):
        return (_message_item("user", [_text_part(value)]),)
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input' must be a string or a non-empty array of items.", param="input"
        )
    items: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        kind = item.get("type", "message")
        if kind == "message":
            items.append(_message(item, at))
        elif kind == "function_call":
            items.append(
                {
                    "type": "function_call",
                    "id": _string(item, "id", at, required=False) or _item_id("fc"),
                    "call_id": _string(item, "call_id", at),
                    "name": _string(item, "name", at),
                    "arguments": _string(item, "arguments", at),
                    "status": "completed",
                }
            )
        elif kind == "function_call_output":
            items.append(
                {
                    "type": "function_call_output",
                    "id": _string(item, "id", at, required=False) or _item_id("fco"),
                    "call_id": _string(item, "call_id", at),
                    "output": _output(item.get("output"), at),
                    "status": "completed",
                }
            )
        elif kind == "reasoning":
            continue
        else:
            raise InvalidRequest(
                f"'{at}.type' {kind!r} is not supported: Sluice takes 'message', "
                "'function_call' and 'function_call_output' items.",
                param=f"{at}.type",
            )
    if not items:
        raise InvalidRequest("'input' holds no message or function call items.", param="input")
    return tuple(items)


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _text_part(text: str, kind: str = "input_text") -> dict[str, Any]:
    return {"type": kind, "text": text}


def _message_item(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "id": _item_id("msg"), "role": role, "content": content}


def _message(item: Mapping[str, Any], at: str) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(
            f"Invalid value for '{at}.role': {role!r}; expected one of "
            f"{', '.join(sorted(_ROLES))}.",
            param=f"{at}.role",
        )
    content = item.get("content")
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts = [_text_part(content, kind)]
    elif isinstance(content, list):
        parts = [_part(part, f"{at}.content[{j}]", kind) for j, part in enumerate(content)]
    else:
        raise InvalidRequest(
            f"'{at}.content' must be a string or an array of parts.", param=f"{at}.content"
        )
    entry = _message_item(role, parts)
    if isinstance(item.get("id"), str):
        entry["id"] = item["id"]
    return entry


def _part(part: Any, at: str, kind: str) -> dict[str, Any]:
    given = part.get("type") if isinstance(part, dict) else None
    if given in _NOT_TEXT:
        raise InvalidRequest(
            f"'{at}' is an {given} part; Sluice serves text models only.", param=f"{at}.type"
        )
    # Assistant turns a client sends back may carry refusals; they are the turn's text.
    texts = {"input_text": "text", "output_text": "text", "refusal": "refusal"}
    key = texts.get(given) if isinstance(given, str) else None
    if key is None or not isinstance(part.get(key), str):
        raise InvalidRequest(
            f"'{at}' must be a text part ({{'type': 'input_text', 'text': ...}}).", param=at
        )
    return _text_part(part[key], kind)


def _string(item: Mapping[str, Any], name: str, at: str, *, required: bool = True) -> str:
    value = item.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{at}.{name}' must be a string.", param=f"{at}.{name}")
    return value


def _output(value: Any, at: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            _part(p, f"{at}.output[{j}]", "input_text")["text"] for j, p in enumerate(value)
        )
    raise InvalidRequest(f"'{at}.output' must be a string or text parts.", param=f"{at}.output")


def messages(items: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The conversation as chat messages (the shape ``Model.chat_prompt`` takes):
    consecutive function calls join one assistant turn, outputs become ``tool`` turns."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "reasoning":
            continue  # an earlier response's output, kept in the store
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            out.append({"role": role, "content": "".join(p["text"] for p in item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                last["content"] = last["content"] or None
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            out.append({"role": "tool", "content": item["output"], "tool_call_id": item["call_id"]})
    return out
