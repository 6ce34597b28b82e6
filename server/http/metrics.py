"""Prometheus metrics for one app (its own registry: no module-level state)."""

from __future__ import annotations

import time
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lqmf.base.generation import Timings
from server.http.asgi import HTTPMiddleware

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _ManagerCollector(Collector):
    """Read from the manager at scrape time: loaded models, queue depth, memory, and loads so far."""

    def __init__(self, loaded: Callable[[], list[dict]], loads: Callable[[], dict[str, int]]) -> None:
        self.loaded = loaded
        self.loads = loads

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        import psutil

        models = self.loaded()
        yield GaugeMetricFamily("lqmf_loaded_models", "Models loaded now", value=len(models))
        depth = GaugeMetricFamily("lqmf_queue_depth", "Requests running or waiting per model", labels=["model"])
        memory = GaugeMetricFamily("lqmf_model_memory_bytes", "Memory held per loaded model", labels=["model"])
        for m in models:
            depth.add_metric([m["name"]], m["queue_depth"])
            memory.add_metric([m["name"]], m["memory_bytes"])
        yield depth
        yield memory
        yield GaugeMetricFamily("lqmf_process_resident_bytes", "Resident memory of the server process",
                                value=psutil.Process().memory_info().rss)
        # A count that keeps climbing for one model means it is evicted and loaded again (too small a budget).
        loads = CounterMetricFamily("lqmf_model_loads", "Model loads completed by this process", labels=["model"])
        for name, count in sorted(self.loads().items()):
            loads.add_metric([name], count)
        yield loads


class Metrics:
    """Counters and histograms the routes update; `render()` is the /metrics body."""

    def __init__(self, loaded: Callable[[], list[dict]], loads: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lqmf_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("lqmf_request_seconds", "HTTP request latency (until the body is sent)",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("lqmf_tokens_total", "Tokens processed", ["model", "direction"], registry=self.registry)
        self.ttft = Histogram("lqmf_time_to_first_token_seconds", "Time to first token", ["model"],
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        self.generations = Counter("lqmf_generations_total", "Generations by finish reason",
                                   ["model", "finish_reason"], registry=self.registry)
        self.fallbacks = Counter("lqmf_fallbacks_total", "Requests for the default model moved down its fallback "
                                 "chain", ["from_model", "to_model"], registry=self.registry)
        self.registry.register(_ManagerCollector(loaded, loads))

    def record_generation(self, model: str, finish_reason: str, timings: Timings) -> None:
        self.tokens.labels(model, "in").inc(timings.prompt_tokens)
        self.tokens.labels(model, "out").inc(timings.completion_tokens)
        self.generations.labels(model, finish_reason).inc()
        if timings.completion_tokens:
            self.ttft.labels(model).observe(timings.time_to_first_token_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware(HTTPMiddleware):
    """Counts requests and times them by route template (not raw path: bounded labels)."""

    def __init__(self, app, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def http(self, scope, receive, send) -> None:
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
