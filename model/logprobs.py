"""Log-probabilities of sampled tokens, from the model's raw logits.

They describe the model's own distribution (log-softmax of the logits), not the one after
temperature, penalties or a grammar reshaped it, as OpenAI reports them.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np

__all__ = ["TokenLogprob", "token_logprob"]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: int
    logprob: float
    #: The most likely tokens at this position, best first: (token id, logprob).
    top: tuple[tuple[int, float], ...]


def token_logprob(ctx: Any, index: int, n_vocab: int, token: int, top: int) -> TokenLogprob:
    """The sampled ``token``'s logprob at batch position ``index``, with ``top`` alternatives."""
    pointer = llama_cpp.llama_get_logits_ith(ctx, index)
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    buffer = (ctypes.c_float * n_vocab).from_address(address or 0)
    logits = np.frombuffer(memoryview(buffer), dtype=np.float32, count=n_vocab)
    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
    best: tuple[tuple[int, float], ...] = ()
    if top > 0:
        ids = np.argpartition(logits, -top)[-top:]
        ids = ids[np.argsort(logits[ids])[::-1]]
        best = tuple((int(i), float(logits[i]) - log_total) for i in ids)
    return TokenLogprob(token, float(logits[token]) - log_total, best)
