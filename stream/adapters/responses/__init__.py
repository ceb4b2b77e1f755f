"""The Responses API (``/v1/responses``): parse, plan, encode, and the stored responses.

``request`` validates a body (tools, text format, bookkeeping; its deviations from the
OpenAI reference are listed there), ``items`` its input items, ``encoder`` turns engine
events into the ``response`` object or its typed stream events, ``store`` keeps finished
responses for ``previous_response_id`` and the ``GET``/``DELETE`` routes. A continuation's
prompt is the stored conversation (earlier inputs and outputs) plus the new input, rendered
by the chat template as a chat would be, so the engine's prefix cache reuses the parent's KV
cache where a slot still holds it. The answer is read by the model's family as a chat answer
is (:mod:`model.chat_output`): reasoning becomes a ``reasoning`` output item, the family's
calls ``function_call`` items. :func:`adapter` binds one request's owner and the store:
the HTTP route here runs it through the pipeline, and so can any other transport.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from model.errors import InvalidInput
from stream.errors import InvalidRequest, NotFound
from stream.plan import Adapter, Limits, Model, Plan
from stream.routes import Handler, Request

from .encoder import ResponsesEncoder
from .items import messages
from .request import ResponsesRequest, parse, tools_of
from .store import ResponseStore, StoredResponse

__all__ = [
    "Generate",
    "ResponseStore",
    "ResponsesEncoder",
    "ResponsesRequest",
    "StoredResponse",
    "adapter",
    "create",
    "delete",
    "owner_of",
    "parse",
    "plan",
    "retrieve",
]

#: What the pipeline runs an adapter with (``Pipeline.generate``).
Generate = Callable[[Adapter[ResponsesRequest], Request], Awaitable[ASGIApp]]

# Model-side errors name the chat fields; this API calls them otherwise.
_PARAMS = {
    "messages": "input",
    "response_format": "text.format",
    "response_format.json_schema.schema": "text.format.schema",
}


def plan(
    request: ResponsesRequest,
    model: Model,
    limits: Limits,
    *,
    on_done: Callable[[dict[str, Any]], None] = lambda response: None,
) -> Plan:
    """Render and tokenize the conversation, build its constraint, apply every limit;
    ``on_done`` gets the final response object when it completes.

    :raises InvalidRequest: a limit is exceeded, or the input, tools or format cannot be
        served (naming the Responses field).
    """
    history = messages(request.conversation)
    if request.instructions is not None:
        history.insert(0, {"role": "system", "content": request.instructions})
    limits.check_messages(len(history), param="input")
    tools, choice = tools_of(request)
    calling = bool(tools) and choice.mode != "none"
    fmt = request.text_format
    reasoning = request.reasoning
    try:
        prompt = model.chat_prompt(
            history, tools, choice, template_kwargs=reasoning.template_kwargs or None
        )
        limits.check_prompt(model, prompt, param="input", n=1, sampling=request.sampling)
        grammar = model.grammar(
            fmt.type if fmt else None,
            fmt.schema if fmt else None,
            strict=fmt.strict if fmt else False,
            tools=tools,
            choice=choice,
        )
    except InvalidInput as exc:
        param = _PARAMS.get(exc.param or "", exc.param)
        message = exc.message.replace(exc.param or "\0", param or "", 1)
        raise InvalidRequest(message, param=param, code=exc.code) from None
    generation = limits.generation(
        model,
        prompt,
        sampling=request.sampling,
        max_tokens=request.max_tokens,
        max_tokens_param="max_output_tokens",
        stop=model.stop,
        ignore_eos=request.ignore_eos,
        timeout=request.timeout,
        n=1,
        logprobs=None,
        grammar=grammar,
        output=model.chat_output(
            prompt, tools if calling else (), thinking_budget=reasoning.thinking_budget
        ),
    )
    encoder = ResponsesEncoder(model.name, request.echo or {}, on_done=on_done)
    return Plan(generation, encoder, request.stream)


def owner_of(headers: Headers, private: bool) -> str | None:
    """Who may see what a request stores: a hash of its API key when keys are on
    (``private``), else everyone (None)."""
    if not private:
        return None
    _, _, key = headers.get("authorization", "").partition(" ")
    return hashlib.sha256(key.encode()).hexdigest()


def _owner(request: Request, private: bool) -> str | None:
    return owner_of(Headers(scope=request.scope), private)


def adapter(store: ResponseStore, owner: str | None) -> Adapter[ResponsesRequest]:
    """The adapter for one request by ``owner`` (see :func:`owner_of`): ``previous_response_id``
    is looked up among, and the finished response stored as, ``owner``'s. Any transport
    (HTTP here, a WebSocket) runs it through the pipeline."""

    def parse_body(body: dict[str, Any]) -> ResponsesRequest:
        previous_id = body.get("previous_response_id")
        previous = None
        if isinstance(previous_id, str):
            stored = store.get(previous_id, owner)
            if stored is None:
                raise InvalidRequest(
                    f"Previous response with id {previous_id!r} not found"
                    + ("." if store.enabled else " (this server stores no responses)."),
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            previous = stored.conversation
        return parse(body, previous)

    def plan_request(parsed: ResponsesRequest, model: Model, limits: Limits) -> Plan:
        def keep(response: dict[str, Any]) -> None:
            if parsed.store:
                conversation = parsed.conversation + tuple(response["output"])
                store.put(StoredResponse(response, conversation, parsed.input_items, owner))

        return plan(parsed, model, limits, on_done=keep)

    return Adapter(parse_body, plan_request)


def create(generate: Generate, store: ResponseStore, *, private: bool) -> Handler:
    """``POST /v1/responses``; ``private``: API keys are on, so each key sees only its own
    stored responses."""

    async def handle(request: Request) -> ASGIApp:
        return await generate(adapter(store, _owner(request, private)), request)

    return handle


def _stored(store: ResponseStore, request: Request, private: bool) -> tuple[StoredResponse, str]:
    response_id, _, rest = request.params["id"].partition("/")
    stored = store.get(response_id, _owner(request, private))
    if stored is None or rest not in ("", "input_items"):
        raise NotFound(
            f"Response with id {response_id!r} not found.", param="response_id", code="not_found"
        )
    return stored, rest


def retrieve(store: ResponseStore, *, private: bool) -> Handler:
    """``GET /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``."""

    async def handle(request: Request) -> ASGIApp:
        query = QueryParams(request.scope.get("query_string", b""))
        if query.get("stream") in ("true", "1"):
            # Replaying a stream (``starting_after``) belongs to the resumable transport: it
            # can key its buffer by the encoder's response id and the events'
            # ``sequence_number``.
            raise InvalidRequest(
                "Streaming a stored response again is not supported yet.", param="stream"
            )
        stored, rest = _stored(store, request, private)
        if rest == "":
            return JSONResponse(stored.response)
        return JSONResponse(_listing(stored.input_items, query))

    return handle


def _listing(items: tuple[dict[str, Any], ...], query: QueryParams) -> dict[str, Any]:
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    raw = query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit")
    ordered = list(items) if order == "asc" else list(reversed(items))
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[: int(raw)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > len(page),
    }


def delete(store: ResponseStore, *, private: bool) -> Handler:
    """``DELETE /v1/responses/{id}``."""

    async def handle(request: Request) -> ASGIApp:
        stored, rest = _stored(store, request, private)
        if rest or not store.delete(stored.id, _owner(request, private)):
            raise NotFound(f"Response with id {stored.id!r} not found.", code="not_found")
        return JSONResponse({"id": stored.id, "object": "response.deleted", "deleted": True})

    return handle
