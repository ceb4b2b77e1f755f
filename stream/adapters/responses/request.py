"""A ``POST /v1/responses`` body, validated: input items, tools, text format, bookkeeping.

Fields follow the OpenAI API reference for *Create a model response*. Deviations, each
chosen for a local server:

* ``max_output_tokens`` may be below OpenAI's minimum of 16;
* ``truncation: "auto"`` is refused (400): Sluice never drops conversation items to fit;
* a function tool's ``strict`` defaults to false (OpenAI's default is true): a schema that
  breaks the strict rules is then served rather than refused;
* ``reasoning.effort`` is mapped as the chat route maps ``reasoning_effort``
  (:mod:`..reasoning`; ``xhigh`` as ``high``); ``reasoning.summary`` is accepted and no
  summary is written (the reasoning item carries the reasoning text itself).

Input items are read in :mod:`.items`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model.tools import Tool, ToolChoice, ToolError, parse_tool_choice, parse_tools
from stream.errors import InvalidRequest

from ..chat import ResponseFormat
from ..openai import OpenAIRequest, boolean, common_fields, integer
from ..reasoning import ReasoningOptions, reasoning_options
from .items import input_items

__all__ = ["ResponsesRequest", "parse", "tools_of"]

#: Sluice's own extensions, as on the other routes.
_EXTENSIONS = {"top_k", "min_p", "repeat_penalty", "seed", "ignore_eos", "timeout"}
_FIELDS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "input",
        "instructions",
        "max_output_tokens",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "previous_response_id",
        "truncation",
        "reasoning",
        "include",
        "background",
        "max_tool_calls",
        "top_logprobs",
        "prompt_cache_retention",
    }
    | _EXTENSIONS
)
#: Tool types OpenAI hosts itself; Sluice runs only the client's functions.
_HOSTED_TOOLS = {
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "computer_use_preview",
    "computer_use",
    "mcp",
    "code_interpreter",
    "image_generation",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
}
_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}


@dataclass(frozen=True, slots=True)
class ResponsesRequest(OpenAIRequest):
    """A ``/v1/responses`` body, validated; the conversation as normalized items."""

    #: This request's own input items (normalized: ``message`` items with a list of text
    #: parts, ``function_call`` and ``function_call_output`` items).
    input_items: tuple[dict[str, Any], ...] = ()
    #: The earlier responses' conversation (``previous_response_id``), then ``input_items``.
    conversation: tuple[dict[str, Any], ...] = ()
    instructions: str | None = None
    text_format: ResponseFormat | None = None
    #: ``tools`` in the chat shape, ``tool_choice`` in the chat shape, as model.tools reads them.
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool = True
    store: bool = True
    previous_response_id: str | None = None
    #: ``reasoning.effort`` as asked (validated).
    reasoning_effort: str | None = None
    #: What the effort asks of the template and the thinking budget, as on the chat route.
    reasoning: ReasoningOptions = field(default_factory=ReasoningOptions)
    #: Request fields a response echoes (``tools``, ``text``, ``metadata``, ...), as the
    #: API reference shows them.
    echo: Mapping[str, Any] | None = None


def parse(
    body: dict[str, Any],
    previous: tuple[dict[str, Any], ...] | None = None,
) -> ResponsesRequest:
    """Validate a responses body; ``previous`` is the conversation of the response named
    by ``previous_response_id`` (the caller looked it up). :raises InvalidRequest: naming
    the parameter."""
    _refuse(body)
    max_tokens = integer(body, "max_output_tokens", 1)
    # common_fields reads the sampling fields every OpenAI route shares; OpenAI's Responses
    # API takes no n, stop, penalties, logprobs or logit bias.
    fields = common_fields(body, _FIELDS, max_tokens)
    items = input_items(body.get("input"))
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string.", param="instructions")
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest(
            "'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls"
        )
    text, text_format = _text(body.get("text"))
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise InvalidRequest("'store' must be a boolean.", param="store")
    previous_id = body.get("previous_response_id")
    if previous_id is not None and not isinstance(previous_id, str):
        raise InvalidRequest(
            "'previous_response_id' must be a string.", param="previous_response_id"
        )
    metadata = _metadata(body.get("metadata"))
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    reasoning = _reasoning(body.get("reasoning"))
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "metadata": metadata,
        "parallel_tool_calls": parallel is not False,
        "previous_response_id": previous_id,
        "reasoning": reasoning,
        "store": store is not False,
        "temperature": fields["sampling"].temperature,
        "text": text,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": fields["sampling"].top_p,
        "truncation": "disabled",
        "user": user,
    }
    return ResponsesRequest(
        **fields,
        input_items=items,
        conversation=(previous or ()) + items,
        instructions=instructions,
        text_format=text_format,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel is not False,
        store=store is not False,
        previous_response_id=previous_id,
        reasoning_effort=reasoning["effort"],
        # The chat route's efforts stop at "high"; OpenAI's newer "xhigh" is the most there is.
        reasoning=reasoning_options(
            {"reasoning_effort": "high" if reasoning["effort"] == "xhigh" else reasoning["effort"]}
        ),
        echo=echo,
    )


def _refuse(body: Mapping[str, Any]) -> None:
    """What Sluice cannot honour, by name, before anything else is read."""
    refusals = {
        "background": body.get("background") not in (None, False),
        # Sluice's reasoning items carry their text in the clear: there is never encrypted
        # reasoning to include, and asking for it is harmless.
        "include": not _strings(body.get("include"), {"reasoning.encrypted_content"}),
        "top_logprobs": body.get("top_logprobs") not in (None, 0),
        "conversation": body.get("conversation") is not None,
        "prompt": body.get("prompt") is not None,
        "max_tool_calls": body.get("max_tool_calls") is not None,
    }
    for name, refused in refusals.items():
        if refused:
            raise InvalidRequest(f"Sluice does not support {name!r} yet.", param=name)
    truncation = body.get("truncation")
    if truncation not in (None, "disabled"):
        raise InvalidRequest(
            "Only 'truncation': 'disabled' is supported: Sluice never drops input to fit the "
            "context (a prompt too long for it is a 400).",
            param="truncation",
        )
    if body.get("prompt_cache_retention") not in (None, "in_memory"):
        raise InvalidRequest(
            "'prompt_cache_retention' may only be 'in_memory' here.", param="prompt_cache_retention"
        )


def _strings(value: Any, allowed: set[str]) -> bool:
    """``value`` is absent, or a list of strings from ``allowed``."""
    if value is None:
        return True
    return isinstance(value, list) and all(isinstance(v, str) and v in allowed for v in value)


def _tools(value: Any) -> list[dict[str, Any]] | None:
    """Flat function tools in the chat shape model.tools validates."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest("'tools' must be an array of function tools.", param="tools")
    converted = []
    for i, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            hosted = isinstance(kind, str) and (kind in _HOSTED_TOOLS or kind.startswith("web_"))
            why = f"a hosted tool ({kind!r})" if hosted else f"of type {kind!r}"
            raise InvalidRequest(
                f"'tools[{i}]' is {why}; Sluice runs function tools only.",
                param=f"tools[{i}].type",
            )
        assert isinstance(tool, dict)
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
        }
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    kind = value.get("type") if isinstance(value, dict) else None
    raise InvalidRequest(
        f"'tool_choice' {kind!r} is not supported: use 'none', 'auto', 'required' or "
        "{'type': 'function', 'name': ...}.",
        param="tool_choice",
    )


