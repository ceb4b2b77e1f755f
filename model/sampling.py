"""Per-sequence samplers built from :class:`~model.params.SamplingParams`.

A sequence without a grammar samples with one llama.cpp chain (``llama_sampler_sample``).
A grammar is a separate llama.cpp sampler, and it is never handed a token it rejects:
llama.cpp's grammar accept throws a C++ exception or aborts on such a token, which through
ctypes ends the whole process. So a constrained sequence samples first with the rest of the
chain, checks the chosen token against the grammar on a one-candidate array, and only when
the grammar rejects it applies the grammar to the whole vocabulary and samples again (with
the embedded model the whole-vocabulary pass costs 10 ms of CPU or more, the check about a
tenth of a millisecond). A token is accepted into the grammar only once the grammar is known
to allow it; when it allows nothing, :class:`NoContinuation` ends that one sequence.

Constraints are bounded before they get here (see :mod:`model.json_schema`); behind those
bounds, a constrained sampler measures its own work in CPU time of the calling thread (so other
processes on a busy machine do not count against a request) and raises
:class:`GrammarTooSlow` when a token took longer than its limit twice in a row (one slow token
alone is forgiven), so that no constraint slows every stream for long.

A chat answer's grammar may be *held* (:attr:`Sampler.grammar_held`) while the answer is still
inside its reasoning block: tokens are sampled freely then, and the grammar applies from its
root to what follows the block. Tokens may also be *forced* (:meth:`Sampler.force`: the end
of the reasoning when a thinking budget is spent); they are returned instead of sampled.
"""

from __future__ import annotations

import ctypes
import math
import secrets
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

import llama_cpp
import numpy as np
import numpy.typing as npt

from .params import Grammar, SamplingParams

__all__ = [
    "Candidates",
    "ConstraintFailed",
    "GrammarTooSlow",
    "NoContinuation",
    "Sampler",
    "Vocabulary",
]

#: ``llama_token_data`` as numpy sees it: token id, logit, probability.
_TOKEN_DATA: Final = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
#: llama.cpp reads this seed as "pick a random one"; a client's seed never means that.
_RANDOM_SEED: Final = 0xFFFFFFFF


class Vocabulary(Protocol):
    @property
    def n_vocab(self) -> int: ...

    @property
    def vocab(self) -> Any: ...


class ConstraintFailed(Exception):
    """The sequence cannot go on under its grammar; the message completes "the grammar ..."."""


class NoContinuation(ConstraintFailed):
    """The grammar allows no token here."""


class GrammarTooSlow(ConstraintFailed):
    """Sampling under the grammar took longer than its limit, twice in a row."""


