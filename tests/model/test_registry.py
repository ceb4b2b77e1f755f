"""model.registry with the real embedded model: loading, lookup by name, drain, failure."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from model.errors import ModelNotFound, NotReady
from model.events import Event, SequenceSink
from model.registry import ModelRegistry, ModelSettings
from model.source import ResolvedModel, resolve_model

SETTINGS = ModelSettings(name="served", slots=2, ctx_size=512, threads=os.cpu_count() or 1)


def ignore(batch: Sequence[tuple[SequenceSink, Event]]) -> None:
    """A dispatch for a registry nobody generates on."""


def load(registry: ModelRegistry, source: ResolvedModel) -> threading.Event:
    failed = threading.Event()
    registry.load(source, SETTINGS, ignore, on_failure=failed.set).join(timeout=60)
    return failed


@pytest.fixture(scope="module")
def strict() -> Iterator[ModelRegistry]:
    registry = ModelRegistry(strict_names=True)
    assert not load(registry, resolve_model(None)).is_set()
    yield registry
    registry.close()


def test_nothing_is_served_while_loading() -> None:
    registry = ModelRegistry()
    assert registry.state == "loading"
    with pytest.raises(NotReady) as caught:
        registry.get("anything")
    assert caught.value.code == "model_not_ready"
    assert "loading" in caught.value.message
    with pytest.raises(NotReady):
        registry.served()
    assert registry.figures() is None
    assert registry.idle()


def test_a_loaded_model_is_served_by_its_name(strict: ModelRegistry) -> None:
    assert strict.state == "ready"
    served = strict.get(None)
    assert served.name == "served"
    assert strict.get("served") is served
    assert strict.find("served") is served
    assert strict.served() == (served,)
    assert (served.slots, served.ctx_size) == (2, 512)
    assert served.n_vocab > 1000
    stats = strict.stats()
    assert list(stats) == ["served"]
    assert stats["served"].active == 0
    figures = strict.figures()
    assert figures is not None
    assert figures["slots"] == 2
    assert 0 <= figures["kv_usage"] <= 1
    assert strict.idle()


def test_strict_names_refuse_other_models(strict: ModelRegistry) -> None:
    with pytest.raises(ModelNotFound) as caught:
        strict.get("gpt-4o")
    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    assert "'gpt-4o'" in caught.value.message
    assert "'served'" in caught.value.message


def test_any_name_gets_the_default_model_unless_strict() -> None:
    registry = ModelRegistry()
    assert not load(registry, resolve_model(None)).is_set()
    try:
        default = registry.get(None)
        assert registry.get("gpt-4o") is default
        # A listing's id must still be exact.
        with pytest.raises(ModelNotFound) as caught:
            registry.find("gpt-4o")
        assert caught.value.code == "model_not_found"
        registry.begin_drain()
        assert registry.state == "draining"
        for ask in (lambda: registry.get(None), registry.served, lambda: registry.find("served")):
            with pytest.raises(NotReady) as refused:
                ask()
            assert refused.value.code == "shutting_down"
        registry.cancel_all("the server is shutting down")  # nothing runs: a no-op
        assert registry.idle()
    finally:
        registry.close()
    assert registry.stats() == {}


def test_a_model_that_fails_to_load_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4096))
    registry = ModelRegistry()
    failed = load(registry, ResolvedModel(broken, "broken", "local"))
    assert failed.is_set()
    assert registry.state == "failed"
    assert registry.failure is not None
    assert "could not load" in registry.failure
    with pytest.raises(NotReady) as caught:
        registry.get(None)
    assert caught.value.message == registry.failure
    assert caught.value.code == "model_not_ready"
