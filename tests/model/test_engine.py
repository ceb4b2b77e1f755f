"""model.engine with the real llama.cpp and the embedded model: how one sequence's grammar
ends that sequence alone, and how closing is bounded."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from model.engine import Engine, EngineOptions
from model.events import Event, SequenceSink
from model.grammar import json_object_grammar
from model.llama import LlamaModel
from model.params import GenerationRequest, Grammar, SamplingParams
from model.source import resolve_model
from tests.model.sink import WAIT, CollectingSink, dispatch

_GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def llama_model() -> Iterator[LlamaModel]:
    loaded = LlamaModel(resolve_model(None).path, n_gpu_layers=0)
    yield loaded
    loaded.close()


def _engine(model: LlamaModel, **options: float) -> Engine:
    engine = Engine(model, EngineOptions(slots=3, ctx_size=512, threads=1, **options), dispatch)  # type: ignore[arg-type]
    engine.start()
    return engine


def _prompt(model: LlamaModel, text: str) -> tuple[int, ...]:
    return tuple(model.tokenize(text, add_special=True, parse_special=False))


def test_a_grammar_with_no_way_forward_ends_only_its_sequence(llama_model: LlamaModel) -> None:
    engine = _engine(llama_model)
    try:
        free, stuck = CollectingSink(), CollectingSink()
        engine.submit(
            GenerationRequest(
                _prompt(llama_model, "Count: one, two,"), _GREEDY, max_tokens=24, ignore_eos=True
            ),
            free,
        )
        dead = Grammar(r'root ::= "\"" [z-a] "\""', param="response_format")
        engine.submit(
            GenerationRequest(_prompt(llama_model, "Say it:"), _GREEDY, grammar=dead), stuck
        )
        ended = stuck.wait()
        assert ended.reason == "error"
        assert "response_format grammar admits no continuation after 1 tokens" in ended.message
        done = free.wait()
        assert (done.reason, free.tokens) == ("length", 24)
        # The engine goes on serving.
        after = CollectingSink()
        request = GenerationRequest(
            _prompt(llama_model, "Hello"), _GREEDY, max_tokens=4, ignore_eos=True
        )
        engine.submit(request, after)
        assert after.wait().reason == "length"
    finally:
        assert engine.close()


def test_slow_grammar_work_ends_its_sequence_and_spares_the_others(
    llama_model: LlamaModel,
) -> None:
    # A limit of 0 makes every constrained token "slow": the sequence ends at its second.
    engine = _engine(llama_model, grammar_token_limit=0.0)
    try:
        free, slow = CollectingSink(), CollectingSink()
        engine.submit(
            GenerationRequest(_prompt(llama_model, "One"), _GREEDY, max_tokens=12, ignore_eos=True),
            free,
        )
        grammar = Grammar(json_object_grammar().text, param="tool_choice")
        engine.submit(
            GenerationRequest(_prompt(llama_model, "JSON:"), _GREEDY, grammar=grammar), slow
        )
        ended = slow.wait()
        assert ended.reason == "error"
        assert "the tool_choice grammar took" in ended.message
        assert ended.usage.completion_tokens == 1
        assert (free.wait().reason, free.tokens) == ("length", 12)
    finally:
        assert engine.close()


def test_close_is_bounded_while_the_engine_thread_is_busy(llama_model: LlamaModel) -> None:
    inside, release = threading.Event(), threading.Event()

    def stuck_dispatch(events: Sequence[tuple[SequenceSink, Event]]) -> None:
        # Stands in for a long call into llama.cpp: the engine thread does not come back.
        inside.set()
        release.wait(WAIT)

    options = EngineOptions(slots=1, ctx_size=256, threads=1, close_timeout=0.2)
    engine = Engine(llama_model, options, stuck_dispatch)
    engine.start()
    engine.submit(
        GenerationRequest(_prompt(llama_model, "Hi"), _GREEDY, max_tokens=2), CollectingSink()
    )
    assert inside.wait(WAIT)
    assert engine.close() is False  # gave up waiting; nothing freed under the thread
    release.set()
    assert engine.close() is True  # the thread has stopped now: freed


def test_one_dispatch_per_step_and_argmax_picks_what_the_greedy_sampler_picks(
    llama_model: LlamaModel,
) -> None:
    calls: list[int] = []

    def counting_dispatch(events: Sequence[tuple[SequenceSink, Event]]) -> None:
        calls.append(len(events))
        dispatch(events)

    prompts = [_prompt(llama_model, f"{n}. Once upon a time, a fox") for n in range(4)]
    texts: list[list[str]] = []
    # A zero bias changes no logit but takes the sequence off the batched argmax path,
    # through llama.cpp's own greedy sampler.
    for sampling in (_GREEDY, SamplingParams(temperature=0, logit_bias={0: 0.0})):
        engine = Engine(
            llama_model, EngineOptions(slots=4, ctx_size=256, threads=1), counting_dispatch
        )
        engine.start()
        try:
            sinks = [CollectingSink() for _ in prompts]
            for prompt, sink in zip(prompts, sinks, strict=True):
                engine.submit(
                    GenerationRequest(prompt, sampling, max_tokens=16, ignore_eos=True), sink
                )
            for sink in sinks:
                assert sink.wait().reason == "length"
            steps = engine.stats().steps
        finally:
            assert engine.close()
        texts.append([sink.text for sink in sinks])
        # Every step's events leave in one call, never one call per event.
        assert len(calls) <= steps
        assert sum(calls) > len(calls) * 2  # several sequences' events share a call
        calls.clear()
    assert texts[0] == texts[1]
