"""The first step of the pipeline: what an API adapter is, and what it plans.

An :class:`Adapter` parses a request body (its API's shape) and plans it against a served
model: the prompt rendered and tokenized, every server limit applied (:class:`Limits`, the
one place they are), and the engine's :class:`~model.params.GenerationRequest` built,
together with the encoder that will shape the answer. Planning renders templates, tokenizes
and compiles grammars, so the pipeline runs it off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from model.chat_output import ChatOutput
from model.events import Event
from model.params import GenerationRequest, Grammar, SamplingParams
from model.tools import Tool, ToolChoice

from .documents import Document, Encoder
from .errors import InvalidRequest

__all__ = ["APIRequest", "Adapter", "Limits", "Model", "Plan"]


class APIRequest(Protocol):
    """What the pipeline reads of any parsed request."""

    @property
    def model(self) -> str | None:
        """The model the client asked for, if any."""
        ...


R = TypeVar("R", bound=APIRequest)


class Model(Protocol):
    """What planning uses of a served model (``model.served.ServedModel`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def ctx_size(self) -> int: ...

    @property
    def slots(self) -> int: ...

    @property
    def n_vocab(self) -> int: ...

    #: Bytes of the longest text one token stands for.
    longest_token: int

    @property
    def stop(self) -> tuple[str, ...]: ...

    def chat_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Tool] = (),
        choice: ToolChoice | None = None,
        *,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> list[int]: ...

    def chat_output(
        self,
        prompt: Sequence[int],
        tools: Sequence[Tool] = (),
        *,
        thinking_budget: int | None = None,
    ) -> ChatOutput: ...

    def text_prompt(self, prompt: str | Sequence[int]) -> list[int]: ...

    def grammar(
        self,
        json: Literal["json_object", "json_schema"] | None,
        schema: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        tools: Sequence[Tool] = (),
        choice: ToolChoice | None = None,
    ) -> Grammar | None: ...

    def gbnf_grammar(self, text: str, *, param: str = "grammar") -> Grammar: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """A request ready for the engine: what to generate, how to answer, and how to send it."""

    generation: GenerationRequest
    encoder: Encoder[Event]
    #: Streamed (SSE) rather than answered at once.
    stream: bool
    #: A stream that survives its connection; None: the server's default.
    resumable: bool | None = None
    #: What a resumable stream is named by, when the API has an id for it (a Responses
    #: stream is resumed by its response id); None: the stream store names it.
    stream_id: str | None = None
    #: What a stream sends after a silence, for APIs that define it (Anthropic's ``ping``
    #: event); None: the transport's own keep-alive comment.
    heartbeat: Document | None = None


@dataclass(frozen=True, slots=True)
class Adapter(Generic[R]):
    """One API: ``parse`` a JSON body (raising :class:`~stream.errors.InvalidRequest`), and
    ``plan`` the request on a model within the limits (raising ``InvalidRequest`` or a
    :class:`model.errors.ModelError`)."""

    parse: Callable[[dict[str, Any]], R]
    plan: Callable[[R, Model, Limits], Plan]


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's limits on a request, applied while planning it."""

    #: Most messages in one conversation.
    max_messages: int = 1024
    #: Largest completion limit a request may ask for; 0: the context is the only bound.
    max_tokens: int = 0
    #: Seconds a request may take, queue included, when it does not say.
    request_timeout: float = 600.0
    #: Most seconds a request may ask for.
    max_request_timeout: float = 3600.0

    def check_messages(self, count: int, *, param: str = "messages") -> None:
        if count > self.max_messages:
            raise InvalidRequest(
                f"This request has {count} messages; the limit is {self.max_messages}.",
                param=param,
            )

    def check_text_size(self, model: Model, chars: int, *, param: str) -> None:
        """Refuse text that cannot fit the context, before rendering or tokenizing it: no
        token stands for more than ``model.longest_token`` bytes, and a character is at least
        one byte, so ``chars`` characters are at least ``chars // longest_token`` tokens."""
        least = chars // max(1, model.longest_token)
        limit = model.ctx_size
        if least >= limit:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens. However, your {param} "
                f"hold {chars} characters, which make at least {least} tokens. Please reduce "
                f"the length of the {param}.",
                param=param,
                code="context_length_exceeded",
            )

    def check_prompt(
        self, model: Model, prompt: Sequence[int], *, param: str, n: int, sampling: SamplingParams
    ) -> None:
        """The prompt fits the context, the logit bias the vocabulary, the choices the slots."""
        limit = model.ctx_size
        if len(prompt) >= limit:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens. However, your {param} "
                f"resulted in {len(prompt)} tokens. Please reduce the length of the {param}.",
                param=param,
                code="context_length_exceeded",
            )
        vocab = model.n_vocab
        outside = next((t for t in sampling.logit_bias if t >= vocab), None)
        if outside is not None:
            raise InvalidRequest(
                f"Token id {outside} in 'logit_bias' is outside the vocabulary (0 to {vocab - 1}).",
                param="logit_bias",
            )
        if n > model.slots:
            raise InvalidRequest(
                f"'n' may be at most {model.slots} here (one slot per choice).", param="n"
            )

    def generation(
        self,
        model: Model,
        prompt: Sequence[int],
        *,
        sampling: SamplingParams,
        max_tokens: int | None,
        max_tokens_param: str = "max_tokens",
        stop: tuple[str, ...],
        ignore_eos: bool,
        timeout: float | None,
        n: int,
        logprobs: int | None,
        grammar: Grammar | None = None,
        output: ChatOutput | None = None,
    ) -> GenerationRequest:
        """The engine's request, its completion limit lowered to the room left in the
        context and its deadline set from now. Call :meth:`check_prompt` first."""
        if grammar is not None and ignore_eos:
            # A complete grammar allows nothing but end-of-generation; going on would abort
            # llama.cpp.
            raise InvalidRequest(
                "'ignore_eos' cannot be combined with a response_format or a forced tool call.",
                param="ignore_eos",
            )
        cap = self.max_tokens
        if cap and max_tokens is not None and max_tokens > cap:
            raise InvalidRequest(
                f"{max_tokens_param} is {max_tokens}, more than this server allows ({cap}).",
                param=max_tokens_param,
            )
        seconds = self.request_timeout if timeout is None else timeout
        if seconds > self.max_request_timeout:
            raise InvalidRequest(
                f"'timeout' may be at most {self.max_request_timeout:g} seconds.",
                param="timeout",
            )
        room = model.ctx_size - len(prompt)
        return GenerationRequest(
            prompt=tuple(prompt),
            sampling=sampling,
            max_tokens=room if max_tokens is None else min(max_tokens, room),
            stop=stop,
            ignore_eos=ignore_eos,
            deadline=time.monotonic() + seconds,
            n=n,
            logprobs=logprobs,
            grammar=grammar,
            output=output,
        )
