"""The legacy Completions API (``POST /v1/completions``): parse, plan, encode.

Shapes follow the OpenAI API reference for ``text_completion``: a prompt string, token ids,
or a batch of one of those; 16 tokens unless ``max_tokens`` says otherwise; the legacy
``logprobs`` object (tokens, token_logprobs, top_logprobs, text_offset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.events import Delta, Event, Finished, TokenLogprobs
from stream.errors import InvalidRequest
from stream.plan import Adapter, Limits, Model, Plan

from .choices import ChoicesEncoder
from .llama_server import LLAMA_SERVER, check_samplers, extensions, schema_param
from .openai import COMMON, OpenAIRequest, common_fields, integer

__all__ = ["ADAPTER", "CompletionEncoder", "CompletionRequest", "parse", "plan"]

_COMPLETION = COMMON | {"prompt"} | LLAMA_SERVER


@dataclass(frozen=True, slots=True)
class CompletionRequest(OpenAIRequest):
    """A ``/v1/completions`` body, validated."""

    #: Text to tokenize, or token ids given directly.
    prompt: str | tuple[int, ...]
    #: The legacy ``logprobs``: None, or how many alternatives per token (0-5).
    logprobs: int | None = None
    #: llama.cpp server's ``grammar`` (GBNF text) or ``json_schema`` for the output.
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None


def parse(body: dict[str, Any]) -> CompletionRequest:
    """Validate a legacy completions body. :raises InvalidRequest: naming the parameter."""
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
    max_tokens = integer(body, "max_tokens", 1)
    extra = extensions(body, max_probs=5)
    if extra.n_predict is not None:
        max_tokens = extra.max_tokens(max_tokens, "max_tokens")
    elif max_tokens is None:
        max_tokens = 16
    common = common_fields(body, _COMPLETION, max_tokens)
    check_samplers(body, common["sampling"])
    logprobs = integer(body, "logprobs", 0, 5)
    if extra.n_probs is not None:
        if logprobs is not None:
            raise InvalidRequest("'n_probs' and 'logprobs' cannot both be set.", param="n_probs")
        logprobs = extra.n_probs
    return CompletionRequest(
        **common,
        prompt=parsed,
        logprobs=logprobs,
        grammar=extra.grammar,
        json_schema=extra.json_schema,
    )


def plan(request: CompletionRequest, model: Model, limits: Limits) -> Plan:
    """Tokenize the prompt (or check its token ids) and apply every limit.

    :raises InvalidRequest: a limit is exceeded.
    :raises model.errors.InvalidInput: the prompt is empty or has ids outside the vocabulary.
    """
    prompt = model.text_prompt(request.prompt)
    limits.check_prompt(model, prompt, param="prompt", n=request.n, sampling=request.sampling)
    grammar = None
    if request.grammar is not None:
        grammar = model.gbnf_grammar(request.grammar)
    elif request.json_schema is not None:
        with schema_param("json_schema"):
            grammar = model.grammar("json_schema", request.json_schema)
    generation = limits.generation(
        model,
        prompt,
        sampling=request.sampling,
        max_tokens=request.max_tokens,
        stop=request.stop,
        ignore_eos=request.ignore_eos,
        timeout=request.timeout,
        n=request.n,
        logprobs=request.logprobs,
        grammar=grammar,
    )
    encoder = CompletionEncoder(
        model.name,
        include_usage=request.include_usage,
        n=request.n,
        logprobs=request.logprobs is not None,
    )
    return Plan(generation, encoder, request.stream, request.resumable)


class CompletionEncoder(ChoicesEncoder):
    """``text_completion`` documents, streamed or whole."""

    id_prefix = "cmpl"
    chunk_object = "text_completion"
    whole_object = "text_completion"

    def __init__(
        self, model: str, *, include_usage: bool = False, n: int = 1, logprobs: bool = False
    ) -> None:
        self._offsets = [0] * n  # legacy text_offset, per choice
        super().__init__(model, include_usage=include_usage, n=n, logprobs=logprobs)

    def _choice(
        self,
        index: int,
        text: str | None,
        finish: str | None,
        *,
        role: bool = False,
        logprobs: tuple[TokenLogprobs, ...] = (),
    ) -> dict[str, Any]:
        shaped = self._logprobs(index, logprobs) if self.logprobs else None
        return {"index": index, "text": text or "", "logprobs": shaped, "finish_reason": finish}

    def _logprobs(self, index: int, entries: tuple[TokenLogprobs, ...]) -> dict[str, Any]:
        offsets = []
        for entry in entries:
            offsets.append(self._offsets[index])
            self._offsets[index] += len(entry.chosen.text)
        return {
            "tokens": [e.chosen.text for e in entries],
            "token_logprobs": [e.chosen.logprob for e in entries],
            "top_logprobs": [{t.text: t.logprob for t in e.top} for e in entries],
            "text_offset": offsets,
        }

    def _whole_choice(
        self, index: int, events: Sequence[Event], finished: Finished
    ) -> dict[str, Any]:
        deltas = [e for e in events if isinstance(e, Delta) and e.index == index]
        entries = tuple(entry for d in deltas for entry in d.logprobs)
        return {
            "index": index,
            "text": "".join(d.text for d in deltas),
            "logprobs": self._logprobs(index, entries) if self.logprobs else None,
            "finish_reason": finished.reason,
        }


#: The legacy completions API, for the route table.
ADAPTER = Adapter(parse, plan)
