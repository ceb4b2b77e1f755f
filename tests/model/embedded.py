"""The embedded model through llama-cpp-python directly, for grammar and tool unit tests."""

from __future__ import annotations

import ctypes
import math
import os
from typing import Any

import llama_cpp

import model.llama  # noqa: F401 - routes llama.cpp's log through logging
from model.params import Grammar
from model.source import resolve_model


class EmbeddedModel:
    """The embedded model through llama.cpp's own API: grammar membership and generation."""

    def __init__(self, *, vocab_only: bool) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = vocab_only
        params.n_gpu_layers = 0
        path = os.fsencode(resolve_model(None).path)
        self.model: Any = llama_cpp.llama_model_load_from_file(path, params)
        assert self.model
        self.vocab: Any = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.ctx: Any = None
        if not vocab_only:
            ctx_params = llama_cpp.llama_context_default_params()
            ctx_params.n_ctx = 1024
            # One thread: on a shared, loaded machine llama.cpp's worker threads wait on each
            # other in spin loops (ten times slower here); these tests measure no speed.
            ctx_params.n_threads = ctx_params.n_threads_batch = 1
            ctx_params.no_perf = True
            self.ctx = llama_cpp.llama_init_from_model(self.model, ctx_params)
            assert self.ctx

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        tokens = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, len(tokens), False, True)
        return list(tokens[:n])

    def piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    def _sampler(self, grammar: Grammar) -> Any:
        sampler = llama_cpp.llama_sampler_init_grammar(
            self.vocab, grammar.text.encode(), grammar.root.encode()
        )
        assert sampler, grammar.text
        return sampler

    def accepts(self, grammar: Grammar, text: str) -> bool:
        """Whether ``text`` is a complete sentence of ``grammar``, token by token."""
        sampler = self._sampler(grammar)
        try:
            for token in [*self.tokenize(text), llama_cpp.llama_vocab_eos(self.vocab)]:
                data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
                candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
                if math.isinf(data[0].logit):
                    return False
                # Only ever accept what the grammar allowed: llama.cpp aborts otherwise.
                llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def allows_prefix(self, grammar: Grammar, tokens: list[int]) -> bool:
        """Whether ``tokens`` can begin a sentence of ``grammar``, token by token."""
        sampler = self._sampler(grammar)
        try:
            for token in tokens:
                data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
                candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
                if math.isinf(data[0].logit):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def generate_greedy(self, prompt: str, grammar: Grammar, *, limit: int) -> list[int]:
        """Tokens chosen greedily with the grammar applied to the whole vocabulary first."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, self._sampler(grammar))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        feed = self.tokenize(prompt)
        out: list[int] = []
        try:
            for _ in range(limit):
                array = (llama_cpp.llama_token * len(feed))(*feed)
                batch = llama_cpp.llama_batch_get_one(array, len(feed))
                assert llama_cpp.llama_decode(self.ctx, batch) == 0
                token = llama_cpp.llama_sampler_sample(chain, self.ctx, -1)
                if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                    break
                out.append(token)
                feed = [token]
            return out
        finally:
            llama_cpp.llama_sampler_free(chain)

    def generate(self, prompt: str, grammar: Grammar, *, seed: int, limit: int) -> str | None:
        """Sampled text (temperature 1) under ``grammar``, or None without an end in ``limit``."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, self._sampler(grammar))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
        tokens = self.tokenize(prompt)
        out = b""
        try:
            for _ in range(limit):
                array = (llama_cpp.llama_token * len(tokens))(*tokens)
                batch = llama_cpp.llama_batch_get_one(array, len(tokens))
                assert llama_cpp.llama_decode(self.ctx, batch) == 0
                token = llama_cpp.llama_sampler_sample(chain, self.ctx, -1)
                if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                    return out.decode()
                out += self.piece(token)
                tokens = [token]
            return None
        finally:
            llama_cpp.llama_sampler_free(chain)


def chat_prompt(system: str, user: str) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
