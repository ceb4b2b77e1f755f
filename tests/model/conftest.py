from __future__ import annotations

from collections.abc import Iterator

import pytest

from model.llama import LlamaModel
from model.source import resolve_model
from tests.model.embedded import EmbeddedModel


@pytest.fixture(scope="session")
def vocab_model() -> Iterator[EmbeddedModel]:
    """The embedded model's vocabulary alone (no weights): enough to compile grammars."""
    loaded = EmbeddedModel(vocab_only=True)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def full_model() -> Iterator[EmbeddedModel]:
    """The embedded model with weights, for generation under a grammar."""
    loaded = EmbeddedModel(vocab_only=False)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def vocab() -> Iterator[LlamaModel]:
    """The embedded model's vocabulary as the service loads it (no weights): its tokenizer."""
    loaded = LlamaModel(resolve_model(None).path, vocab_only=True)
    yield loaded
    loaded.close()
