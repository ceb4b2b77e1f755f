"""model.sampling against the real llama.cpp and the embedded model.

llama.cpp aborts the process when its grammar is made to accept a token it rejects, so
every test here that finishes at all shows the sampler never did that; the assertions check
the output, and that a constraint with no way forward ends with NoContinuation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import llama_cpp
import pytest

from model.grammar import json_object_grammar, json_schema_grammar
from model.params import Grammar, SamplingParams
from model.sampling import NoContinuation, Sampler
from tests.model.embedded import EmbeddedModel, chat_prompt

_PROMPT = chat_prompt("Reply in JSON.", "Describe a cat.")
_PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class _Run:
    """Tokens sampled by one Sampler, and how the run ended."""

    def __init__(self, tokens: list[int], ended: str) -> None:
        self.tokens = tokens
        #: "eog", "limit", or the NoContinuation message.
        self.ended = ended


def _run(
    model: EmbeddedModel,
    params: SamplingParams,
    grammar: Grammar | None,
    *,
    limit: int,
    prompt: str = _PROMPT,
) -> _Run:
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(model.ctx), True)
    feed = model.tokenize(prompt)
    sampler = Sampler(params, model, grammar, history=feed)
    tokens: list[int] = []
    try:
        for _ in range(limit):
            array = (llama_cpp.llama_token * len(feed))(*feed)
            assert (
                llama_cpp.llama_decode(model.ctx, llama_cpp.llama_batch_get_one(array, len(feed)))
                == 0
            )
            try:
                token = sampler.sample(model.ctx, -1)
            except NoContinuation as exc:
                return _Run(tokens, str(exc))
            assert 0 <= token < model.n_vocab
            if llama_cpp.llama_vocab_is_eog(model.vocab, token):
                return _Run(tokens, "eog")
            tokens.append(token)
            feed = [token]
        return _Run(tokens, "limit")
    finally:
        sampler.close()


def _text(model: EmbeddedModel, tokens: list[int]) -> str:
    return b"".join(model.piece(t) for t in tokens).decode("utf-8", "replace")


def test_a_grammar_that_admits_nothing_ends_the_sequence(full_model: EmbeddedModel) -> None:
    # A character class that matches no character: after the opening quote nothing fits.
    grammar = Grammar(r'root ::= "\"" [z-a] "\""')
    for params in (SamplingParams(temperature=0), SamplingParams(seed=5)):
        run = _run(full_model, params, grammar, limit=10)
        assert _text(full_model, run.tokens) == '"'
        assert run.ended.startswith("admits no continuation after 1 tokens (it allows no token)")


def test_repeat_penalty_zero_under_a_grammar_never_reaches_a_rejected_token(
    full_model: EmbeddedModel,
) -> None:
    # Penalty 0 turns the grammar's -inf into NaN for every recent token: before the
    # sample-then-check sampler this aborted the process. The API refuses 0 now; the
    # sampler still must not let such logits through.
    grammar = json_object_grammar()
    for params in (
        SamplingParams(temperature=0, repeat_penalty=0.0),
        SamplingParams(seed=1, repeat_penalty=0.0),
    ):
        run = _run(full_model, params, grammar, limit=24)
        assert full_model.allows_prefix(grammar, run.tokens)
        assert run.ended in ("eog", "limit") or "survived sampling" in run.ended


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_constrained_output_validates(full_model: EmbeddedModel, seed: int) -> None:
    grammar = json_schema_grammar(_PERSON)
    run = _run(full_model, SamplingParams(seed=seed), grammar, limit=80)
    assert run.ended == "eog", run.ended
    jsonschema.validate(json.loads(_text(full_model, run.tokens)), _PERSON)


def test_greedy_constrained_output_is_the_grammar_first_answer(full_model: EmbeddedModel) -> None:
    # At temperature 0, checking the model's favourite and resampling only on rejection
    # must give exactly what applying the grammar first gives: the best allowed token.
    grammar = json_object_grammar()
    run = _run(full_model, SamplingParams(temperature=0), grammar, limit=40)
    reference = full_model.generate_greedy(_PROMPT, grammar, limit=40)
    assert run.tokens == reference


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 2, 2**32 - 1])
@pytest.mark.parametrize("constrained", [False, True], ids=["free", "grammar"])
def test_a_seed_gives_the_same_tokens(
    full_model: EmbeddedModel, seed: int, constrained: bool
) -> None:
    # 2**32 - 1 is llama.cpp's "random seed": a client's seed must never mean that.
    grammar = json_object_grammar() if constrained else None
    params = SamplingParams(temperature=1.5, seed=seed)
    first = _run(full_model, params, grammar, limit=12)
    again = _run(full_model, params, grammar, limit=12)
    assert first.tokens == again.tokens
    assert len(first.tokens) > 0


def _every_token(model: EmbeddedModel, bias: float) -> Mapping[int, float]:
    return dict.fromkeys(range(model.n_vocab), bias)


#: Values that pass validation and reach llama.cpp: each must sample without harm.
_EDGES: dict[str, dict[str, Any]] = {
    "temperature 0": {"temperature": 0.0},
    "temperature 2": {"temperature": 2.0},
    "top_p 0": {"top_p": 0.0},
    "min_p 1": {"min_p": 1.0},
    "top_k 1": {"top_k": 1},
    "top_k past the vocabulary": {"top_k": 10**12},
    "smallest repeat_penalty": {"repeat_penalty": 0.01},
    "largest repeat_penalty": {"repeat_penalty": 10.0},
    "penalties +2": {"presence_penalty": 2.0, "frequency_penalty": 2.0},
    "penalties -2": {"presence_penalty": -2.0, "frequency_penalty": -2.0},
    "all penalties at once": {
        "repeat_penalty": 0.01,
        "presence_penalty": -2.0,
        "frequency_penalty": 2.0,
        "temperature": 2.0,
        "top_p": 0.0,
        "min_p": 1.0,
    },
    "highest seed": {"seed": 2**32 - 1},
}


@pytest.mark.parametrize("grammar", [None, json_object_grammar()], ids=["free", "grammar"])
@pytest.mark.parametrize("values", _EDGES.values(), ids=_EDGES.keys())
def test_edge_values_sample_safely(
    full_model: EmbeddedModel, values: dict[str, Any], grammar: Grammar | None
) -> None:
    params = SamplingParams(**{"seed": 3, **values})
    run = _run(full_model, params, grammar, limit=12)
    assert run.ended in ("eog", "limit")
    assert run.tokens or run.ended == "eog"
    if grammar is not None:
        assert full_model.allows_prefix(grammar, run.tokens)


@pytest.mark.parametrize("grammar", [None, json_object_grammar()], ids=["free", "grammar"])
@pytest.mark.parametrize("bias", [100.0, -100.0])
def test_logit_bias_on_every_token_samples_safely(
    full_model: EmbeddedModel, bias: float, grammar: Grammar | None
) -> None:
    params = SamplingParams(seed=3, logit_bias=_every_token(full_model, bias))
    run = _run(full_model, params, grammar, limit=8)
    assert run.ended in ("eog", "limit")
    if grammar is not None:
        assert full_model.allows_prefix(grammar, run.tokens)


@pytest.mark.parametrize("bias", [100.0, -100.0])
def test_logit_bias_on_end_of_generation_under_a_grammar(
    full_model: EmbeddedModel, bias: float
) -> None:
    # +100 on the end token: the grammar still holds it back until the JSON is complete,
    # then it ends at once; -100: the answer still ends (by length here at the worst).
    eos = int(llama_cpp.llama_vocab_eos(full_model.vocab))
    grammar = json_schema_grammar(
        {"type": "object", "properties": {}, "additionalProperties": False}
    )
    run = _run(full_model, SamplingParams(seed=3, logit_bias={eos: bias}), grammar, limit=12)
    assert full_model.allows_prefix(grammar, run.tokens)
    if bias > 0:
        assert run.ended == "eog"
        assert json.loads(_text(full_model, run.tokens)) == {}


def test_forced_tokens_turn_the_argmax_fast_path_off(full_model: EmbeddedModel) -> None:
    # The engine takes a greedy step's tokens in one array operation for samplers that say
    # ``argmax``; a forced token (a spent thinking budget) must come from sample() instead.
    sampler = Sampler(SamplingParams(temperature=0), full_model, None)
    try:
        assert sampler.argmax
        sampler.force([7, 8])
        assert not sampler.argmax
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(full_model.ctx), True)
        feed = full_model.tokenize(_PROMPT)
        array = (llama_cpp.llama_token * len(feed))(*feed)
        batch = llama_cpp.llama_batch_get_one(array, len(feed))
        assert llama_cpp.llama_decode(full_model.ctx, batch) == 0
        assert [sampler.sample(full_model.ctx, -1), sampler.sample(full_model.ctx, -1)] == [7, 8]
        assert sampler.argmax
    finally:
        sampler.close()
