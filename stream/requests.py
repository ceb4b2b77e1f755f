"""OpenAI request bodies in, validated parameters out; every client mistake is a 400.

Ranges follow the OpenAI API reference. Parameters OpenAI defines that Sluice does not
implement are refused by name rather than silently ignored; bookkeeping ones (``user``,
``metadata``, ``store``, ...) are accepted and have no effect.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from model.params import SamplingParams

from .errors import InvalidRequest

__all__ = [
    "ChatRequest",
    "CompletionRequest",
    "ResponseFormat",
    "parse_chat",
    "parse_completion",
    "parse_json",
]

_TOKEN_ID = re.compile(r"[0-9]{1,10}")
_ROLES = {"system", "developer", "user", "assistant", "tool"}
_ACCEPTED = {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
_UNSUPPORTED = {
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
    "reasoning_effort",
    "best_of",
    "suffix",
    "echo",
}
_COMMON = {
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "n",
    "logit_bias",
    "logprobs",
    "ignore_eos",
    "timeout",
}
_CHAT = _COMMON | {
    "messages",
    "max_completion_tokens",
    "response_format",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
}
_COMPLETION = _COMMON | {"prompt"}


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``json_object``, or ``json_schema`` with its schema; ``text`` is no constraint."""

    type: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True, slots=True)
class _Common:
    model: str | None
    n: int
    stream: bool
    include_usage: bool
    max_tokens: int | None
    stop: tuple[str, ...]
    sampling: SamplingParams
    ignore_eos: bool
    #: Seconds this request may take, queue included (a Sluice extension); None: default.
    timeout: float | None


@dataclass(frozen=True, slots=True)
class ChatRequest(_Common):
    #: Messages with ``content`` flattened to a string (or None for tool-call turns).
    messages: tuple[dict[str, Any], ...]
    #: None: no logprobs; otherwise how many alternatives per token (``top_logprobs``).
    logprobs: int | None = None
    response_format: ResponseFormat | None = None
    #: Which of the two names the client used for the completion limit (for errors).
    max_tokens_field: str = "max_tokens"
    #: ``tools``, ``tool_choice`` and ``parallel_tool_calls`` as sent; model.tools checks them.
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None


@dataclass(frozen=True, slots=True)
class CompletionRequest(_Common):
    #: Text to tokenize, or token ids given directly.
    prompt: str | tuple[int, ...]
    #: The legacy ``logprobs``: None, or how many alternatives per token (0-5).
    logprobs: int | None = None


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise InvalidRequest("The JSON body of your request is nested too deeply.") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})."
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _number(
    body: Mapping[str, Any],
    name: str,
    default: float,
    lo: float,
    hi: float,
    *,
    param: str | None = None,
    label: str | None = None,
) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(
            f"'{label or name}' must be a number, got {_kind(value)}.", param=param or name
        )
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # a JSON integer too large for a float
        finite = False
    if not (finite and lo <= value <= hi):
        raise InvalidRequest(
            f"{value} is not a valid value for '{label or name}': expected {lo:g} to {hi:g}.",
            param=param or name,
        )
    return float(value)


