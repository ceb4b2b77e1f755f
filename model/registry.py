"""The models a server serves: loading, readiness, lookup by name, drain and stats.

HTTP handlers ask the registry for a model and never hold one themselves. One model is
served today; nothing outside this module assumes so. Loading runs on a thread of its own
(llama.cpp reads the weights), so probes answer while it does; importing this module does
not load llama.cpp.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .errors import LoadError, ModelNotFound, NotReady
from .events import Dispatch
from .source import ResolvedModel

if TYPE_CHECKING:
    from .engine import EngineStats
    from .served import ServedModel

__all__ = ["ModelRegistry", "ModelSettings", "RegistryState"]

_log = logging.getLogger("sluice")

RegistryState = Literal["loading", "ready", "failed", "draining"]


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How to load and run one model; the engine fields mirror ``model.engine.EngineOptions``
    (kept apart so that configuring a registry does not import llama.cpp)."""

    #: Model id shown to clients; None: the file's name.
    name: str | None = None
    #: Layers offloaded to the GPU (-1: all).
    gpu_layers: int = -1
    #: ``chatml``, ``plain``, a file or inline Jinja; None: the model's own.
    chat_template: str | None = None
    #: A model family's name, forced over the one detected from the chat template.
    tool_format: str | None = None
    #: Default thinking budget in tokens; None: unlimited.
    reasoning_budget: int | None = None
    #: ``auto``: reasoning read apart from the answer; ``none``: left in the content.
    reasoning_format: Literal["auto", "none"] = "auto"
    slots: int = 16
    #: Tokens per sequence; 0: the model's training context, at most the KV pool.
    ctx_size: int = 0
    #: KV cells shared by all sequences; 0: 8192, or ``ctx_size`` when larger.
    kv_size: int = 0
    #: Each slot its own share of the KV cache (see ``EngineOptions.kv_per_slot``).
    kv_per_slot: bool = False
    batch_size: int = 512
    prefill_chunk: int = 128
    threads: int = 1
    max_queue: int = 64
    #: Seconds a client may read nothing before its sequence is dropped.
    stall_timeout: float = 30.0
    #: The model ``/v1/embeddings`` uses (a GGUF path or Hub spec); None: this one's weights.
    embedding_model: str | None = None


