"""A ``/v1/messages`` body, validated and turned into the conversation Sluice renders.

Fields follow the Anthropic Messages API reference. Content blocks map onto the chat
conversation the chat adapter builds, so prompts, tools and grammars are shared:

- ``system`` (a string or text blocks) becomes the system message, and so does a message
  of role ``system`` (text only) where it stands;
- an assistant's ``tool_use`` blocks become its ``tool_calls`` (``input`` as JSON text);
- a user's ``tool_result`` blocks become ``tool`` messages (before the user's own text, as
  Anthropic requires them first); ``is_error`` prefixes the result with ``Error:``;
- ``tools`` (``name``, ``description``, ``input_schema``) become function tools and
  ``tool_choice`` ``auto`` / ``any`` / ``tool`` / ``none`` the chat API's ``auto`` /
  ``required`` / a named function / ``none``; ``disable_parallel_tool_use`` is
  ``parallel_tool_calls: false``.

``thinking`` (extended thinking) becomes the chat route's reasoning options:

- ``{"type": "enabled", "budget_tokens": N}``: thinking on (``enable_thinking: true`` for
  templates that read it) with a thinking budget of N tokens; N must be below ``max_tokens``,
  as Anthropic requires, but may be below Anthropic's minimum of 1024 (small local models
  think briefly);
- ``{"type": "adaptive"}``: thinking on, the server's ``--reasoning-budget``;
- ``{"type": "disabled"}``, or no ``thinking`` at all (as Anthropic's models answer without
  thinking unless asked): thinking off (``enable_thinking: false``, and a budget of 0 closes a
  think block the template opens anyway); what a model still writes as reasoning is dropped,
  never sent as text;
- ``display: "omitted"``: thinking blocks are sent with empty ``thinking``.

Thinking and redacted-thinking blocks sent back in an assistant message are accepted and
dropped, as chat templates drop earlier turns' reasoning.

Deviations: a last ``assistant`` message (a prefill the answer would continue) is refused,
as are image, document and server-tool blocks; ``cache_control`` and ``citations`` on blocks
are accepted and have no effect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from model.params import SamplingParams
from stream.errors import InvalidRequest

from ..openai import boolean, integer, number
from ..reasoning import ReasoningOptions

__all__ = ["MAX_STOP_SEQUENCES", "MessagesRequest", "parse"]

#: Most ``stop_sequences``: each is matched against every token's text.
MAX_STOP_SEQUENCES = 16
_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "service_tier",
        "thinking",
    }
)
#: What count_tokens reads (the others are a generation's).
_COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """A ``/v1/messages`` (or ``count_tokens``) body, validated."""

    model: str | None
    #: The conversation in the chat adapter's terms (system, user, assistant, tool).
    messages: tuple[dict[str, Any], ...]
    #: How many messages the client sent (the ``--max-messages`` limit counts these).
    count: int
    stream: bool = False
    max_tokens: int = 1
    stop: tuple[str, ...] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    #: ``tools`` in the chat API's form (None: none), and the chat API's ``tool_choice``.
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    #: ``thinking`` as the chat route's reasoning options (see the module notes).
    reasoning: ReasoningOptions = field(default_factory=lambda: _thinking_off())
    #: Thinking blocks in the answer: ``shown``, ``omitted`` (empty text) or ``none``.
    thinking: Literal["shown", "omitted", "none"] = "none"


def _text_blocks(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InvalidRequest(f"'{param}' must be a string or an array of text blocks.", param=param)
    texts = []
    for j, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"'{param}[{j}]' must be a text block.", param=f"{param}[{j}]")
        texts.append(_string(block, "text", f"{param}[{j}].text"))
    return "".join(texts)


def _string(block: Mapping[str, Any], key: str, param: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{param}' must be a string.", param=param)
    return value


def _tool_use(block: Mapping[str, Any], at: str) -> dict[str, Any]:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{at}.input' must be an object.", param=f"{at}.input")
    name = _string(block, "name", f"{at}.name")
    function = {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}
    return {"id": _string(block, "id", f"{at}.id"), "type": "function", "function": function}


def _tool_result(block: Mapping[str, Any], at: str) -> dict[str, Any]:
    call_id = _string(block, "tool_use_id", f"{at}.tool_use_id")
    content = block.get("content")
    text = "" if content is None else _text_blocks(content, f"{at}.content")
    is_error = boolean(block, "is_error")
    return {
        "role": "tool",
        "tool_call_id": call_id,
        "content": f"Error: {text}" if is_error else text,
    }


def _message(message: Any, i: int) -> list[dict[str, Any]]:
    at = f"messages[{i}]"
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{at}' must be an object.", param=at)
    role = message.get("role")
    if role not in ("user", "assistant", "system"):
        raise InvalidRequest(
            f"Invalid value for '{at}.role': {role!r}; expected 'user', 'assistant' or 'system'.",
            param=f"{at}.role",
        )
    if role == "system":
        return [
            {"role": "system", "content": _text_blocks(message.get("content"), f"{at}.content")}
        ]
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{at}.content' must be a string or an array of content blocks.",
            param=f"{at}.content",
        )
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where = f"{at}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_string(block, "text", f"{where}.text"))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_use(block, where))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, where))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # earlier reasoning: templates drop it
        else:
            raise InvalidRequest(
                f"'{where}.type' {kind!r} is not supported in a {role} message here; Sluice "
                "takes text, tool_use and thinking (assistant) and tool_result (user) blocks.",
                param=f"{where}.type",
            )
    text = "".join(texts)
    if role == "assistant":
        turn: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            turn["tool_calls"] = calls
        return [turn]
    if text or not results:
        results.append({"role": "user", "content": text})
    return results


def _conversation(body: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    turns: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        turns.append({"role": "system", "content": _text_blocks(system, "system")})
    for i, message in enumerate(messages):
        turns += _message(message, i)
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        last = f"messages[{len(messages) - 1}]"
        raise InvalidRequest(
            f"'{last}' is an assistant message: continuing a prefilled answer is not "
            "supported here; end the conversation with a user message.",
            param=last,
        )
    return tuple(turns)


def _tools(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest("'tools' must be an array of tools.", param="tools")
    tools = []
    for i, tool in enumerate(value):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequest(
                f"'{at}.type' {tool['type']!r}: Sluice runs no server tools; only client tools "
                "(name, description, input_schema) are supported.",
                param=f"{at}.type",
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(
                f"'{at}.input_schema' must be a JSON schema object.", param=f"{at}.input_schema"
            )
        function: dict[str, Any] = {"name": tool.get("name"), "parameters": schema}
        if "description" in tool:
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> tuple[Any, bool | None]:
    """The chat API's ``tool_choice`` and ``parallel_tool_calls`` for Anthropic's choice."""
    if value is None:
        return None, None
    kinds = {"auto": "auto", "any": "required", "none": "none", "tool": None}
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(kind, str) or kind not in kinds:
        raise InvalidRequest(
            "'tool_choice' must be {'type': 'auto' | 'any' | 'tool' | 'none'}.",
            param="tool_choice",
        )
    disable = boolean(value, "disable_parallel_tool_use")
    chosen: Any = kinds[kind]
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("'tool_choice.name' must name a tool.", param="tool_choice.name")
        chosen = {"type": "function", "function": {"name": name}}
    return chosen, False if disable else None


def _stop_sequences(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop_sequences")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidRequest(
            "'stop_sequences' must be an array of strings.", param="stop_sequences"
        )
    if len(value) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"'stop_sequences' takes at most {MAX_STOP_SEQUENCES} strings here, got {len(value)}.",
            param="stop_sequences",
        )
    return tuple(s for s in value if s)


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: Extra inputs are not permitted.", param=unknown[0])
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object.", param="metadata")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string.", param="model")


def _thinking_off() -> ReasoningOptions:
    # A fresh one each time: its template variables are a dict the prompt is rendered with.
    return ReasoningOptions({"enable_thinking": False}, 0)


def _thinking(
    body: Mapping[str, Any], max_tokens: int | None
) -> tuple[ReasoningOptions, Literal["shown", "omitted", "none"]]:
    value = body.get("thinking")
    if value is None:
        return _thinking_off(), "none"
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("enabled", "adaptive", "disabled"):
        raise InvalidRequest(
            "'thinking' must be {'type': 'enabled', 'budget_tokens': N}, {'type': 'adaptive'} "
            "or {'type': 'disabled'}.",
            param="thinking.type",
        )
    assert isinstance(value, dict)
    if kind == "disabled":
        return _thinking_off(), "none"
    display = value.get("display")
    if display not in (None, "summarized", "omitted"):
        raise InvalidRequest(
            "'thinking.display' must be 'summarized' or 'omitted'.", param="thinking.display"
        )
    shown: Literal["shown", "omitted"] = "omitted" if display == "omitted" else "shown"
    if kind == "adaptive":
        return ReasoningOptions({"enable_thinking": True}), shown
    budget = value.get("budget_tokens")
    param = "thinking.budget_tokens"
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget < 2**31:
        raise InvalidRequest(f"'{param}' must be an integer from 1 to {2**31 - 1}.", param=param)
    if max_tokens is not None and budget >= max_tokens:
        raise InvalidRequest(
            f"'{param}' ({budget}) must be less than 'max_tokens' ({max_tokens}).", param=param
        )
    return ReasoningOptions({"enable_thinking": True}, budget), shown


def parse(body: dict[str, Any], *, counting: bool = False) -> MessagesRequest:
    """Validate a Messages API body (``counting``: a count_tokens body, which has no
    generation fields). :raises InvalidRequest: naming the parameter."""
    _check_fields(body, _COUNT_FIELDS if counting else _FIELDS)
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    messages = body.get("messages")
    common: dict[str, Any] = {
        "model": body.get("model"),
        "messages": _conversation(body),
        "count": len(messages) if isinstance(messages, list) else 0,
        "tools": _tools(body.get("tools")),
        "tool_choice": tool_choice,
        "parallel_tool_calls": parallel,
    }
    if counting:
        reasoning, _ = _thinking(body, None)
        return MessagesRequest(**common, reasoning=reasoning)
    max_tokens = integer(body, "max_tokens", 1)
    if max_tokens is None:
        raise InvalidRequest("Missing required parameter: 'max_tokens'.", param="max_tokens")
    reasoning, thinking = _thinking(body, max_tokens)
    sampling = SamplingParams(
        # Anthropic's range: 0 to 1.
        temperature=number(body, "temperature", 1.0, 0.0, 1.0),
        top_p=number(body, "top_p", 1.0, 0.0, 1.0),
        top_k=integer(body, "top_k", 0) or 0,
    )
    return MessagesRequest(
        **common,
        stream=boolean(body, "stream"),
        max_tokens=max_tokens,
        stop=_stop_sequences(body),
        sampling=sampling,
        reasoning=reasoning,
        thinking=thinking,
    )
