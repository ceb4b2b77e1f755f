"""The Chat Completions API (``POST /v1/chat/completions``): parse, plan, encode.

Request fields and response shapes follow the OpenAI API reference for
``chat.completion`` and ``chat.completion.chunk``: a stream opens with each choice's role,
text arrives as ``delta.content``, tool calls as ``delta.tool_calls`` (the first delta of a
call carries its ``id``, ``type`` and function ``name``, later ones argument fragments).

Deviation: the model's reasoning arrives as ``delta.reasoning_content`` (and the same text as
``delta.reasoning``), as llama.cpp's and vLLM's servers send it and OpenAI's own API does not;
``usage.completion_tokens_details.reasoning_tokens`` is present when there was reasoning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from model.events import Delta, Event, Finished, TokenLogprobs, ToolCallDelta
from model.tool_calls import join_tool_calls
from model.tools import parse_tool_choice, parse_tools
from stream.documents import Document, json_document
from stream.errors import InvalidRequest
from stream.plan import Adapter, Limits, Model, Plan

from .choices import ChoicesEncoder, logprob_entry
from .llama_server import LLAMA_SERVER, Extensions, check_samplers, extensions, schema_param
from .openai import COMMON, OpenAIRequest, boolean, common_fields, integer
from .reasoning import REASONING_FIELDS, ReasoningOptions, reasoning_options

__all__ = ["ADAPTER", "ChatEncoder", "ChatRequest", "ResponseFormat", "parse", "plan"]

_ROLES = {"system", "developer", "user", "assistant", "tool"}
_CHAT = (
    COMMON
    | {
        "messages",
        "max_completion_tokens",
        "response_format",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
    | LLAMA_SERVER
    | REASONING_FIELDS
)


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``json_object``, or ``json_schema`` with its schema; ``text`` is no constraint."""

    type: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    strict: bool = False
    #: Where the schema came from (llama.cpp server's ``json_schema`` is another place).
    param: str = "response_format.json_schema.schema"


@dataclass(frozen=True, slots=True)
class ChatRequest(OpenAIRequest):
    """A ``/v1/chat/completions`` body, validated."""

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
    #: llama.cpp server's ``grammar``: GBNF text the output must match.
    grammar: str | None = None
    reasoning: ReasoningOptions = field(default_factory=ReasoningOptions)


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
        # llama.cpp server's extension: a json_object held to a schema.
        if "schema" in value:
            return _json_schema(value.get("schema"), "response_format.schema")
        return ResponseFormat("json_object")
    spec = value.get("json_schema")
    # OpenAI requires a 'name'; llama.cpp's server clients often send none.
    if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
        raise InvalidRequest(
            "'response_format.json_schema' must be an object with a 'schema' (and a 'name').",
            param="response_format.json_schema",
        )
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "'response_format.json_schema.schema' must be a JSON Schema object.",
            param="response_format.json_schema.schema",
        )
    strict = boolean(spec, "strict")
    return ResponseFormat("json_schema", schema, strict)


def _json_schema(schema: Any, param: str) -> ResponseFormat:
    if not isinstance(schema, dict):
        raise InvalidRequest(f"'{param}' must be a JSON Schema object.", param=param)
    return ResponseFormat("json_schema", schema, param=param)


def parse(body: dict[str, Any]) -> ChatRequest:
    """Validate a chat completions body. :raises InvalidRequest: naming the parameter."""
    fmt = _response_format(body.get("response_format"))
    wanted = boolean(body, "logprobs")
    top = integer(body, "top_logprobs", 0, 20)
    if top is not None and not wanted:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    messages = _messages(body)
    newer = integer(body, "max_completion_tokens", 1)
    older = integer(body, "max_tokens", 1)  # checked even when the newer name wins
    max_tokens = newer if newer is not None else older
    field = "max_completion_tokens" if newer is not None else "max_tokens"
    extra = extensions(body, max_probs=20)
    fmt = _with_extensions(fmt, extra, wanted or top is not None)
    common = common_fields(body, _CHAT, extra.max_tokens(max_tokens, field))
    check_samplers(body, common["sampling"])
    if extra.n_probs is not None:
        wanted, top = True, extra.n_probs
    return ChatRequest(
        **common,
        messages=messages,
        logprobs=(top or 0) if wanted else None,
        response_format=fmt,
        grammar=extra.grammar,
        max_tokens_field=field if extra.n_predict is None else "n_predict",
        tools=body.get("tools"),
        tool_choice=body.get("tool_choice"),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        reasoning=reasoning_options(body),
    )


def _with_extensions(
    fmt: ResponseFormat | None, extra: Extensions, logprobs: bool
) -> ResponseFormat | None:
    # llama.cpp server's json_schema, grammar and n_probs, against their OpenAI twins.
    if extra.json_schema is not None:
        if fmt is not None:
            raise InvalidRequest(
                "'json_schema' and 'response_format' cannot both be set.", param="json_schema"
            )
        fmt = _json_schema(extra.json_schema, "json_schema")
    if extra.grammar is not None and fmt is not None:
        raise InvalidRequest("'grammar' and 'response_format' cannot both be set.", param="grammar")
    if extra.n_probs is not None and logprobs:
        raise InvalidRequest(
            "'n_probs' and 'logprobs' / 'top_logprobs' cannot both be set.", param="n_probs"
        )
    return fmt