class Candidates:
    """A whole-vocabulary ``llama_token_data_array`` and a one-candidate one, reused for every
    token of every sequence. Engine-thread only: samplers share one instance."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self._data = (llama_cpp.llama_token_data * n_vocab)()
        self.view: npt.NDArray[np.void] = np.frombuffer(memoryview(self._data), dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self.array = llama_cpp.llama_token_data_array(self._data, n_vocab, -1, False)
        self.ref = ctypes.byref(self.array)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(self._one, 1, -1, False)
        self._one_ref = ctypes.byref(self._one_array)

    def load(self, ctx: Any, index: int) -> None:
        """Fill the array with the logits at batch position ``index``, token ``i`` at ``i``."""
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,)
        )
        view = self.view
        view["id"] = self._ids
        view["logit"] = logits
        view["p"] = 0.0
        # Samplers may shrink, reorder, or even repoint the array: restore it every time.
        array = self.array
        array.data = self._data
        array.size = self.n_vocab
        array.selected = -1
        array.sorted = False

    def selected(self) -> int:
        """The token the last sampler chose, or -1 when none was chosen."""
        array = self.array
        if not 0 <= array.selected < array.size:
            return -1
        return int(array.data[array.selected].id)

    def allows(self, grammar: Any, token: int) -> bool:
        """Whether ``grammar`` accepts ``token`` next (it is not changed)."""
        self._one[0] = llama_cpp.llama_token_data(token, 0.0, 0.0)
        self._one_array.size = 1
        self._one_array.selected = -1
        llama_cpp.llama_sampler_apply(grammar, self._one_ref)
        return math.isfinite(self._one[0].logit)


class Sampler:
    """The samplers owned by one sequence (they keep penalty, RNG and grammar state)."""

    def __init__(
        self,
        params: SamplingParams,
        vocab: Vocabulary,
        grammar: Grammar | None = None,
        *,
        choice: int = 0,
        history: Sequence[int] = (),
        candidates: Candidates | None = None,
        grammar_token_limit: float = math.inf,
    ) -> None:
        n_vocab = vocab.n_vocab
        self._grammar: Any = None
        self._argmax = (
            params.greedy and not params.penalized and not params.logit_bias and grammar is None
        )
        self._candidates = candidates
        #: CPU seconds one constrained token may take (see the module notes).
        self._limit = grammar_token_limit
        self._slow = 0
        self._accepted = 0
        self._forced: deque[int] = deque()
        #: Sample without the grammar for now (see the module notes).
        self.grammar_held = False
        chain: Any = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        self._chain = chain
        add = llama_cpp.llama_sampler_chain_add
        if params.logit_bias:
            # Ids outside the vocabulary are refused upstream; llama.cpp skips them anyway.
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
        else:
            # top_k at or past the vocabulary keeps every token, and a k beyond int32 would
            # not even cross into llama.cpp: leave the sampler out.
            if 0 < params.top_k < n_vocab:
                add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
            if params.top_p < 1.0:
                add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0.0:
                add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(_seed(params.seed, choice)))
        if grammar is not None:
            constraint = llama_cpp.llama_sampler_init_grammar(
                vocab.vocab, grammar.text.encode(), grammar.root.encode()
            )
            if not constraint:
                self.close()
                raise ValueError("llama.cpp rejected the grammar")
            self._grammar = constraint
            if self._candidates is None:
                self._candidates = Candidates(n_vocab)

    @property
    def constrained(self) -> bool:
        return self._grammar is not None

    @property
    def argmax(self) -> bool:
        """Whether the next token is just the highest logit (the first, on a tie, as
        llama.cpp's greedy sampler picks it): greedy, no penalties, bias or grammar, and no
        token forced (see :meth:`force`). The engine then takes it for every such sequence
        of a step in one array operation, and :meth:`sample` is not called."""
        return self._argmax and not self._forced

    def sample(self, ctx: Any, index: int) -> int:
        """Pick (and accept) the next token from the logits at batch position ``index``.

        :raises NoContinuation: the grammar allows no token at all here.
        :raises GrammarTooSlow: this token and the one before each took longer than the limit.
        """
        if self._forced:
            token = self._forced.popleft()
            llama_cpp.llama_sampler_accept(self._chain, token)
            return token
        if self._grammar is None or self.grammar_held:
            return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        started = time.thread_time()
        candidates = self._candidates
        assert candidates is not None
        candidates.load(ctx, index)
        llama_cpp.llama_sampler_apply(self._chain, candidates.ref)
        token = candidates.selected()
        if token < 0 or not candidates.allows(self._grammar, token):
            token = self._resample(ctx, index, candidates)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain, token)
        self._accepted += 1
        spent = time.thread_time() - started
        self._slow = self._slow + 1 if spent > self._limit else 0
        if self._slow >= 2:
            raise GrammarTooSlow(
                f"took {spent * 1000:.0f} ms for one token, twice in a row over the "
                f"{self._limit * 1000:g} ms limit; a simpler schema avoids this"
            )
        return token

    def force(self, tokens: Iterable[int]) -> None:
        """Make ``tokens`` the next ones :meth:`sample` returns. Only while no grammar applies
        (none, or held): a grammar is never handed a token it did not allow."""
        if self._grammar is None or self.grammar_held:
            self._forced.extend(tokens)

    def _resample(self, ctx: Any, index: int, candidates: Candidates) -> int:
        # The first choice was rejected: the grammar goes over the whole vocabulary, then
        # the chain picks among what it left.
        candidates.load(ctx, index)
        llama_cpp.llama_sampler_apply(self._grammar, candidates.ref)
        # Still in id order here; -inf is a rejection, NaN (a broken logit) is refused too.
        allowed = np.isfinite(candidates.view["logit"])
        if not allowed.any():
            raise NoContinuation(self._stuck("it allows no token"))
        llama_cpp.llama_sampler_apply(self._chain, candidates.ref)
        token = candidates.selected()
        if not 0 <= token < candidates.n_vocab or not allowed[token]:
            raise NoContinuation(self._stuck("no token it allows survived sampling"))
        return token

    def _stuck(self, why: str) -> str:
        return (
            f"admits no continuation after {self._accepted} tokens ({why}): the output so far "
            "cannot be completed under this constraint"
        )

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None


def _seed(seed: int | None, choice: int) -> int:
    # An unseeded request still gets its own seed: llama.cpp's "default seed" would make
    # every unseeded request in a process share one deterministic stream. Choice i of a
    # seeded request uses seed + i: reproducible, yet not n equal copies. Seeds are taken
    # modulo 2**32 - 1 so that none becomes llama.cpp's "random seed".
    if seed is None:
        return secrets.randbelow(_RANDOM_SEED)
    return (seed + choice) % _RANDOM_SEED
