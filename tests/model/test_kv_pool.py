"""The shared KV pool with the real llama.cpp and the embedded model: a long prompt fits out
of the box, sequences that together outgrow the pool all complete with the text each gives
alone, and prefix reuse survives eviction. Counts, never times."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from model.engine import Engine, EngineOptions
from model.events import Delta, Finished
from model.llama import LlamaModel, ModelLoadError
from model.params import GenerationRequest, SamplingParams
from model.served import ServedModel
from model.source import resolve_model
from tests.model.sink import CollectingSink, dispatch

_GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def llama_model() -> Iterator[LlamaModel]:
    loaded = LlamaModel(resolve_model(None).path, n_gpu_layers=0)
    yield loaded
    loaded.close()


def _tokens(model: LlamaModel, count: int, topic: str) -> tuple[int, ...]:
    """A prompt of exactly ``count`` tokens of varied text (BOS first when the model adds one)."""
    words = " ".join(f"{topic} {i} is a number, and {i * 7 % 13} follows it." for i in range(count))
    tokens = model.tokenize(words, add_special=True, parse_special=False)
    assert len(tokens) >= count
    return tuple(tokens[:count])


def _counting(model: LlamaModel, start: int, count: int) -> tuple[int, ...]:
    """A prompt of ``count`` tokens counting up from ``start``.

    Its greedy continuation is so certain that batching, which changes llama.cpp's float
    rounding (with or without a shared pool), cannot change it: the text a sequence gives
    alone is the one it must give when preempted and read again.
    """
    text = "Count: " + ", ".join(str(i) for i in range(start, start + count))
    return tuple(model.tokenize(text, add_special=True, parse_special=False)[:count])


def _run(engine: Engine, requests: list[GenerationRequest]) -> list[CollectingSink]:
    sinks = [CollectingSink() for _ in requests]
    for request, sink in zip(requests, sinks, strict=True):
        engine.submit(request, sink)
    for sink in sinks:
        sink.wait()
    return sinks


def _engine(model: LlamaModel, **options: Any) -> Engine:
    engine = Engine(model, EngineOptions(threads=1, **options), dispatch)
    engine.start()
    return engine


@pytest.mark.timeout(1500)  # 7,000 prompt tokens on one thread of a loaded 2-core machine
def test_a_7000_token_prompt_fits_the_default_settings() -> None:
    # Open WebUI's default chat (its tool specs) makes a prompt of about 7,000 tokens; the
    # embedded model was trained on 8,192. Defaults as the service resolves them.
    served = ServedModel.load(
        resolve_model(None), EngineOptions(threads=1, ctx_size=0, kv_size=0), dispatch
    )
    try:
        assert served.ctx_size == served.model.n_ctx_train == 8192
        assert served.engine.options.kv_size >= 8192
        sink = CollectingSink()
        prompt = _tokens(served.model, 7000, "river")
        served.engine.submit(
            GenerationRequest(prompt, _GREEDY, max_tokens=8, ignore_eos=True), sink
        )
        done = sink.wait(timeout=1200)
        assert (done.reason, sink.tokens) == ("length", 8)
        assert done.usage.prompt_tokens == 7000
    finally:
        served.close()


def test_a_kv_share_per_slot_holds_slots_times_ctx_and_never_preempts(
    llama_model: LlamaModel,
) -> None:
    # --kv-per-slot: the old layout, a box of kv_size / slots cells for each slot.
    with pytest.raises(ModelLoadError, match="in each of 4 slots"):
        _engine(llama_model, slots=4, ctx_size=256, kv_size=512, kv_per_slot=True)
    requests = [
        GenerationRequest(_counting(llama_model, start, 100), _GREEDY, max_tokens=150)
        for start in (100, 2000, 31000, 4400)
    ]
    engine = _engine(llama_model, slots=4, ctx_size=256, kv_size=1024, kv_per_slot=True)
    try:
        sinks = _run(engine, requests)
        stats = engine.stats()
    finally:
        assert engine.close()
    assert stats.preempted == 0
    assert all(isinstance(sink.events[-1], Finished) for sink in sinks)
    assert all(0 < sink.tokens <= 150 for sink in sinks)


@pytest.mark.timeout(600)
def test_sequences_that_outgrow_the_pool_all_complete_as_alone(llama_model: LlamaModel) -> None:
    # Five sequences of 100 + 150 tokens each: 1,250 cells against a pool of 512, four
    # running at once. The pool runs short while they decode; none is cut short.
    requests = [
        GenerationRequest(
            _counting(llama_model, start, 100), _GREEDY, max_tokens=150, ignore_eos=True
        )
        for start in (100, 2000, 31000, 4400, 57000)
    ]
    alone = _engine(llama_model, slots=1, ctx_size=256, kv_size=256)
    try:
        expected = [sink.text for sink in _run(alone, requests)]
    finally:
        assert alone.close()
    engine = _engine(llama_model, slots=4, ctx_size=256, kv_size=512)
    try:
        sinks = _run(engine, requests)
        stats = engine.stats()
    finally:
        assert engine.close()
    assert stats.kv_cells == 512
    assert stats.preempted > 0  # the pool really ran short
    for sink, text in zip(sinks, expected, strict=True):
        assert (sink.events[-1].reason, sink.tokens) == ("length", 150)  # type: ignore[union-attr]
        assert sink.text == text


@pytest.mark.timeout(600)
def test_prefix_reuse_works_after_eviction(llama_model: LlamaModel) -> None:
    engine = _engine(llama_model, slots=2, ctx_size=768, kv_size=768)
    try:
        first = _tokens(llama_model, 300, "river")
        (a,) = _run(engine, [GenerationRequest(first, _GREEDY, max_tokens=4, ignore_eos=True)])
        assert a.events[-1].usage.cached_tokens == 0  # type: ignore[union-attr]
        # A different 600-token prompt needs the cells the first one left cached.
        second = _tokens(llama_model, 600, "forest")
        (b,) = _run(engine, [GenerationRequest(second, _GREEDY, max_tokens=4, ignore_eos=True)])
        assert engine.stats().kv_evictions >= 1
        # Its next turn reuses what it left behind...
        turn = second + _tokens(llama_model, 60, "ocean")[1:]
        (c,) = _run(engine, [GenerationRequest(turn, _GREEDY, max_tokens=4, ignore_eos=True)])
        assert c.events[-1].usage.cached_tokens == 600  # type: ignore[union-attr]
        # ...and the evicted prompt is read afresh and gives the same text as before.
        (d,) = _run(engine, [GenerationRequest(first, _GREEDY, max_tokens=4, ignore_eos=True)])
        assert d.events[-1].usage.cached_tokens == 0  # type: ignore[union-attr]
        assert d.text == a.text
        assert b.tokens == c.tokens == 4
    finally:
        assert engine.close()


@pytest.mark.timeout(600)
def test_choices_that_outgrow_the_pool_all_complete(llama_model: LlamaModel) -> None:
    # Three choices of one request share the prompt's cells in llama.cpp, but the pool counts
    # each as holding its own: 3 x (100 + 150) cells against 512, so some give way and come
    # back. Greedy, every choice gives the text the request gives alone.
    prompt = _counting(llama_model, 300, 100)
    alone = _engine(llama_model, slots=1, ctx_size=256, kv_size=256)
    try:
        (one,) = _run(alone, [GenerationRequest(prompt, _GREEDY, max_tokens=150, ignore_eos=True)])
    finally:
        assert alone.close()
    engine = _engine(llama_model, slots=3, ctx_size=256, kv_size=512)
    try:
        sink = CollectingSink(choices=3)
        engine.submit(
            GenerationRequest(prompt, _GREEDY, max_tokens=150, ignore_eos=True, n=3), sink
        )
        sink.wait()
        stats = engine.stats()
    finally:
        assert engine.close()
    assert stats.preempted > 0
    texts = ["", "", ""]
    for event in sink.events:
        if isinstance(event, Delta):
            texts[event.index] += event.text
    finished = [e for e in sink.events if isinstance(e, Finished)]
    assert sorted((e.index, e.reason, e.usage.completion_tokens) for e in finished) == [
        (i, "length", 150) for i in range(3)
    ]
    assert texts == [one.text] * 3
