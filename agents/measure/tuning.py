"""`tune NAME`: on this machine, for one GGUF model, measure how llama-server should serve it, keep the winner.

Two phases, each over llama-server children started the way LQMF serves (server.runtime.engine):
1. Speculation, one slot, single stream: no speculation, the draftless n-gram types (drafts from what the context
   already holds) and draft-simple with a smaller variant of the same source on disk, each over fresh prompts of
   every workload kind (agents.measure.workloads). A candidate counts only if its greedy text equals the text
   without speculation on every prompt; it wins only if it is faster on every kind than without (within
   SPEEDUP_FLOOR), else the model is served without.
2. Engine settings with the chosen speculation: slots, threads and micro-batch, each measured as aggregate
   tokens/s at 1, 4 and 16 concurrent clients; the best geometric mean wins if its TTFT is no worse than the
   defaults'.

The choice and every measurement are stored as an experiment of kind "tune"; the manager starts the model's child
with the choice from then on (server.runtime.engine_tuning). The engine does not switch speculation per request
(its per-request fields are compiled out in this llama.cpp), so one choice serves every kind.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from agents.measure.results import SettingsRow, SpeculationRow, TuneResult
from agents.measure.workloads import KINDS, Workloads
from lqmf.base.errors import InvalidRequest, LQMFError
from lqmf.base.progress import Progress, report
from lqmf.base.sse import sse_events
from server.runtime.engine_tuning import NO_SPECULATION, TUNE_KIND, EngineTuning, Speculation, machine_fingerprint

log = logging.getLogger(__name__)

TIME_BUDGET_S = 170.0  # `tune` takes at most 3 minutes for a small model: candidates that would not fit are skipped
SPEEDUP_FLOOR = 0.98  # speculation must not make any kind slower than this (its cost on text that does not repeat)
# A change is kept only when it gains at least this much (geometric mean over the kinds, or over 1/4/16 clients):
# single runs on a shared CPU move by a few percent, and a choice made on noise helps nobody.
MIN_SPECULATION_GAIN = 1.05
MIN_SETTINGS_GAIN = 1.03
TTFT_SLACK = 1.10  # a tuned setting's TTFT p50 may not exceed the defaults' by more (timer noise of short prompts)
# The draftless types worth trying: upstream's default shape, and shorter drafts, which pay on a CPU, where checking
# a long draft costs nearly as much as decoding it (issue 30's note has the measurements).
DRAFTLESS = (
    Speculation("ngram-mod"),
    Speculation("ngram-mod", ("--spec-ngram-mod-n-match", "8", "--spec-ngram-mod-n-min", "4",
                              "--spec-ngram-mod-n-max", "8")),
    Speculation("ngram-mod", ("--spec-ngram-mod-n-match", "6", "--spec-ngram-mod-n-min", "2",
                              "--spec-ngram-mod-n-max", "12")),
    Speculation("ngram-map-k", ("--spec-ngram-map-k-size-n", "4", "--spec-ngram-map-k-size-m", "16")),
)
CLIENTS = (1, 4, 16)


@dataclass(frozen=True)
class TuneOptions:
    """How much `tune` measures: tokens per prompt, prompts per kind, tokens per client in the aggregate phase."""

    tokens: int = 128
    prompts: int = 4  # per kind: every one must give none's text (the engine's batched check can round differently)
    load_tokens: int = 48
    budget_s: float = TIME_BUDGET_S
    seed: int = 0


class Tuner:
    """Measures one GGUF model's serving on this machine (see the module's docstring)."""

    def __init__(self, manager, store, options: TuneOptions = TuneOptions()) -> None:
        self.manager = manager
        self.store = store
        self.options = options

    def plan(self, name: str) -> tuple[Any, list[Speculation], list[str]]:
        """The model's record, the speculation candidates and the plan in words (InvalidRequest if it cannot be
        tuned here)."""
        record = self.manager.record(name)
        if record.format != "gguf":
            raise InvalidRequest(f"{name} is {record.format}: `tune` tunes llama-server, which serves GGUF",
                                 f"tune a GGUF variant (`quantize {name} to 4-bit gguf` makes one)")
        engine = self.manager.engine()
        if not engine.server:
            raise InvalidRequest(f"`tune` needs llama-server, and GGUF is served in-process here: {engine.reason}",
                                 "run `make tools`")
        drafts, offer = draft_candidates(self.manager, record)
        candidates = [NO_SPECULATION, *DRAFTLESS, *(Speculation("draft-simple", ("--spec-draft-n-max", "8"), str(d))
                                                    for d in drafts)]
        o = self.options
        lines = [f"tune {name} on {machine_fingerprint()}, at most {o.budget_s / 60:.0f} min "
                 f"(candidates that would not fit are skipped and said)",
                 f"1. speculation, single stream: {len(candidates)} candidates x {len(KINDS)} kinds "
                 f"({', '.join(KINDS)}) x {o.prompts} fresh prompts of {o.tokens} tokens, greedy; "
                 "a candidate must give the same text as none",
                 f"2. engine settings with the winner: slots, threads, micro-batch at {'/'.join(map(str, CLIENTS))} "
                 f"clients, {o.load_tokens} tokens each"]
        if offer:
            lines.append(offer)
        return record, candidates, lines

    def run(self, name: str, progress: Optional[Progress] = None) -> TuneResult:
        """Measure, choose, store; the choice applies from the model's next load (it is reloaded if loaded)."""
        started = time.monotonic()
        record, candidates, plan = self.plan(name)
        result = TuneResult(model=name, machine=machine_fingerprint(), plan=plan)
        report(progress, plan[0], 0, 1)
        experiment = self.store.start_experiment(TUNE_KIND, [name], {"plan": plan, "options": vars(self.options)})
        try:
            self._speculation(record, candidates, result, started, progress)
            best = choose_speculation(result.speculation, candidates)
            self._settings(record, best, result, started, progress)
            tuning = choose_settings(result.settings, best, record)
            if tuning is not None and best is not NO_SPECULATION:
                single = next(row.speedups for row in result.speculation if row.label == best.label)
                tuning = replace(tuning, gains={**tuning.gains, "single": single})
            result.tuning = tuning.to_dict() if tuning else None
            result.chosen = describe(tuning)
        except BaseException as exc:
            self.store.finish_experiment(experiment, {"error": str(exc)}, failed=not isinstance(exc, KeyboardInterrupt),
                                         incomplete=isinstance(exc, KeyboardInterrupt))
            raise
        result.seconds = round(time.monotonic() - started, 1)
        result.experiment_id = experiment
        self.store.finish_experiment(experiment, result.to_dict())
        if self.manager.is_loaded(name):  # serve as tuned now, not at the next load
            self.manager.unload(name)
        return result

    # -- phase 1 -----------------------------------------------------------------------------------------------
    def _speculation(self, record, candidates: Sequence[Speculation], result: TuneResult, started: float,
                     progress: Optional[Progress]) -> None:
        o = self.options
        texts: dict[int, str] = {}  # prompt index -> the text without speculation
        for i, spec in enumerate(candidates):
            report(progress, f"speculation: {spec.label}", i, len(candidates) + 4)
            if i and time.monotonic() - started > o.budget_s * 0.55:
                result.skipped.append(f"speculation {spec.label}: the time budget")
                continue
            row = SpeculationRow(spec.label)
            result.speculation.append(row)
            workloads = Workloads(o.seed)  # the same prompts for every candidate (each candidate is a new server)
            try:
                with probe(self.manager, record, EngineTuning(speculation=spec, slots=1)) as child:
                    child.warm_up()
                    index = 0
                    for kind in KINDS:
                        rates, accepted = [], []
                        for _ in range(o.prompts):
                            answer = child.complete(workloads.next(kind).messages, o.tokens)
                            if spec is NO_SPECULATION:
                                texts[index] = answer.text
                            elif texts.get(index) != answer.text:
                                row.identical = False
                            rates.append(answer.rate)
                            accepted.append(answer.accepted / max(answer.tokens, 1))
                            index += 1
                        row.rates[kind] = round(statistics.median(rates), 1)
                        row.accepted[kind] = round(statistics.fmean(accepted), 3)
            except LQMFError as exc:
                if spec is NO_SPECULATION:
                    raise
                row.error = exc.message
                log.warning("tune %s: %s failed: %s", record.name, spec.label, exc.message)
        base = result.speculation[0].rates
        for row in result.speculation:
            row.speedups = {k: round(v / base[k], 3) for k, v in row.rates.items() if base.get(k)}

    # -- phase 2 -----------------------------------------------------------------------------------------------
    def _settings(self, record, spec: Speculation, result: TuneResult, started: float,
                  progress: Optional[Progress]) -> None:
        """Slots first (defaults, 8, 16 where they fit the budget), then the micro-batch and the logical cores
        on the best slots so far."""
        from server.runtime.backends.gguf_engine import engine_threads

        settings = self.manager.settings
        threads = settings.threads or engine_threads()
        rows = [SettingsRow("defaults", settings.parallel, threads, None)]
        rows += [SettingsRow(f"{n} slots", n, threads, None) for n in (8, 16)
                 if n != settings.parallel and self._fits(record, n)]
        later = [("ubatch 256", {"ubatch": 256})]
        if _logical_cores() != threads:
            later.append((f"{_logical_cores()} threads", {"threads": _logical_cores()}))
        total = len(rows) + len(later)
        for i in range(total):
            if i == len(rows):  # the slots are measured: the rest are tried on the best of them
                best = max((r for r in result.settings if not r.error), key=SettingsRow.score)
                label, change = later.pop(0)
                rows.append(SettingsRow(f"{best.label}, {label}" if best.label != "defaults" else label,
                                        change.get("slots", best.slots), change.get("threads", best.threads),
                                        change.get("ubatch")))
            row = rows[i]
            report(progress, f"engine settings: {row.label}", len(result.speculation) + i,
                   len(result.speculation) + total)
            if i and time.monotonic() - started > self.options.budget_s * 0.85:
                result.skipped.append(f"settings {row.label}: the time budget")
                continue
            result.settings.append(row)
            tuning = EngineTuning(speculation=spec, slots=row.slots, threads=row.threads, ubatch=row.ubatch)
            try:
                with probe(self.manager, record, tuning) as child:
                    child.warm_up()
                    workloads = Workloads(self.options.seed + 1 + i)
                    for clients in CLIENTS:
                        agg, ttft = child.load(workloads, clients, self.options.load_tokens)
                        row.aggregate[clients], row.ttft_ms[clients] = round(agg, 1), round(ttft * 1000, 1)
            except LQMFError as exc:
                if i == 0:
                    raise
                row.error = exc.message

    def _fits(self, record, slots: int) -> bool:
        """Whether the model with `slots` slots of the configured context fits the memory budget."""
        from server.runtime.budget import estimate_bytes

        settings = self.manager.settings
        n_ctx = min(settings.context_length, record.context_length or settings.context_length)
        return estimate_bytes(record, n_ctx * slots) <= self.manager.budget.limit_bytes()


