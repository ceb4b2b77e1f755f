"""What the OpenAI request bodies share: numbers, sampling, stop, logit bias, streaming.

Every client mistake is a 400 naming the parameter. Ranges follow the OpenAI API reference.
``stream_options.resumable`` (a Sluice extension) asks for a stream that survives its
connection (``stream.transports.resumable``).
Parameters OpenAI defines that Sluice does not implement are refused by name rather than
silently ignored; bookkeeping ones (``user``, ``metadata``, ``store``, ...) are accepted and
have no effect. The chat and legacy completion adapters add their own fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model.params import SamplingParams
from stream.errors import InvalidRequest

__all__ = ["COMMON", "OpenAIRequest", "boolean", "common_fields", "integer", "number"]

_TOKEN_ID = re.compile(r"[0-9]{1,10}")
_ACCEPTED = {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
_UNSUPPORTED = {
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
    "best_of",
    "suffix",
    "echo",
}
#: Parameters both APIs take; each adapter adds its own.
COMMON = frozenset(
    {
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
)


@dataclass(frozen=True, slots=True)
class OpenAIRequest:
    """The fields every OpenAI generation request has, validated."""

    model: str | None
    n: int
    stream: bool
    include_usage: bool
    #: ``stream_options.resumable``; None: the server's default.
    resumable: bool | None
    max_tokens: int | None
    stop: tuple[str, ...]
    sampling: SamplingParams
    ignore_eos: bool
    #: Seconds this request may take, queue included (a Sluice extension); None: default.
    timeout: float | None


def _type_name(value: Any) -> str:
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
            f"'{label or name}' must be a number, got {_type_name(value)}.", param=param or name
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


def number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    """``body[name]`` as a finite number from ``lo`` to ``hi`` (``default`` when absent).
    :raises InvalidRequest: naming ``name``."""
    return _number(body, name, default, lo, hi)


def integer(body: Mapping[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer, got {_type_name(value)}.", param=name)
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"{lo} to {hi}"
        raise InvalidRequest(
            f"{value} is not a valid value for '{name}': expected {bound}.", param=name
        )
    return value


def boolean(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean, got {_type_name(value)}.", param=name)
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


def common_fields(
    body: Mapping[str, Any], allowed: frozenset[str], max_tokens: int | None
) -> dict[str, Any]:
    """The :class:`OpenAIRequest` fields of ``body``, whose parameters must all be in
    ``allowed`` (or accepted and ignored); ``max_tokens`` as the adapter read it."""
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
        raise InvalidRequest(f"'model' must be a string, got {_type_name(model)}.", param="model")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    stream = boolean(body, "stream")
    include_usage = boolean(options or {}, "include_usage")
    resumable = (options or {}).get("resumable")
    if resumable is not None and not isinstance(resumable, bool):
        raise InvalidRequest(
            f"'stream_options.resumable' must be a boolean, got {_type_name(resumable)}.",
            param="stream_options.resumable",
        )
    if options is not None and not stream:
        raise InvalidRequest(
            "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
        )
    seed = integer(body, "seed", -(2**63), 2**64 - 1)
    sampling = SamplingParams(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        top_k=integer(body, "top_k", 0) or 0,
        min_p=_number(body, "min_p", 0.0, 0.0, 1.0),
        seed=None if seed is None else seed & 0xFFFFFFFF,
        repeat_penalty=_number(body, "repeat_penalty", 1.0, 0.01, 10.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        logit_bias=_logit_bias(body),
    )
    return {
        "model": model,
        "n": integer(body, "n", 1, 128) or 1,
        "stream": stream,
        "include_usage": include_usage,
        "resumable": resumable,
        "max_tokens": max_tokens,
        "stop": _stop(body),
        "sampling": sampling,
        "ignore_eos": boolean(body, "ignore_eos"),
        "timeout": _timeout(body),
    }