def plan(request: ChatRequest, model: Model, limits: Limits) -> Plan:
    """Render and tokenize the conversation, build its constraint, apply every limit.

    :raises InvalidRequest: a limit is exceeded.
    :raises model.errors.InvalidInput: the messages, tools or format cannot be served.
    """
    limits.check_messages(len(request.messages))
    tools = parse_tools(request.tools)
    choice = parse_tool_choice(
        request.tool_choice, tools, parallel_tool_calls=request.parallel_tool_calls
    )
    calling = bool(tools) and choice is not None and choice.mode != "none"
    reasoning = request.reasoning
    prompt = model.chat_prompt(
        request.messages, tools, choice, template_kwargs=reasoning.template_kwargs or None
    )
    limits.check_prompt(model, prompt, param="messages", n=request.n, sampling=request.sampling)
    fmt = request.response_format
    with schema_param(fmt.param if fmt else None):
        grammar = model.grammar(
            fmt.type if fmt else None,
            fmt.schema if fmt else None,
            strict=fmt.strict if fmt else False,
            tools=tools,
            choice=choice,
        )
    if request.grammar is not None:
        if grammar is not None:
            raise InvalidRequest(
                "'grammar' cannot be combined with a forced tool call.", param="grammar"
            )
        grammar = model.gbnf_grammar(request.grammar)
    generation = limits.generation(
        model,
        prompt,
        sampling=request.sampling,
        max_tokens=request.max_tokens,
        max_tokens_param=request.max_tokens_field,
        stop=request.stop + model.stop,
        ignore_eos=request.ignore_eos,
        timeout=request.timeout,
        n=request.n,
        logprobs=request.logprobs,
        grammar=grammar,
        output=model.chat_output(
            prompt, tools if calling else (), thinking_budget=reasoning.thinking_budget
        ),
    )
    encoder = ChatEncoder(
        model.name,
        include_usage=request.include_usage,
        n=request.n,
        logprobs=request.logprobs is not None,
    )
    return Plan(generation, encoder, request.stream, request.resumable)


class ChatEncoder(ChoicesEncoder):
    """``chat.completion.chunk`` documents, or the whole ``chat.completion``."""

    id_prefix = "chatcmpl"
    chunk_object = "chat.completion.chunk"
    whole_object = "chat.completion"

    def opening(self) -> Sequence[Document]:
        """Each choice's role, before any token (as OpenAI streams open)."""
        return [
            json_document(self._chunk(self._choice(i, "", None, role=True))) for i in range(self.n)
        ]

    def _choice(
        self,
        index: int,
        text: str | None,
        finish: str | None,
        *,
        role: bool = False,
        logprobs: tuple[TokenLogprobs, ...] = (),
    ) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        shaped = _logprobs(logprobs) if self.logprobs else None
        return {"index": index, "delta": delta, "logprobs": shaped, "finish_reason": finish}

    def _reasoning(self, event: Delta) -> dict[str, Any]:
        choice = self._choice(event.index, event.text or None, None, logprobs=event.logprobs)
        choice["delta"].update(reasoning_content=event.reasoning, reasoning=event.reasoning)
        return choice

    def _tool_call(self, event: ToolCallDelta) -> dict[str, Any]:
        call: dict[str, Any] = {"index": event.call}
        if event.id is not None:
            call.update(id=event.id, type="function")
        function: dict[str, Any] = {"arguments": event.arguments}
        if event.name is not None:
            function["name"] = event.name
        call["function"] = function
        delta = {"tool_calls": [call]}
        return {"index": event.index, "delta": delta, "logprobs": None, "finish_reason": None}

    def _whole_choice(
        self, index: int, events: Sequence[Event], finished: Finished
    ) -> dict[str, Any]:
        deltas = [e for e in events if isinstance(e, Delta) and e.index == index]
        text = "".join(d.text for d in deltas)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        reasoning = "".join(d.reasoning for d in deltas)
        if reasoning:
            message["reasoning_content"] = message["reasoning"] = reasoning
        parts = (e for e in events if isinstance(e, ToolCallDelta) and e.index == index)
        calls = join_tool_calls(parts).get(index)
        if calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
            message["content"] = text or None
        entries = tuple(entry for d in deltas for entry in d.logprobs)
        return {
            "index": index,
            "message": message,
            "logprobs": _logprobs(entries) if self.logprobs else None,
            "finish_reason": finished.reason,
        }


def _logprobs(entries: tuple[TokenLogprobs, ...]) -> dict[str, Any]:
    content = [
        {**logprob_entry(e.chosen), "top_logprobs": [logprob_entry(t) for t in e.top]}
        for e in entries
    ]
    return {"content": content, "refusal": None}


#: The chat completions API, for the route table.
ADAPTER = Adapter(parse, plan)
