"""OpenAI function tools: validation, the generic prompt format, grammars for forced calls.

Templates that take ``tools`` (the Jinja source references it) render them natively; Sluice
still finds calls in the Hermes/Qwen shape below, so other native formats are not recognised.
Templates without tool support (ChatML, ``plain``) get the generic format instead:

- :func:`tools_system_prompt` is appended to the system message (or becomes one): it lists the
  functions as OpenAI JSON specs between ``<tools>`` and ``</tools>`` and asks for each call as
  ``<tool_call>\\n{"name": "<function>", "arguments": {...}}\\n</tool_call>``.
- Earlier turns are rewritten the same way (:func:`flatten_tool_messages`): an assistant's
  ``tool_calls`` become such blocks after its text, and ``tool`` results become a ``user`` turn
  of ``<tool_response name="..." id="...">\\n...\\n</tool_response>`` blocks (the name found
  from the call's id when the message has none).

Calls are found in the output by :mod:`model.tool_calls`.

A forced call (``tool_choice`` ``required`` or a named function) is held to that format by a
grammar; ``required`` allows up to four calls in a row when parallel calls are allowed, a
named function exactly one.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .errors import InvalidInput
from .grammar import Grammar, GrammarError, json_schema_grammar, json_schema_rules, trie_rules
from .tool_calls import CLOSE_TAG, OPEN_TAG

__all__ = [
    "Tool",
    "ToolChoice",
    "ToolError",
    "flatten_tool_messages",
    "format_tool_call",
    "messages_with_tools",
    "parse_tool_choice",
    "parse_tools",
    "template_supports_tools",
    "tool_call_grammar",
    "tool_choice_rule",
    "tools_system_prompt",
]

_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_MAX_TOOLS: Final = 128
_MAX_FORCED_CALLS: Final = 4
_JINJA_CODE: Final = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_DEFAULT_PARAMETERS: Final = {"type": "object", "properties": {}}


class ToolError(InvalidInput):
    """A tool definition or choice is invalid; the message is client-facing, ``param`` names
    the field (``tools[1].function.name``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Tool:
    """A validated function tool."""

    name: str
    description: str | None
    parameters: Mapping[str, Any]
    strict: bool = False

    def spec(self) -> dict[str, Any]:
        """The OpenAI form, as chat templates and the tools prompt show it."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """How the model may call tools: ``mode`` ``none``, ``auto`` or ``required`` (``function``
    set when one is named), and whether several calls may come in one answer."""

    mode: Literal["none", "auto", "required"] = "auto"
    function: str | None = None
    parallel: bool = True


def parse_tools(raw: Any) -> tuple[Tool, ...]:
    """Validate a request's ``tools`` (``None``: no tools).

    :raises ToolError: not a list of 1 to 128 function tools with unique valid names, JSON
        schema parameters, or (``strict``) parameters breaking OpenAI's strict rules.
    """
    if raw is None:
        return ()
    if not isinstance(raw, list) or not 0 < len(raw) <= _MAX_TOOLS:
        raise _invalid("tools", f"must be an array of 1 to {_MAX_TOOLS} function tools")
    tools: list[Tool] = []
    for i, item in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(item, dict) or item.get("type") != "function":
            raise _invalid(f"{at}.type", "must be 'function'")
        function = item.get("function")
        if not isinstance(function, dict):
            raise _invalid(f"{at}.function", "must be an object")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _invalid(f"{at}.function.name", "must be 1 to 64 of a-z, A-Z, 0-9, _ and -")
        if any(tool.name == name for tool in tools):
            raise _invalid(f"{at}.function.name", f"{name!r} is not unique")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise _invalid(f"{at}.function.description", "must be a string")
        parameters = function.get("parameters", _DEFAULT_PARAMETERS)
        if not isinstance(parameters, dict):
            raise _invalid(f"{at}.function.parameters", "must be a JSON schema object")
        strict = function.get("strict") or False
        if not isinstance(strict, bool):
            raise _invalid(f"{at}.function.strict", "must be a boolean")
        if strict:
            try:
                json_schema_grammar(parameters, strict=True)
            except GrammarError as exc:
                raise _invalid(f"{at}.function.parameters", f"is not strict: {exc}") from exc
        tools.append(Tool(name, description, parameters, strict))
    return tuple(tools)


def parse_tool_choice(
    raw: Any, tools: Sequence[Tool], *, parallel_tool_calls: Any = None
) -> ToolChoice:
    """Validate ``tool_choice`` and ``parallel_tool_calls`` against the request's tools.

    :raises ToolError: an unknown choice or function, or a choice that needs tools without any.
    """
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise _invalid("parallel_tool_calls", "must be a boolean")
    parallel = parallel_tool_calls is not False
    if raw is None:
        return ToolChoice("auto" if tools else "none", None, parallel)
    if raw in ("none", "auto", "required"):
        if raw != "none" and not tools:
            raise _invalid("tool_choice", f"{raw!r} needs 'tools'")
        return ToolChoice(raw, None, parallel)
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not any(tool.name == name for tool in tools):
            raise _invalid("tool_choice.function.name", f"{name!r} is not in 'tools'")
        return ToolChoice("required", name, parallel)
    raise _invalid(
        "tool_choice",
        """must be 'none', 'auto', 'required' or {"type": "function", "function": {"name": ...}}""",
    )


def _invalid(param: str, problem: str) -> ToolError:
    return ToolError(f"{param} {problem}", param)


def template_supports_tools(template_source: str) -> bool:
    """Whether a chat template's Jinja code uses ``tools`` (a heuristic)."""
    return any(re.search(r"\btools\b", code) for code in _JINJA_CODE.findall(template_source))


def tools_system_prompt(tools: Sequence[Tool], choice: ToolChoice) -> str:
    """The system prompt section describing the generic tool format ("" for ``none``)."""
    if choice.mode == "none" or not tools:
        return ""
    specs = "\n".join(json.dumps(tool.spec(), ensure_ascii=False) for tool in tools)
    rule = tool_choice_rule(choice)
    return (
        "# Tools\n\nYou can call these functions, described by JSON schemas in <tools></tools>:\n"
        f"<tools>\n{specs}\n</tools>\n\n"
        "To call a function, write its name and arguments as one JSON object between"
        " <tool_call> and </tool_call>, one block per call:\n<tool_call>\n"
        '{"name": "<function name>", "arguments": {<arguments as JSON>}}\n</tool_call>\n'
        "The results come back between <tool_response> and </tool_response>. " + rule
    )


def tool_choice_rule(choice: ToolChoice) -> str:
    """The sentence of a tools prompt that says what ``choice`` allows."""
    if choice.function is not None:
        return f"You must call the function {choice.function} now."
    if choice.mode == "required":
        return (
            "You must call one or more functions now."
            if choice.parallel
            else "You must call exactly one function now."
        )
    rule = "Call functions only when they help; otherwise answer directly."
    return rule if choice.parallel else rule + " Make at most one call."


def format_tool_call(name: str, arguments: str) -> str:
    """One call in the generic format; ``arguments`` is JSON text (kept as a string if not)."""
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        value = arguments
    call = json.dumps({"name": name, "arguments": value}, ensure_ascii=False)
    return f"{OPEN_TAG}\n{call}\n{CLOSE_TAG}"


def flatten_tool_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite tool turns for templates without tool support (string or ``None`` contents)."""
    out: list[dict[str, Any]] = []
    names: dict[Any, Any] = {}
    responses: list[str] | None = None
    for message in messages:
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            name = message.get("name") or names.get(call_id) or ""
            about = (("name", name), ("id", call_id))
            attributes = "".join(f" {k}={json.dumps(v)}" for k, v in about if v)
            content = message.get("content") or ""
            block = f"<tool_response{attributes}>\n{content}\n</tool_response>"
            if responses is None:
                responses = []
                out.append({"role": "user", "content": ""})
            responses.append(block)
            out[-1]["content"] = "\n".join(responses)
            continue
        responses = None
        flat = {k: v for k, v in message.items() if k != "tool_calls"}
        if role == "assistant" and message.get("tool_calls"):
            parts = [message.get("content") or ""]
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                names[call.get("id")] = function.get("name")
                parts.append(
                    format_tool_call(str(function.get("name")), function.get("arguments") or "{}")
                )
            flat["content"] = "\n".join(part for part in parts if part)
        out.append(flat)
    return out


def messages_with_tools(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Tool], choice: ToolChoice
) -> list[dict[str, Any]]:
    """Messages for a template without tool support: tool turns flattened, and the tools
    prompt added to the first system (or developer) message, or as a new first one."""
    flat = flatten_tool_messages(messages)
    prompt = tools_system_prompt(tools, choice)
    if not prompt:
        return flat
    if flat and flat[0].get("role") in ("system", "developer"):
        head = flat[0].get("content") or ""
        flat[0] = {**flat[0], "content": f"{head}\n\n{prompt}" if head else prompt}
        return flat
    return [{"role": "system", "content": prompt}, *flat]


def tool_call_grammar(tools: Sequence[Tool], choice: ToolChoice) -> Grammar:
    """A grammar forcing the output to be calls in the generic format.

    :raises ValueError: ``choice`` does not force a call (``none`` or ``auto``).
    :raises ToolError: a function's parameters cannot be enforced.
    """
    if choice.mode != "required":
        raise ValueError(f"tool_choice {choice.mode!r} forces no call")
    chosen = [(i, t) for i, t in enumerate(tools) if choice.function in (None, t.name)]
    for i, tool in chosen:
        try:
            json_schema_grammar(tool.parameters)
        except GrammarError as exc:
            at = f"tools[{i}].function.parameters"
            raise ToolError(f"{at} cannot be enforced: {exc}", at) from exc
    rules = json_schema_rules({f"tool-args-{i}": tool.parameters for i, tool in chosen})
    # The calls' openings as a trie: a hundred tools hold one parse stack, not a hundred,
    # through '{"name": "' and the names' shared prefixes.
    names = itertools.chain(["tool-fn"], (f"tool-fn-{k}" for k in itertools.count()))
    calls = trie_rules(
        {f'{{"name": "{tool.name}", "arguments": ': f'tool-args-{i} "}}"' for i, tool in chosen},
        lambda: next(names),
    )
    more = (
        f' ("\\n" tool-call){{0,{_MAX_FORCED_CALLS - 1}}}'
        if choice.function is None and choice.parallel
        else ""
    )
    return Grammar(
        f"{rules}root ::= tool-call{more}\n"
        f'tool-call ::= "{OPEN_TAG}\\n" tool-fn "\\n{CLOSE_TAG}"\n'
        + "".join(f"{name} ::= {body}\n" for name, body in calls),
        param="tool_choice",
    )