def tools_of(request: ResponsesRequest) -> tuple[tuple[Tool, ...], ToolChoice]:
    """Tools and choice, validated as the chat route validates them, errors naming the
    Responses fields. :raises InvalidRequest:"""
    try:
        tools = parse_tools(request.tools)
        choice = parse_tool_choice(
            request.tool_choice, tools, parallel_tool_calls=request.parallel_tool_calls
        )
    except ToolError as exc:
        # The chat shape nests a function's fields under "function"; Responses tools are flat.
        param = (exc.param or "").replace(".function.", ".")
        raise InvalidRequest(str(exc).replace(exc.param or "", param, 1), param=param) from None
    return tools, choice


def _text(value: Any) -> tuple[dict[str, Any], ResponseFormat | None]:
    if value is None:
        return {"format": {"type": "text"}}, None
    if not isinstance(value, dict):
        raise InvalidRequest("'text' must be an object.", param="text")
    verbosity = value.get("verbosity")
    if verbosity not in (None, "low", "medium", "high"):
        raise InvalidRequest(
            "'text.verbosity' must be 'low', 'medium' or 'high'.", param="text.verbosity"
        )
    fmt = value.get("format", {"type": "text"})
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return {"format": {"type": "text"}}, None
    if kind == "json_object":
        return {"format": {"type": "json_object"}}, ResponseFormat("json_object")
    if kind != "json_schema":
        raise InvalidRequest(
            "'text.format' must be {'type': 'text' | 'json_object' | 'json_schema'}.",
            param="text.format",
        )
    assert isinstance(fmt, dict)
    name = fmt.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("'text.format.name' must be a string.", param="text.format.name")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "'text.format.schema' must be a JSON Schema object.", param="text.format.schema"
        )
    strict = boolean(fmt, "strict")
    echo: dict[str, Any] = {"type": "json_schema", "name": name, "schema": schema, "strict": strict}
    if isinstance(fmt.get("description"), str):
        echo["description"] = fmt["description"]
    return {"format": echo}, ResponseFormat("json_schema", schema, strict)


def _metadata(value: Any) -> dict[str, str] | None:
    """OpenAI's limits: 16 pairs, keys up to 64 characters, string values up to 512."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 16:
        raise InvalidRequest("'metadata' must be an object of at most 16 pairs.", param="metadata")
    for key, item in value.items():
        if len(key) > 64:
            raise InvalidRequest(
                f"'metadata' key {key[:16]!r}... is longer than 64 characters.", param="metadata"
            )
        if not isinstance(item, str) or len(item) > 512:
            raise InvalidRequest(
                f"'metadata[{key!r}]' must be a string of at most 512 characters.",
                param="metadata",
            )
    return dict(value)


def _reasoning(value: Any) -> dict[str, Any]:
    if value is None:
        return {"effort": None, "summary": None}
    if not isinstance(value, dict):
        raise InvalidRequest("'reasoning' must be an object.", param="reasoning")
    effort = value.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise InvalidRequest(
            f"'reasoning.effort' must be one of {', '.join(sorted(_EFFORTS))}.",
            param="reasoning.effort",
        )
    return {"effort": effort, "summary": value.get("summary")}