def _integer(body: Mapping[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer, got {_kind(value)}.", param=name)
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"{lo} to {hi}"
        raise InvalidRequest(
            f"{value} is not a valid value for '{name}': expected {bound}.", param=name
        )
    return value


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean, got {_kind(value)}.", param=name)
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("'stop' must be a string or an array of strings.", param="stop")
    if len(stops) > 4:
        raise InvalidRequest(f"'stop' takes at most 4 sequences, got {len(stops)}.", param="stop")
    return tuple(s for s in stops if s)


def _logit_bias(body: Mapping[str, Any]) -> dict[int, float]:
    value = body.get("logit_bias")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(
            "'logit_bias' must be an object of token id -> bias.", param="logit_bias"
        )
    bias: dict[int, float] = {}
    for key in value:
        if not _TOKEN_ID.fullmatch(key):
            raise InvalidRequest(f"Invalid token id {key!r} in 'logit_bias'.", param="logit_bias")
        label = f"logit_bias[{key!r}]"
        bias[int(key)] = _number(value, key, 0.0, -100.0, 100.0, param="logit_bias", label=label)
    return bias


def _timeout(body: Mapping[str, Any]) -> float | None:
    if body.get("timeout") is None:
        return None
    value = _number(body, "timeout", 0.0, 0.0, math.inf)
    if value <= 0:
        raise InvalidRequest("'timeout' must be a positive number of seconds.", param="timeout")
    return value


def _common(body: dict[str, Any], allowed: set[str], max_tokens: int | None) -> dict[str, Any]:
    refused = sorted(k for k in body if k in _UNSUPPORTED and body[k] not in (None, False))
    if refused:
        raise InvalidRequest(
            f"Sluice does not support {', '.join(repr(k) for k in refused)} yet.", param=refused[0]
        )
    unknown = sorted(k for k in body if k not in allowed and k not in _ACCEPTED | _UNSUPPORTED)
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument: {unknown[0]!r}.", param=unknown[0])
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest(f"'model' must be a string, got {_kind(model)}.", param="model")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    stream = _bool(body, "stream")
    include_usage = _bool(options or {}, "include_usage")
    if options is not None and not stream:
        raise InvalidRequest(
            "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
        )
    seed = _integer(body, "seed", -(2**63), 2**64 - 1)
    sampling = SamplingParams(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        top_k=_integer(body, "top_k", 0) or 0,
        min_p=_number(body, "min_p", 0.0, 0.0, 1.0),
        seed=None if seed is None else seed & 0xFFFFFFFF,
        repeat_penalty=_number(body, "repeat_penalty", 1.0, 0.01, 10.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        logit_bias=_logit_bias(body),
    )
    return {
        "model": model,
        "n": _integer(body, "n", 1, 128) or 1,
        "stream": stream,
        "include_usage": include_usage,
        "max_tokens": max_tokens,
        "stop": _stop(body),
        "sampling": sampling,
        "ignore_eos": _bool(body, "ignore_eos"),
        "timeout": _timeout(body),
    }


def _content(message: Mapping[str, Any], i: int) -> str | None:
    content = message.get("content")
    param = f"messages[{i}].content"
    if content is None or isinstance(content, str):
        if content is None and message.get("role") != "assistant":
            raise InvalidRequest(f"Missing 'content' in messages[{i}].", param=param)
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or an array of parts.", param=param)
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"'{param}[{j}]' is not a text part; Sluice serves text models only.",
                param=f"{param}[{j}]",
            )
        texts.append(part["text"])
    return "".join(texts)


def _messages(body: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    parsed = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{i}]' must be an object.", param=f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidRequest(
                f"Invalid value for 'messages[{i}].role': {role!r}; expected one of "
                f"{', '.join(sorted(_ROLES))}.",
                param=f"messages[{i}].role",
            )
        # Templates written for "system" rarely know "developer", its newer name.
        entry: dict[str, Any] = {
            "role": "system" if role == "developer" else role,
            "content": _content(message, i),
        }
        if role == "assistant" and message.get("tool_calls") is not None:
            entry["tool_calls"] = _tool_calls(message["tool_calls"], i)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(
                    f"'messages[{i}].tool_call_id' must be the id of the call it answers.",
                    param=f"messages[{i}].tool_call_id",
                )
            entry["tool_call_id"] = call_id
        if isinstance(message.get("name"), str):
            entry["name"] = message["name"]
        parsed.append(entry)
    return tuple(parsed)


def _tool_calls(value: Any, i: int) -> list[dict[str, Any]]:
    param = f"messages[{i}].tool_calls"
    if not isinstance(value, list):
        raise InvalidRequest(f"'{param}' must be an array.", param=param)
    calls = []
    for j, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise InvalidRequest(
                f"'{param}[{j}]' must be {{'id', 'type': 'function', 'function': "
                "{'name', 'arguments'}}} with arguments as a JSON string.",
                param=f"{param}[{j}]",
            )
        calls.append(
            {
                "id": str(call.get("id", "")),
                "type": "function",
                "function": {"name": function["name"], "arguments": function["arguments"]},
            }
        )
    return calls


def _response_format(value: Any) -> ResponseFormat | None:
    param = "response_format"
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        raise InvalidRequest(
            "'response_format' must be {'type': 'text' | 'json_object' | 'json_schema'}.",
            param=param,
        )
    if value["type"] == "text":
        return None
    if value["type"] == "json_object":
        return ResponseFormat("json_object")
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InvalidRequest(
            "'response_format.json_schema' must be an object with a 'name' and a 'schema'.",
            param="response_format.json_schema",
        )
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "'response_format.json_schema.schema' must be a JSON Schema object.",
            param="response_format.json_schema.schema",
        )
    strict = _bool(spec, "strict")
    return ResponseFormat("json_schema", schema, strict)


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    fmt = _response_format(body.get("response_format"))
    wanted = _bool(body, "logprobs")
    top = _integer(body, "top_logprobs", 0, 20)
    if top is not None and not wanted:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    messages = _messages(body)
    newer = _integer(body, "max_completion_tokens", 1)
    older = _integer(body, "max_tokens", 1)  # checked even when the newer name wins
    max_tokens = newer if newer is not None else older
    return ChatRequest(
        **_common(body, _CHAT, max_tokens),
        messages=messages,
        logprobs=(top or 0) if wanted else None,
        response_format=fmt,
        max_tokens_field="max_completion_tokens" if newer is not None else "max_tokens",
        tools=body.get("tools"),
        tool_choice=body.get("tool_choice"),
        parallel_tool_calls=body.get("parallel_tool_calls"),
    )


def parse_completion(body: dict[str, Any]) -> CompletionRequest:
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    parsed: str | tuple[int, ...]
    if isinstance(prompt, str):
        parsed = prompt
    elif (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        parsed = tuple(prompt)
    else:
        raise InvalidRequest(
            "'prompt' must be a string, an array of token ids, or an array of one of those.",
            param="prompt",
        )
    # The legacy endpoint's documented default is 16 tokens.
    max_tokens = _integer(body, "max_tokens", 1)
    return CompletionRequest(
        **_common(body, _COMPLETION, 16 if max_tokens is None else max_tokens),
        prompt=parsed,
        logprobs=_integer(body, "logprobs", 0, 5),
    )
