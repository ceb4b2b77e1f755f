"""Per-sequence sampler chains built from :class:`~model.params.SamplingParams`."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, Protocol

import llama_cpp

from .params import Grammar, SamplingParams

__all__ = ["Sampler", "Vocabulary"]


class Vocabulary(Protocol):
    @property
    def n_vocab(self) -> int: ...

    @property
    def vocab(self) -> Any: ...


class Sampler:
    """A llama.cpp sampler chain owned by one sequence (it keeps penalty and RNG state)."""

    def __init__(
        self,
        params: SamplingParams,
        vocab: Vocabulary,
        grammar: Grammar | None = None,
        *,
        choice: int = 0,
        history: Sequence[int] = (),
    ) -> None:
        n_vocab = vocab.n_vocab
        chain: Any = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        self._chain = chain
        add = llama_cpp.llama_sampler_chain_add
        if grammar is not None:
            constraint = llama_cpp.llama_sampler_init_grammar(
                vocab.vocab, grammar.text.encode(), grammar.root.encode()
            )
            if not constraint:
                llama_cpp.llama_sampler_free(chain)
                raise ValueError("llama.cpp rejected the grammar")
            # First in the chain: everything after it only sees tokens the grammar allows.
            add(chain, constraint)
        if params.logit_bias:
            biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))(
                *(llama_cpp.llama_logit_bias(t, b) for t, b in params.logit_bias.items())
            )
            add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), biases))
        if params.penalized:
            penalties = llama_cpp.llama_sampler_init_penalties(
                n_vocab,
                params.penalty_last_n,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
            # The text so far includes the prompt: seed the penalty window with its tail.
            for token in history[-params.penalty_last_n :]:
                llama_cpp.llama_sampler_accept(penalties, token)
            add(chain, penalties)
        if params.greedy:
            add(chain, llama_cpp.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        # An unseeded request still gets its own seed: llama.cpp's "default seed" would
        # make every unseeded request in a process share one deterministic stream.
        # Choice i of a seeded request uses seed + i: reproducible, yet not n equal copies.
        seed = params.seed + choice if params.seed is not None else secrets.randbits(32)
        add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, ctx: Any, index: int) -> int:
        """Pick (and accept) the next token from the logits at batch position ``index``."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
