"""What every served generation leaves behind: Prometheus counters, a row in request_stats, and a
tick of the automatic benchmark."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Optional

from lqmf.base.generation import Timings

if TYPE_CHECKING:
    from lqmf.serving import AutoBenchmark, Serving
    from server.http.metrics import Metrics

log = logging.getLogger(__name__)


class Usage:
    """Records served generations; the database write happens off the event loop, one at a time."""

    def __init__(self, metrics: Metrics, library: Serving, auto_benchmark: AutoBenchmark) -> None:
        self.metrics = metrics
        self.library = library
        self.auto_benchmark = auto_benchmark
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lqmf-usage")

    def record(self, model: str, route: str, finish_reason: str, timings: Timings,
               fallback_from: Optional[str] = None) -> None:
        self.metrics.record_generation(model, finish_reason, timings)
        self._writer.submit(self._write, model, route, finish_reason, timings, fallback_from)

    def _write(self, model: str, route: str, finish_reason: str, timings: Timings,
               fallback_from: Optional[str]) -> None:
        try:
            self.library.record_request(model, route, timings.prompt_tokens, timings.completion_tokens,
                                        timings.total_s, finish_reason, fallback_from)
        except Exception:  # a full disk must not fail requests that were served
            log.exception("could not record a request on %s", model)
        self.auto_benchmark.observe()

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.auto_benchmark.wait()
