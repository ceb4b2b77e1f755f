"""Per-sequence sampler chains built from :class:`~model.params.SamplingParams`."""

from __future__ import annotations

import secrets
from typing import Any

import llama_cpp

from .params import SamplingParams

__all__ = ["Sampler"]


class Sampler:
    """A llama.cpp sampler chain owned by one sequence (it keeps penalty and RNG state)."""

    def __init__(self, params: SamplingParams, n_vocab: int) -> None:
        chain: Any = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        self._chain = chain
        add = llama_cpp.llama_sampler_chain_add
        if params.logit_bias:
            biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))(
                *(llama_cpp.llama_logit_bias(t, b) for t, b in params.logit_bias.items())
            )
            add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), biases))
        if params.penalized:
            add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    params.penalty_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
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
        seed = params.seed if params.seed is not None else secrets.randbits(32)
        add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, ctx: Any, index: int) -> int:
        """Pick (and accept) the next token from the logits at batch position ``index``."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