def choose_speculation(rows: Sequence[SpeculationRow], candidates: Sequence[Speculation]) -> Speculation:
    """The candidate with the best geometric-mean speedup among those with identical text and every kind at least
    SPEEDUP_FLOOR; none when no candidate beats none by MIN_SPECULATION_GAIN."""
    by_label = {c.label: c for c in candidates}
    best, best_score = NO_SPECULATION, MIN_SPECULATION_GAIN
    for row in rows[1:]:
        if row.error or not row.identical or len(row.speedups) < len(KINDS):
            continue
        if min(row.speedups.values()) < SPEEDUP_FLOOR:
            continue
        score = statistics.geometric_mean(row.speedups.values())
        if score > best_score:
            best, best_score = by_label[row.label], score
    return best


def choose_settings(rows: Sequence[SettingsRow], spec: Speculation, record) -> Optional[EngineTuning]:
    """The settings row with the best aggregate score, at least MIN_SETTINGS_GAIN over the defaults (first row),
    whose TTFT p50 is no worse than theirs; None when the defaults stay and there is no speculation either."""
    if not rows or rows[0].error:
        return None
    base = rows[0]
    best, best_score = base, base.score() * MIN_SETTINGS_GAIN
    for row in rows[1:]:
        if row.error or len(row.aggregate) < len(base.aggregate):
            continue
        slower = any(row.ttft_ms[c] > base.ttft_ms[c] * TTFT_SLACK for c in base.ttft_ms if c in row.ttft_ms)
        if not slower and row.score() > best_score:
            best, best_score = row, row.score()
    if spec is NO_SPECULATION and best is base:
        return None
    gains = {"aggregate": {str(c): round(best.aggregate[c] / base.aggregate[c], 3) for c in base.aggregate
                           if base.aggregate[c] and c in best.aggregate}}
    return EngineTuning(speculation=spec, threads=best.threads if best.threads != base.threads else None,
                        slots=best.slots if best.slots != base.slots else None, ubatch=best.ubatch,
                        machine=machine_fingerprint(), model_bytes=Path(record.path).stat().st_size, gains=gains)


