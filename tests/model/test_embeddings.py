"""The embedding thread on the embedded model: batching across requests, its bounded queue,
clients that leave, and closing."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from model.embeddings import Embedder, EmbedderOptions, EmbeddingFailed, Embeddings
from model.errors import CapacityExceeded
from model.llama import LlamaModel
from model.source import resolve_model


@pytest.fixture(scope="module")
def weights() -> Iterator[LlamaModel]:
    loaded = LlamaModel(resolve_model(None).path)
    yield loaded
    loaded.close()


def sentence(model: LlamaModel, i: int) -> list[int]:
    return model.tokenize(
        f"Sentence number {i} is about rivers.", add_special=True, parse_special=False
    )


def test_requests_share_decodes(weights: LlamaModel) -> None:
    embedder = Embedder(weights, EmbedderOptions(ctx_size=512, max_inputs=8))
    try:
        embedder.submit([sentence(weights, 0)]).result(60)  # the context exists from here
        before = embedder.decodes
        futures = [
            embedder.submit([sentence(weights, i), sentence(weights, i + 1)]) for i in range(8)
        ]
        results = [future.result(60) for future in futures]
        assert all(len(r.vectors) == 2 for r in results)
        # 16 inputs in at most 8 per decode: 2 decodes, or a few more when the thread got
        # the first request before the others were queued; never one per request or input.
        assert embedder.decodes - before < 8
        for result in results:
            for vector in result.vectors:
                assert math.isclose(math.fsum(x * x for x in vector), 1.0, abs_tol=1e-9)
        # The same input alone and batched with others: the same vector, up to the rounding
        # of a differently shaped batch (measured: cosine 0.99995).
        alone = embedder.submit([sentence(weights, 3)]).result(60).vectors[0]
        batched = results[2].vectors[1]
        assert math.isclose(
            sum(a * b for a, b in zip(alone, batched, strict=True)), 1.0, abs_tol=1e-3
        )
    finally:
        assert embedder.close()


def test_a_full_queue_refuses_and_a_cancelled_request_is_skipped(weights: LlamaModel) -> None:
    embedder = Embedder(weights, EmbedderOptions(ctx_size=512, max_queue=1))
    try:
        accepted: list[Future[Embeddings]] = []
        refused = 0
        for i in range(64):
            try:
                accepted.append(embedder.submit([sentence(weights, i)] * 4))
            except CapacityExceeded:
                refused += 1
        assert refused > 0
        accepted[-1].cancel()  # its client left
        for future in accepted[:-1]:
            assert len(future.result(60).vectors) == 4
        # Still serving, once the thread has taken the cancelled request off the queue.
        for _ in range(1000):
            try:
                later = embedder.submit([sentence(weights, 1)])
                break
            except CapacityExceeded:
                time.sleep(0.01)
        assert later.result(60).tokens > 0
    finally:
        assert embedder.close()
    with pytest.raises(EmbeddingFailed):
        embedder.submit([sentence(weights, 1)])
