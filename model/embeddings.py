"""Embeddings on their own thread and llama.cpp context, never the generation engine's.

An :class:`Embedder` takes requests (lists of tokenized inputs) into a bounded queue and
computes them on its thread, batched: each ``llama_decode`` reads as many whole inputs,
from any queued requests, as fit in the context (``ctx_size`` tokens, ``max_inputs``
sequences), and every vector comes back L2-normalized, as OpenAI's are. The context (with the
model's pooling type, mean when it has none) is made at the first request, on the embedding
thread: a server that never embeds pays nothing. It shares the served model's weights, or
loads the model named by ``source`` there.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import CapacityExceeded, LoadError, ModelError
from .source import ModelSourceError, resolve_model

if TYPE_CHECKING:  # llama.cpp is loaded on the embedding thread, not at import
    from .llama import Batch, EmbeddingContext, LlamaModel

__all__ = ["Embedder", "EmbedderOptions", "EmbeddingFailed", "Embeddings"]

_log = logging.getLogger("sluice.embeddings")


class EmbeddingFailed(ModelError):
    """llama.cpp could not compute embeddings (or their model could not be loaded)."""


@dataclass(frozen=True, slots=True)
class EmbedderOptions:
    #: Tokens the context holds: the largest input, and the most tokens one decode reads.
    ctx_size: int = 4096
    #: Inputs (sequences) one decode reads at most.
    max_inputs: int = 16
    threads: int = 1
    #: Requests waiting at most; beyond it a request is refused (429).
    max_queue: int = 64
    #: Another model for embeddings (a ``resolve_model`` spec: a GGUF path or a Hub repo);
    #: None: the served model's weights.
    source: str | None = None
    gpu_layers: int = -1


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One request's vectors (unit length), in input order, and the tokens read."""

    vectors: list[list[float]]
    tokens: int


@dataclass(slots=True)
class _Job:
    inputs: Sequence[Sequence[int]]
    future: Future[Embeddings]
    vectors: list[list[float] | None] = field(default_factory=list)
    left: int = 0


class Embedder:
    """Runs embedding requests (see the module notes). ``model``: the served
    :class:`~model.llama.LlamaModel`, whose weights are used unless ``options.source``."""

    def __init__(self, model: LlamaModel, options: EmbedderOptions) -> None:
        self._model = model
        self.options = options
        self._queue: queue.Queue[_Job | None] = queue.Queue(options.max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._batch: Batch | None = None
        #: Decode calls made so far (tests count batches with it).
        self.decodes = 0

    def submit(self, inputs: Sequence[Sequence[int]]) -> Future[Embeddings]:
        """Queue one request's token lists (each non-empty, at most ``ctx_size`` tokens).

        :raises CapacityExceeded: the queue is full.
        """
        job = _Job(inputs, Future(), [None] * len(inputs), len(inputs))
        with self._lock:
            if self._closed:
                raise EmbeddingFailed("the server is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sluice-embeddings", daemon=True
                )
                self._thread.start()
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise CapacityExceeded(
                    f"{self.options.max_queue} embedding requests are waiting",
                    code="rate_limit_exceeded",
                ) from None
        return job.future

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the thread after the batch it is computing (waiting requests fail); True once
        it has stopped (the weights may then be freed)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        thread.join(timeout)
        return not thread.is_alive()

    # -- the embedding thread ---------------------------------------------------------

    def _run(self) -> None:
        pending: deque[tuple[_Job, int]] = deque()
        try:
            context, owned = self._context()
        except (LoadError, ModelSourceError, OSError) as exc:
            _log.error("embeddings unavailable: %s", exc)
            self._stop(pending, EmbeddingFailed(f"embeddings are unavailable: {exc}"))
            return
        try:
            self._serve(context, pending)
            self._stop(pending, EmbeddingFailed("the server is shutting down"))
        except Exception:
            # A bug here must not leave requests waiting forever: fail them, refuse new ones.
            _log.exception("the embedding thread failed")
            self._stop(pending, EmbeddingFailed("internal error computing embeddings"))
        finally:
            context.close()
            if self._batch is not None:
                self._batch.close()
            if owned is not None:
                owned.close()

    def _stop(self, pending: deque[tuple[_Job, int]], error: EmbeddingFailed) -> None:
        with self._lock:
            self._closed = True
        for job, _ in pending:
            _settle(job, error)
        while True:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                return
            if waiting is not None:
                _settle(waiting, error)

    def _context(self) -> tuple[EmbeddingContext, LlamaModel | None]:
        from .llama import Batch, EmbeddingContext, LlamaModel

        options = self.options
        owned = None
        model = self._model
        if options.source is not None:
            resolved = resolve_model(options.source)
            owned = LlamaModel(resolved.path, n_gpu_layers=options.gpu_layers)
            model = owned
        try:
            context = EmbeddingContext(
                model, n_ctx=options.ctx_size, n_seq=options.max_inputs, n_threads=options.threads
            )
        except BaseException:
            if owned is not None:
                owned.close()
            raise
        self._batch = Batch(context.n_ctx)
        return context, owned

    def _serve(self, context: EmbeddingContext, pending: deque[tuple[_Job, int]]) -> None:
        while True:
            if not pending:
                job = self._queue.get()
                if job is None:
                    return
                pending.extend((job, i) for i in range(len(job.inputs)))
            # Everything queued joins the next decodes: requests share batches.
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    return
                pending.extend((job, i) for i in range(len(job.inputs)))
            self._decode(context, pending)

    def _decode(self, context: EmbeddingContext, pending: deque[tuple[_Job, int]]) -> None:
        batch = self._batch
        assert batch is not None
        batch.clear()
        taken: list[tuple[_Job, int]] = []
        while pending and len(taken) < context.n_seq:
            job, i = pending[0]
            tokens = job.inputs[i]
            if taken and batch.n + len(tokens) > context.n_ctx:
                break
            pending.popleft()
            if job.future.done():  # failed earlier, or its client left
                continue
            seq = len(taken)
            for pos, token in enumerate(tokens):
                batch.add(token, pos, seq, True)
            taken.append((job, i))
        if not taken:
            return
        self.decodes += 1
        try:
            vectors = context.embed(batch, len(taken))
        except RuntimeError as exc:
            _log.error("%s", exc)
            for job, _ in taken:
                _settle(job, EmbeddingFailed("internal error computing embeddings"))
            return
        for (job, i), vector in zip(taken, vectors, strict=True):
            job.vectors[i] = _normalized(vector)
            job.left -= 1
            if job.left == 0:
                done = [v for v in job.vectors if v is not None]
                _settle(job, Embeddings(done, sum(len(t) for t in job.inputs)))


def _settle(job: _Job, outcome: Embeddings | EmbeddingFailed) -> None:
    # The request's side cancels the future when its client leaves: never settle twice.
    try:
        if isinstance(outcome, Embeddings):
            job.future.set_result(outcome)
        else:
            job.future.set_exception(outcome)
    except InvalidStateError:
        pass


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)