def describe(tuning: Optional[EngineTuning]) -> str:
    """The choice in words."""
    if tuning is None:
        return "the defaults: nothing measured beat them"
    parts = [f"speculation {tuning.speculation.label}" if tuning.speculation.name != "none" else "no speculation"]
    parts += [f"{tuning.slots} slots"] if tuning.slots else []
    parts += [f"{tuning.threads} threads"] if tuning.threads else []
    parts += [f"ubatch {tuning.ubatch}"] if tuning.ubatch else []
    return ", ".join(parts)


def draft_candidates(manager, record) -> tuple[list[Path], str]:
    """GGUF variants of the model's own source on disk, smaller than it (a draft must share its tokenizer), the
    smallest first; and, when none is on disk, what the factory could make."""
    from agents.models.show import lineage_tree

    ancestors = lineage_tree(manager, record.name)["ancestors"]
    if not ancestors:
        return [], (f"no draft model: {record.name} has no recorded source, so no variant is known to share its "
                    "tokenizer")
    root = ancestors[-1]
    drafts = []
    for other in manager.available():
        if other.format != "gguf" or other.name == record.name or not other.usable:
            continue
        smaller = other.size_bytes < record.size_bytes * 0.75
        if smaller and lineage_tree(manager, other.name)["ancestors"][-1:] == [root]:
            drafts.append(other)
    drafts.sort(key=lambda r: r.size_bytes)
    if drafts:
        return [Path(drafts[0].path)], ""
    return [], f"no smaller variant of {root} on disk to draft with: `quantize {root} to q2_k gguf` would make one"


