"""Every N served generations, a small benchmark of the loaded models in the background (the brief's
"every 50 requests"), appended to logs/benchmarks.jsonl and the store."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Optional

from agents.measure.experiments import SMALL_BENCHMARK, ExperimentAgent
from lqmf.base.errors import LQMFError

log = logging.getLogger(__name__)


class AutoBenchmark:
    """Counts served generations; each N-th starts one background run unless one is still going."""

    def __init__(self, agent: ExperimentAgent, every: int) -> None:
        self.agent = agent
        self.every = every
        self.served = 0
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def observe(self) -> None:
        """One generation was served."""
        if self.every <= 0:
            return
        with self._lock:
            self.served += 1
            if self.served % self.every or (self._thread is not None and self._thread.is_alive()):
                return
            count = self.served
            self._thread = threading.Thread(target=self._run, args=(count,), name="lqmf-auto-benchmark", daemon=True)
            self._thread.start()

    def wait(self, timeout: Optional[float] = None) -> None:
        """Wait for a running benchmark (shutdown, tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, request_count: int) -> None:
        models = [m["name"] for m in self.agent.manager.loaded()]
        if not models:
            return
        try:
            # Queued behind requests on each model's worker like any request: nothing waits on it.
            report = self.agent.benchmark(models, kind="auto-benchmark", only_loaded=True, **SMALL_BENCHMARK)
        except LQMFError as exc:  # a model unloaded (or its queue full) mid-run: expected under load
            log.warning("automatic benchmark after %d requests skipped: %s", request_count, exc)
            return
        except Exception:  # a bug: logged with its traceback, and the server goes on
            log.exception("automatic benchmark after %d requests failed", request_count)
            return
        line = {
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
            "request_count": request_count,
            "experiment_id": report.id,
            "models": {row.model: {k: row.value(k) for k in (
                "gen_tps", "prompt_tps", "ttft_p50_s", "latency_p50_s", "latency_p95_s", "completion_tokens",
                "quality_heuristic", "untimed_runs")} for row in report.rows},
            "recommendation": report.recommendation,
        }
        path = self.agent.settings.benchmarks_log
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:  # one line per run: appends are atomic enough
            handle.write(json.dumps(line) + "\n")
        log.info("automatic benchmark #%d after %d requests: %s", report.id, request_count, report.recommendation)
