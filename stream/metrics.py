"""Prometheus metrics for ``GET /metrics``, on a registry of the app's own (no globals).

Request-side figures are observed as responses flow; engine figures (queue, sequences, KV
use, cancellations the engine decided) are read from the engine at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from model.events import Delta, Event, Finished

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TOKEN_GAP = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_DURATION = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: Keys the engine snapshot provides -> (metric, help); gauges first, then counters.
_GAUGES = {
    "queued": ("sluice_queue_depth", "Requests waiting for a slot."),
    "active": ("sluice_active_sequences", "Sequences holding a slot."),
    "kv_usage": ("sluice_kv_cache_usage_ratio", "KV cache cells in use, over the pool."),
}
_CANCELLATIONS = {
    "gone": "client_gone",
    "expired": "deadline",
    "evicted": "shutdown",
    "stalled": "stalled_client",
}


class _EngineCollector(Collector):
    def __init__(self, snapshot: Callable[[], Mapping[str, float] | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        values = self._snapshot()
        if values is None:  # still loading
            return
        for key, (name, text) in _GAUGES.items():
            yield GaugeMetricFamily(name, text, value=values[key])
        cancelled = CounterMetricFamily(
            "sluice_cancellations", "Generations ended early, by cause.", labels=["cause"]
        )
        for key, cause in _CANCELLATIONS.items():
            cancelled.add_metric([cause], values[key])
        yield cancelled
        yield CounterMetricFamily(
            "sluice_decode_steps", "Batched llama_decode steps.", value=values["steps"]
        )


class Metrics:
    """Every metric of one app."""

    def __init__(self, engine: Callable[[], Mapping[str, float] | None]) -> None:
        registry = CollectorRegistry()
        self.registry = registry
        self.requests = Counter(
            "sluice_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "sluice_request_duration_seconds",
            "Time from request to the end of the response.",
            ["route"],
            buckets=_DURATION,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "sluice_prompt_tokens", "Prompt tokens of finished generations.", registry=registry
        )
        self.cached_tokens = Counter(
            "sluice_cached_prompt_tokens",
            "Prompt tokens reused from the KV cache.",
            registry=registry,
        )
        self.completion_tokens = Counter(
            "sluice_completion_tokens", "Generated tokens.", registry=registry
        )
        self.ttft = Histogram(
            "sluice_time_to_first_token_seconds",
            "Time from request to its first token.",
            buckets=_LATENCY,
            registry=registry,
        )
        self.inter_token = Histogram(
            "sluice_inter_token_seconds",
            "Time between consecutive tokens of a choice.",
            buckets=_TOKEN_GAP,
            registry=registry,
        )
        registry.register(_EngineCollector(engine))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def generation(self, started: float) -> Callable[[Event], None]:
        """An observer for one request's events, as they reach the reader."""
        first = True
        last: dict[int, float] = {}
        prompt_counted = False

        def observe(event: Event) -> None:
            nonlocal first, prompt_counted
            now = time.perf_counter()
            if isinstance(event, Delta) and event.tokens:
                if first:
                    self.ttft.observe(now - started)
                    first = False
                if event.index in last:
                    self.inter_token.observe(now - last[event.index])
                last[event.index] = now
            elif isinstance(event, Finished):
                if not prompt_counted:  # once per request, whatever n is
                    self.prompt_tokens.inc(event.usage.prompt_tokens)
                    self.cached_tokens.inc(event.usage.cached_tokens)
                    prompt_counted = True
                self.completion_tokens.inc(event.usage.completion_tokens)

        return observe
