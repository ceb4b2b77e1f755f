"""The Anthropic Messages API (``POST /v1/messages``, ``POST /v1/messages/count_tokens``).

``request`` parses a body into the conversation the chat adapter would build, so prompts,
tools, forced-call grammars, limits and the reading of the answer by the model's family
(:mod:`model.chat_output`: its tool calls, its reasoning as thinking blocks) are the chat
API's own; ``encoder`` shapes the events as Anthropic's ``message`` and stream events;
``errors`` gives this route its error shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from model.errors import InvalidInput
from model.registry import ModelRegistry
from model.tools import Tool, ToolChoice, parse_tool_choice, parse_tools
from stream.errors import InvalidRequest
from stream.pipeline import parse_json
from stream.plan import Adapter, Limits, Model, Plan
from stream.routes import Handler, Request

from .encoder import PING, MessagesEncoder
from .errors import error_body
from .request import MessagesRequest, parse

__all__ = ["ADAPTER", "MessagesEncoder", "MessagesRequest", "count_tokens", "error_body", "plan"]


def _anthropic_param(param: str | None) -> str | None:
    # model.tools names the chat API's fields; say Anthropic's.
    if param is None:
        return None
    return (
        param.replace(".function.parameters", ".input_schema")
        .replace(".function.", ".")
        .replace("tool_choice.function.name", "tool_choice.name")
        .replace("parallel_tool_calls", "tool_choice.disable_parallel_tool_use")
    )


@contextmanager
def _anthropic_names() -> Iterator[None]:
    # Tool errors from model.tools name the chat API's fields and choices; say Anthropic's.
    try:
        yield
    except InvalidInput as exc:
        param = _anthropic_param(exc.param)
        message = exc.message.replace(exc.param or "", param or "", 1)
        raise InvalidRequest(message.replace("'required'", "'any'"), param=param) from None


def _tools(request: MessagesRequest) -> tuple[tuple[Tool, ...], ToolChoice]:
    with _anthropic_names():
        tools = parse_tools(request.tools)
        choice = parse_tool_choice(
            request.tool_choice, tools, parallel_tool_calls=request.parallel_tool_calls
        )
    return tools, choice


def _prompt(
    request: MessagesRequest, model: Model, limits: Limits
) -> tuple[list[int], tuple[Tool, ...], ToolChoice]:
    limits.check_messages(request.count)
    tools, choice = _tools(request)
    kwargs = request.reasoning.template_kwargs or None
    prompt = model.chat_prompt(request.messages, tools, choice, template_kwargs=kwargs)
    return prompt, tools, choice


def plan(request: MessagesRequest, model: Model, limits: Limits) -> Plan:
    """Render and tokenize the conversation, build a forced call's grammar, apply every limit.

    :raises InvalidRequest: a limit is exceeded, or a tool is invalid.
    :raises model.errors.InvalidInput: the messages cannot be served.
    """
    prompt, tools, choice = _prompt(request, model, limits)
    limits.check_prompt(model, prompt, param="messages", n=1, sampling=request.sampling)
    calling = bool(tools) and choice.mode != "none"
    with _anthropic_names():
        grammar = model.grammar(None, tools=tools, choice=choice)
    generation = limits.generation(
        model,
        prompt,
        sampling=request.sampling,
        max_tokens=request.max_tokens,
        stop=request.stop + model.stop,
        ignore_eos=False,
        timeout=None,
        n=1,
        logprobs=None,
        grammar=grammar,
        output=model.chat_output(
            prompt, tools if calling else (), thinking_budget=request.reasoning.thinking_budget
        ),
    )
    encoder = MessagesEncoder(
        model.name,
        input_tokens=len(prompt),
        stop_sequences=request.stop,
        thinking=request.thinking,
    )
    return Plan(generation, encoder, request.stream, heartbeat=PING)


def count_tokens(registry: ModelRegistry, limits: Limits) -> Handler:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, the prompt a Messages
    request with this body would have (tools included)."""

    async def handle(request: Request) -> ASGIApp:
        parsed = parse(parse_json(request.body), counting=True)
        served = registry.get(parsed.model)
        prompt, _, _ = await anyio.to_thread.run_sync(_prompt, parsed, served, limits)
        payload: dict[str, Any] = {"input_tokens": len(prompt)}
        return JSONResponse(payload)

    return handle


#: The Messages API, for the route table.
ADAPTER = Adapter(parse, plan)