@dataclass
class Answer:
    text: str
    tokens: int
    rate: float  # the engine's decode tokens/s
    accepted: int  # drafted tokens the model accepted


class Probe:
    """A llama-server child started for measuring, and its requests."""

    def __init__(self, child, name: str) -> None:
        import httpx

        self.child = child
        self.name = name
        # A kept-alive connection llama-server closed (its keep-alive is 5 s) would fail the next request: none is
        # reused after a second idle.
        self.http = httpx.Client(base_url=child.url, headers={"Authorization": f"Bearer {child.key}"},
                                 timeout=httpx.Timeout(600.0, connect=10.0),
                                 limits=httpx.Limits(max_connections=64, keepalive_expiry=1.0))

    def body(self, messages: list[dict[str, str]], tokens: int, stream: bool) -> dict[str, Any]:
        return {"model": self.name, "messages": messages, "max_tokens": tokens, "temperature": 0, "stream": stream,
                "ignore_eos": stream, **({"stream_options": {"include_usage": True}} if stream else {})}

    def warm_up(self) -> None:
        self.complete([{"role": "user", "content": "Hello"}], 8)

    def complete(self, messages: list[dict[str, str]], tokens: int) -> Answer:
        response = self.http.post("/v1/chat/completions", json=self.body(messages, tokens, stream=False))
        if response.status_code != 200:
            raise LQMFError(f"llama-server answered {response.status_code}: {response.text[:200]}")
        data = response.json()
        timings = data.get("timings") or {}
        return Answer(data["choices"][0]["message"]["content"] or "", int(data["usage"]["completion_tokens"]),
                      float(timings.get("predicted_per_second") or 0.0), int(timings.get("draft_n_accepted") or 0))

    def stream(self, messages: list[dict[str, str]], tokens: int) -> tuple[int, float]:
        """One streamed request: (completion tokens, seconds to the first text)."""
        sent, first, count = time.perf_counter(), None, 0
        # llama-server closes a connection after a streamed answer: this one is not offered for reuse.
        with self.http.stream("POST", "/v1/chat/completions", json=self.body(messages, tokens, stream=True),
                              headers={"Connection": "close"}) as r:
            if r.status_code != 200:
                raise LQMFError(f"llama-server answered {r.status_code}: {r.read()[:200]!r}")
            for event in sse_events(r.iter_lines()):
                if first is None and any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
                    first = time.perf_counter() - sent
                if event.get("usage"):
                    count = int(event["usage"]["completion_tokens"])
        return count, first if first is not None else time.perf_counter() - sent

    def load(self, workloads: Workloads, clients: int, tokens: int) -> tuple[float, float]:
        """`clients` concurrent streamed requests, kinds in turn: (aggregate tokens/s, TTFT p50 in seconds)."""
        prompts = [workloads.next(KINDS[i % len(KINDS)]).messages for i in range(clients)]
        counts: list[int] = []
        ttfts: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def one(messages) -> None:
            try:
                count, ttft = self.stream(messages, tokens)
            except BaseException as exc:  # handed to the caller below
                with lock:
                    errors.append(exc)
                return
            with lock:
                counts.append(count)
                ttfts.append(ttft)

        started = time.perf_counter()
        threads = [threading.Thread(target=one, args=(m,)) for m in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        if errors:
            failed = errors[0]
            raise failed if isinstance(failed, LQMFError) else LQMFError(f"a measuring request failed: {failed}")
        return sum(counts) / wall, statistics.median(ttfts)

    def close(self) -> None:
        self.http.close()


@contextmanager
def probe(manager, record, tuning: EngineTuning) -> Iterator[Probe]:
    """A child for `record` started with `tuning` (beside any loaded one: it has its own port and log)."""
    from server.runtime.backends.gguf_engine import engine_threads
    from server.runtime.engine import ChildSpec, EngineChild, engine_log_path

    settings = manager.settings
    engine = manager.engine()
    n_ctx = min(settings.context_length, record.context_length or settings.context_length)
    spec = ChildSpec(engine.binary, Path(record.path), record.name, tuning.slots or settings.parallel, n_ctx,
                     tuning.threads or settings.threads or engine_threads(),
                     engine_log_path(settings.logs_dir, f"{record.name}.tune"),
                     engine.server_args + tuning.server_args())
    child = EngineChild(spec)
    child.start()
    measuring = Probe(child, record.name)
    try:
        yield measuring
    finally:
        measuring.close()
        child.stop()


def _logical_cores() -> int:
    import os

    return os.cpu_count() or 1


__all__ = ["TuneOptions", "TuneResult", "Tuner", "choose_settings", "choose_speculation"]
