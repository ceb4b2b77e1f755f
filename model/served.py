"""A served model at work: weights, chat template, running engine, and prompt building."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .engine import Engine, EngineOptions, EngineStats
from .events import Dispatch, SequenceSink
from .grammar import GrammarError, check_grammar, json_object_grammar, json_schema_grammar
from .llama import LlamaModel
from .params import GenerationRequest, Grammar
from .prompt import ChatPrompt, PromptError
from .source import ResolvedModel
from .template import ChatTemplate, load_chat_template
from .tools import (
    Tool,
    ToolChoice,
    flatten_tool_messages,
    messages_with_tools,
    template_supports_tools,
    tool_call_grammar,
)

__all__ = ["PromptError", "ServedModel"]

#: KV cells in the pool unless ``--kv-size`` says otherwise, and the longest default context
#: per sequence. llama.cpp clears the whole cache when it allocates it, so its size is paid
#: at every cold start: 16384 cells of the embedded model took twice as long to start as 8192.
DEFAULT_KV_CELLS = 8192


class ServedModel:
    """One model a registry serves. Built on a loading thread; used by the event loop
    (and by request planning on worker threads) afterwards."""

    def __init__(
        self,
        model: LlamaModel,
        template: ChatTemplate,
        engine: Engine,
        name: str,
        prompt: ChatPrompt | None = None,
    ):
        self.model = model
        self.template = template
        self.engine = engine
        self.name = name
        self.prompt = prompt or ChatPrompt(model, template)

    @classmethod
    def load(
        cls,
        source: ResolvedModel,
        options: EngineOptions,
        dispatch: Dispatch,
        *,
        name: str | None = None,
        gpu_layers: int = -1,
        chat_template: str | None = None,
    ) -> ServedModel:
        """Load weights, pick the chat template and start the engine.

        ``options.ctx_size`` 0 means the model's training context, at most the pool's size;
        ``options.kv_size`` 0 means 8192 cells, or ``ctx_size`` when that is larger.
        Raises :class:`~model.llama.ModelLoadError` or :class:`~model.template.TemplateError`
        (also when the template fails on a sample conversation, see :mod:`model.prompt`).
        """
        model = LlamaModel(source.path, n_gpu_layers=gpu_layers)
        try:
            template = load_chat_template(
                model.chat_template,
                override=chat_template,
                bos_token=model.token_text(model.bos),
                eos_token=model.token_text(model.eos),
            )
            prompt = ChatPrompt(model, template)
            prompt.check()
            if not options.ctx_size:
                pool = options.kv_size or DEFAULT_KV_CELLS
                options = dataclasses.replace(options, ctx_size=min(model.n_ctx_train, pool))
            if not options.kv_size:
                kv_size = max(options.ctx_size, DEFAULT_KV_CELLS)
                options = dataclasses.replace(options, kv_size=kv_size)
            engine = Engine(model, options, dispatch)
        except BaseException:
            model.close()
            raise
        engine.start()
        return cls(model, template, engine, name or source.name, prompt)

    def close(self) -> None:
        if self.engine.close():  # else llama.cpp may still be using the model
            self.model.close()

    @property
    def ctx_size(self) -> int:
        """Tokens per sequence: prompt plus completion."""
        return self.engine.ctx_size

    @property
    def slots(self) -> int:
        """Sequences decoded at once: the most choices one request may ask for."""
        return self.engine.options.slots

    @property
    def n_vocab(self) -> int:
        return self.model.n_vocab

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings the chat template needs (e.g. ``plain``'s next-turn marker)."""
        return self.template.stop

    def submit(self, request: GenerationRequest, sink: SequenceSink) -> None:
        """Queue a generation; raises :class:`~model.engine.QueueFull` (CapacityExceeded)."""
        self.engine.submit(request, sink)

    def wake(self) -> None:
        self.engine.wake()

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def idle(self) -> bool:
        """No sequence running or queued."""
        stats = self.engine.stats()
        return stats.active == 0 and stats.queued == 0

    def cancel_all(self, message: str) -> None:
        self.engine.cancel_all(message)

    def chat_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Tool] = (),
        choice: ToolChoice | None = None,
    ) -> list[int]:
        """Render and tokenize a conversation; ``tools`` the model may call (see model.tools).

        A template that knows tools gets them natively; any other gets the generic format.
        Raises :class:`PromptError`, or :class:`~model.template.TemplateFailure` when the
        template itself breaks (see :meth:`ChatPrompt.tokens`).
        """
        native: list[dict[str, Any]] | None = None
        if tools and choice is not None and choice.mode != "none":
            if template_supports_tools(self.template.source):
                native = [tool.spec() for tool in tools]
            else:
                messages = messages_with_tools(messages, tools, choice)
        elif any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
            messages = flatten_tool_messages(messages)
        return self.prompt.tokens(messages, native)

    def grammar(
        self,
        json: Literal["json_object", "json_schema"] | None,
        schema: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        tools: Sequence[Tool] = (),
        choice: ToolChoice | None = None,
    ) -> Grammar | None:
        """What the output must match: a JSON format, a forced tool call, or nothing.

        Raises :class:`PromptError` (or :class:`~model.tools.ToolError`) naming the field
        when it cannot be enforced.
        """
        forced = bool(tools) and choice is not None and choice.mode == "required"
        if json is None and not forced:
            return None
        if json is not None and forced:
            raise PromptError(
                "A forced tool call and a response_format cannot both constrain one answer.",
                "tool_choice",
            )
        param = "response_format"
        try:
            if forced:
                assert choice is not None
                param = "tool_choice"
                grammar = tool_call_grammar(tools, choice)
            elif json == "json_object":
                grammar = json_object_grammar()
            else:
                param = "response_format.json_schema.schema"
                grammar = json_schema_grammar(schema or {}, strict=strict)
            check_grammar(grammar, self.model.vocab)
        except GrammarError as exc:
            raise PromptError(f"Invalid {param}: {exc}", param) from None
        return grammar

    def text_prompt(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            tokens = self.prompt.raw_tokens(prompt)
        else:
            tokens = list(prompt)
            vocab = self.model.n_vocab
            bad = next((t for t in tokens if not 0 <= t < vocab), None)
            if bad is not None:
                raise PromptError(
                    f"Token id {bad} is outside the vocabulary (0 to {vocab - 1}).", "prompt"
                )
        if not tokens:
            raise PromptError("The prompt is empty.", "prompt")
        return tokens
