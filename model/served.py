"""A served model at work: weights, chat template, running engine, and prompt building."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Literal

from .chat_format import ChatFormat, ReasoningFormat
from .chat_output import ChatOutput
from .embeddings import Embedder, EmbedderOptions, Embeddings
from .engine import Engine, EngineOptions, EngineStats
from .events import Dispatch, SequenceSink
from .grammar import GrammarError, check_grammar, json_object_grammar, json_schema_grammar
from .llama import LlamaModel
from .params import GenerationRequest, Grammar
from .prompt import ChatPrompt, PromptError
from .source import ResolvedModel
from .special_tokens import ClientTextError, require_unicode
from .template import ChatTemplate, load_chat_template
from .tools import Tool, ToolChoice

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
        embedder: Embedder | None = None,
        chat_format: ChatFormat | None = None,
    ):
        self.model = model
        self.template = template
        self.engine = engine
        self.name = name
        self.prompt = prompt or ChatPrompt(model, template)
        #: ``/v1/embeddings``: its own thread and context, made at the first request.
        self.embedder = embedder or Embedder(model, EmbedderOptions(ctx_size=engine.ctx_size))
        self.format = chat_format or ChatFormat(model, template)
        #: Bytes of the longest token text: bounds a prompt's tokens before tokenizing it.
        self.longest_token = model.longest_piece()

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
        embedding_model: str | None = None,
        tool_format: str | None = None,
        reasoning_budget: int | None = None,
        reasoning_format: ReasoningFormat = "auto",
    ) -> ServedModel:
        """Load weights, pick the chat template and family, and start the engine.

        ``options.ctx_size`` 0 means the model's training context, at most the pool's size;
        ``options.kv_size`` 0 means 8192 cells, or ``ctx_size`` when that is larger;
        ``tool_format`` forces a model family (see :class:`~model.chat_format.ChatFormat`);
        ``reasoning_budget``: the default thinking budget in tokens (None: unlimited);
        ``reasoning_format`` ``none`` leaves reasoning in the content.
        Raises :class:`~model.llama.ModelLoadError` or :class:`~model.template.TemplateError`
        (also when the template fails on a sample conversation, see :mod:`model.prompt`),
        :class:`~model.families.FamilyError` for an unknown ``tool_format``.
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
            chat_format = ChatFormat(
                model,
                template,
                tool_format=tool_format,
                reasoning_budget=reasoning_budget,
                reasoning_format=reasoning_format,
            )
            options = _kv_defaults(options, model.n_ctx_train)
            engine = Engine(model, options, dispatch)
        except BaseException:
            model.close()
            raise
        engine.start()
        embedder = Embedder(
            model,
            EmbedderOptions(
                ctx_size=engine.ctx_size,
                threads=options.threads,
                source=embedding_model,
                gpu_layers=gpu_layers,
            ),
        )
        return cls(
            model,
            template,
            engine,
            name or source.name,
            prompt,
            embedder=embedder,
            chat_format=chat_format,
        )

    def close(self) -> None:
        stopped = self.embedder.close()
        if self.engine.close() and stopped:  # else llama.cpp may still be using the model
            self.model.close()

    def embed(self, inputs: Sequence[Sequence[int]]) -> Future[Embeddings]:
        """Queue token lists for embedding (each checked against :attr:`embedding_limit`).

        :raises model.errors.CapacityExceeded: the embedding queue is full.
        """
        return self.embedder.submit(inputs)

    @property
    def embedding_limit(self) -> int:
        """The most tokens one embedding input may have."""
        return self.embedder.options.ctx_size

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
        *,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Render and tokenize a conversation; ``tools`` the model may call (see
        :mod:`model.chat_format`); ``template_kwargs``: more template variables.

        Raises :class:`PromptError`, or :class:`~model.template.TemplateFailure` when the
        template itself breaks (see :meth:`ChatPrompt.tokens`).
        """
        shaped, native = self.format.messages(messages, tools, choice)
        return self.prompt.tokens(shaped, native, template_kwargs)

    def chat_output(
        self,
        prompt: Sequence[int],
        tools: Sequence[Tool] = (),
        *,
        thinking_budget: int | None = None,
    ) -> ChatOutput:
        """How the answer to a chat ``prompt`` is read: reasoning, content and the family's
        calls of ``tools``; ``thinking_budget`` in tokens (None: the server's default)."""
        return self.format.output(prompt, tools, thinking_budget=thinking_budget)

    @property
    def family(self) -> str:
        """The name of the model family its answers are read by."""
        return self.format.family.name

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
                grammar = self.format.family.grammar(tools, choice)
            elif json == "json_object":
                grammar = json_object_grammar()
            else:
                param = "response_format.json_schema.schema"
                grammar = json_schema_grammar(schema or {}, strict=strict)
            check_grammar(grammar, self.model.vocab)
        except GrammarError as exc:
            raise PromptError(f"Invalid {param}: {exc}", param) from None
        return grammar

    def gbnf_grammar(self, text: str, *, param: str = "grammar") -> Grammar:
        """A client's GBNF grammar, compiled once against the vocabulary to check it.

        Raises :class:`PromptError` naming ``param`` when it is not text or llama.cpp cannot
        parse it (undefined rules, left recursion, syntax; llama.cpp logs the detail).
        """
        try:
            require_unicode(text)
        except ClientTextError as exc:
            raise PromptError(f"'{param}' contains a {exc}.", param) from None
        grammar = Grammar(text, param=param)
        try:
            check_grammar(grammar, self.model.vocab)
        except GrammarError:
            raise PromptError(
                f"'{param}' is not a GBNF grammar llama.cpp accepts (a syntax error, an "
                "undefined rule, left recursion, or no 'root' rule).",
                param,
            ) from None
        return grammar

    def tokenize(self, text: str, *, add_special: bool, param: str = "content") -> list[int]:
        """Client text as tokens; special token texts in it stay text (``parse_special`` off).

        Raises :class:`PromptError` naming ``param`` when ``text`` holds a lone surrogate.
        """
        try:
            require_unicode(text)
        except ClientTextError as exc:
            raise PromptError(f"'{param}' contains a {exc}.", param) from None
        return self.model.tokenize(text, add_special=add_special, parse_special=False)

    def token_pieces(self, tokens: Sequence[int], *, param: str = "tokens") -> list[bytes]:
        """Each token's bytes, special tokens as their text (llama.cpp's server's
        detokenization). Raises :class:`PromptError` naming ``param`` for an id outside the
        vocabulary."""
        self.check_tokens(tokens, param)
        return self.model.pieces(tokens, special=True)

    def check_tokens(self, tokens: Sequence[int], param: str) -> None:
        """:raises PromptError: naming ``param``, for an id outside the vocabulary."""
        vocab = self.model.n_vocab
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise PromptError(
                f"Token id {bad} is outside the vocabulary (0 to {vocab - 1}).", param
            )

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


def _kv_defaults(options: EngineOptions, trained: int) -> EngineOptions:
    """Fill in ``ctx_size`` and ``kv_size`` left at 0 (see :meth:`ServedModel.load`)."""
    if options.kv_per_slot:
        # A box per slot: the old layout, a sequence of up to 4096 tokens in each.
        ctx_size = options.ctx_size or (
            options.kv_size // options.slots if options.kv_size else min(trained, 4096)
        )
        kv_size = options.kv_size or ctx_size * options.slots
        return dataclasses.replace(options, ctx_size=ctx_size, kv_size=kv_size)
    if not options.ctx_size:
        pool = options.kv_size or DEFAULT_KV_CELLS
        options = dataclasses.replace(options, ctx_size=min(trained, pool))
    if not options.kv_size:
        options = dataclasses.replace(options, kv_size=max(options.ctx_size, DEFAULT_KV_CELLS))
    return options