class ModelRegistry:
    """Every served model and the registry's state (see the module notes).

    ``strict_names``: a generation must name a served model exactly; otherwise any name
    (or none) gets the default model, as many OpenAI clients send a fixed ``model``.
    """

    def __init__(self, *, strict_names: bool = False) -> None:
        self._strict = strict_names
        self._models: dict[str, ServedModel] = {}
        self._failure: str | None = None
        self._draining = False

    # -- state ------------------------------------------------------------------------

    @property
    def state(self) -> RegistryState:
        if self._draining:
            return "draining"
        if self._failure is not None:
            return "failed"
        return "ready" if self._models else "loading"

    @property
    def failure(self) -> str | None:
        """Why loading failed (one client-safe line), or None."""
        return self._failure

    def load(
        self,
        source: ResolvedModel,
        settings: ModelSettings,
        dispatch: Dispatch,
        *,
        on_failure: Callable[[], None] = lambda: None,
    ) -> threading.Thread:
        """Start loading ``source`` on a new thread; the model is served once it is ready.

        A failure is logged, kept as :attr:`failure`, and reported by calling ``on_failure``
        from the loading thread.
        """
        thread = threading.Thread(
            target=self._load,
            args=(source, settings, dispatch, on_failure),
            name="sluice-load",
            daemon=True,
        )
        thread.start()
        return thread

    def _load(
        self,
        source: ResolvedModel,
        settings: ModelSettings,
        dispatch: Dispatch,
        on_failure: Callable[[], None],
    ) -> None:
        from .engine import EngineOptions
        from .served import ServedModel

        options = EngineOptions(
            slots=settings.slots,
            ctx_size=settings.ctx_size,
            kv_size=settings.kv_size,
            kv_per_slot=settings.kv_per_slot,
            batch_size=settings.batch_size,
            prefill_chunk=settings.prefill_chunk,
            threads=settings.threads,
            max_queue=settings.max_queue,
            stall_timeout=settings.stall_timeout,
        )
        try:
            served = ServedModel.load(
                source,
                options,
                dispatch,
                name=settings.name,
                gpu_layers=settings.gpu_layers,
                chat_template=settings.chat_template,
                embedding_model=settings.embedding_model,
                tool_format=settings.tool_format,
                reasoning_budget=settings.reasoning_budget,
                reasoning_format=settings.reasoning_format,
            )
        except LoadError as exc:
            self._failure = str(exc)
            _log.error("sluice: error: %s", exc)
            on_failure()
            return
        # One assignment: readers on the event loop see the whole entry or none of it.
        self._models = {**self._models, served.name: served}
        _log.info(
            "ready: %s (%s, %s family) with %s",
            served.name,
            source.path,
            served.family,
            served.engine.options,
        )

    # -- lookup -----------------------------------------------------------------------

    def get(self, requested: str | None = None) -> ServedModel:
        """The model a generation asking for ``requested`` runs on.

        :raises NotReady: loading, failed or draining (code ``model_not_ready`` /
            ``shutting_down``).
        :raises ModelNotFound: with strict names, ``requested`` is not a served model.
        """
        default = self.default()
        if requested is None:
            return default
        served = self._models.get(requested)
        if served is not None:
            return served
        if self._strict:
            raise ModelNotFound(
                f"The model '{requested}' does not exist; this server serves '{default.name}'.",
                param="model",
                code="model_not_found",
            )
        return default

    def find(self, model_id: str) -> ServedModel:
        """The served model named exactly ``model_id`` (``GET /v1/models/{id}``).

        :raises NotReady: as :meth:`get`.
        :raises ModelNotFound: none has that name.
        """
        self.default()
        served = self._models.get(model_id)
        if served is None:
            raise ModelNotFound(
                f"The model '{model_id}' does not exist.", param="model", code="model_not_found"
            )
        return served

    def default(self) -> ServedModel:
        """The model served when a request names none. :raises NotReady: as :meth:`get`."""
        if self._draining:
            raise NotReady(
                "The server is shutting down; retry on another instance.", code="shutting_down"
            )
        for served in self._models.values():
            return served
        message = self._failure or "The model is still loading; retry shortly."
        raise NotReady(message, code="model_not_ready")

    def served(self) -> tuple[ServedModel, ...]:
        """Every ready model, default first (``GET /v1/models``). :raises NotReady: as
        :meth:`get`."""
        self.default()
        return tuple(self._models.values())

    # -- stats and drain --------------------------------------------------------------

    def stats(self) -> dict[str, EngineStats]:
        """Engine figures per served model, by name."""
        return {name: served.stats() for name, served in self._models.items()}

    def figures(self) -> dict[str, float] | None:
        """Engine figures summed over every model, plus ``kv_usage`` (KV cells in use over
        all cells, 0 to 1), for metrics; None while nothing is served."""
        stats = list(self.stats().values())
        if not stats:
            return None
        figures: dict[str, float] = {}
        for one in stats:
            for key, value in dataclasses.asdict(one).items():
                figures[key] = figures.get(key, 0) + value
        capacity = sum(one.kv_cells for one in stats)
        figures["kv_usage"] = figures["kv_used"] / capacity
        return figures

    def begin_drain(self) -> None:
        """Stop admitting: :meth:`get` raises :class:`NotReady` from now on."""
        self._draining = True

    def idle(self) -> bool:
        """No sequence running or queued on any model."""
        return all(served.idle() for served in self._models.values())

    def cancel_all(self, message: str) -> None:
        """End every running and queued sequence with ``message`` (shutdown)."""
        for served in self._models.values():
            served.cancel_all(message)

    def close(self) -> None:
        """Stop every engine and free the models (blocking: call it off the event loop)."""
        models, self._models = self._models, {}
        for served in models.values():
            served.close()
