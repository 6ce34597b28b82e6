"""ModelManager: the only owner of loaded models (load once, budget, eviction, TTL, queues, cancel)."""

from __future__ import annotations

import collections
import contextlib
import difflib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Sequence

from lqmf.base.errors import InsufficientMemory, LQMFError, ModelBusy, ModelNotFound, QueueFull
from lqmf.base.generation import Chunk, GenerationParams, GenerationResult, Prompt  # noqa: F401 (Prompt: re-exported)
from lqmf.base.settings import Settings
from lqmf.base.units import plural
from server.runtime.backends.base import Backend
from server.runtime.discovery import DiscoveryCache, ModelRecord

if TYPE_CHECKING:
    from memory.store import Store
    from server.runtime.engine import EngineChoice

log = logging.getLogger(__name__)

MiB = 2**20
Work = Callable[[Backend, threading.Event], Iterable[Any]]

_DONE = object()
_STOP = object()
DEFAULT = "default"  # the model name that means the active model (`use NAME`)


def _wake(waiter) -> None:
    if not waiter.done():
        waiter.set_result(None)


class NotLoadedNow(Exception):
    """submit(block=False) found the model not loaded (internal: the caller retries on a thread)."""


@dataclass
class _Failure:
    error: BaseException


class _Batch(list):
    """Outputs handed over together."""


class ActiveModel:
    """The default model and its fallbacks, kept in a small JSON file (shared by the shell and a server)."""

    def __init__(self, path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: Optional[tuple[int, int]] = None
        self._chain: list[str] = []

    def chain(self) -> list[str]:
        import json

        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._chain = None, []
                return []
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    chain = data["chain"]
                    if not isinstance(chain, list) or not all(isinstance(n, str) and n for n in chain):
                        raise ValueError("chain must be a list of names")
                except (ValueError, KeyError, TypeError) as exc:
                    raise LQMFError(f"{self.path} is not a valid default-model file ({exc})",
                                    "set the default again: use NAME") from None
                self._stamp, self._chain = stamp, chain
            return list(self._chain)

    def set(self, chain: list[str]) -> None:
        import json

        from lqmf.base.files import write_text_atomic

        with self._lock:
            write_text_atomic(self.path, json.dumps({"chain": chain, "set_at": time.time()}) + "\n")
            self._stamp = None


def names_hint(name: str, names: Sequence[str], shown: int = 8) -> str:
    """What to say when `name` is not a model: the nearest names, or else the ones there are."""
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    if not close:  # a part of a name ("q8" for demo-q8_0) is near too
        low = name.lower()
        close = [n for n in names if len(low) >= 2 and low in n.lower()][:3]
    if close:
        return f"did you mean {', '.join(close)}?"
    if not names:
        return "no models yet: download ORG/NAME, import PATH or quantize one"
    listed = sorted(names)
    more = f" and {len(listed) - shown} more (list models)" if len(listed) > shown else ""
    return f"available: {', '.join(listed[:shown])}{more}"


def estimate_bytes(record: ModelRecord, n_ctx: int) -> int:
    """Memory a model will need: its weights, a KV cache for the context, and compute buffers."""
    weights = record.size_bytes
    if record.format == "hf" and record.bits == 16.0:
        weights *= 2  # a 16-bit HF checkpoint loads as float32 on CPU
    cache_bytes = 2 if record.format == "gguf" else 4  # llama.cpp keeps an f16 cache; torch f32
    kv = 2 * (record.block_count or 32) * n_ctx * (record.kv_width or 4096) * cache_bytes
    return int(weights + kv + 32 * MiB)


class Job:
    """One request on a model's worker: iterate it (or `async for` it) for its outputs; cancel() stops it.

    With `loop` the outputs are handed to that asyncio loop (for the HTTP routes), otherwise to a
    thread-safe queue. A consumer that stops iterating early cancels the job (a client disconnect).
    """

    def __init__(self, model: str, work: Work, keep_alive_s: Optional[float], loop=None) -> None:
        self.model = model
        self.work = work
        self.keep_alive_s = keep_alive_s
        self.cancel_event = threading.Event()
        self.error: Optional[BaseException] = None  # why the job was aborted (not a consumer's own cancel)
        self.done = threading.Event()
        self._done_lock = threading.Lock()
        self._on_done: list[Callable[[], None]] = []
        self.enqueued_at = time.perf_counter()
        self.started_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        self._ended = False  # the consumer has seen the done marker or the failure
        self.outputs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()  # C-level, cheapest hand-off
        self._loop = loop
        if loop is not None:
            # Hand-off to an asyncio loop: a deque, and a wake-up only when the consumer waits,
            # so a consumer that falls behind drains several chunks per wake-up.
            self._pending: "collections.deque[Any]" = collections.deque()
            self._lock = threading.Lock()
            self._waiter = None
            self.emit = self._emit_to_loop
        else:
            self.emit = self.outputs.put

    def emit_batch(self, items: list[Any]) -> None:
        """Hand several outputs over at once (one wake-up of the consumer)."""
        self.emit(items[0] if len(items) == 1 else _Batch(items))

    def _emit_to_loop(self, item: Any) -> None:
        with self._lock:
            if isinstance(item, _Batch):
                self._pending.extend(item)
            else:
                self._pending.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    def pending(self) -> int:
        """Outputs ready for an async consumer right now."""
        return len(self._pending)

    def cancel(self) -> None:
        self.cancel_event.set()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the worker thread) when the job has finished; at once if it already has."""
        with self._done_lock:
            if not self.done.is_set():
                self._on_done.append(callback)
                return
        callback()

    def finish(self) -> None:
        """Mark the job finished and run its on_done callbacks (the worker calls this last)."""
        with self._done_lock:
            self.done.set()
            callbacks, self._on_done = self._on_done, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a bookkeeping callback must never take the model's worker down
                log.exception("an on_done callback of a job on %s failed", self.model)

    def abort(self, error: BaseException) -> None:
        """Stop the job for a reason its consumer must hear (the server is stopping): it ends with `error`."""
        self.error = error
        self.cancel_event.set()

    def _take(self, item: Any) -> Any:
        """Return `item` as delivered; the done marker or a failure (raised here) ends the stream."""
        if item is _DONE or isinstance(item, _Failure):
            self._ended = True
        if isinstance(item, _Failure):
            raise item.error
        return item

    def __iter__(self) -> Iterator[Any]:
        if self._loop is not None:
            raise TypeError("this job delivers to an asyncio loop: use `async for`")
        try:
            while not self._ended:
                got = self.outputs.get()
                for item in got if isinstance(got, _Batch) else (got,):
                    if self._take(item) is _DONE:
                        break
                    yield item
        finally:
            if not self._ended:  # the consumer went away: stop generating
                self.cancel()

    async def __aiter__(self):
        try:
            while not self._ended:
                with self._lock:
                    item = self._pending.popleft() if self._pending else None
                    if item is None:
                        self._waiter = waiter = self._loop.create_future()
                if item is None:
                    await waiter
                elif self._take(item) is not _DONE:
                    yield item
        finally:
            if not self._ended:  # the HTTP client disconnected: stop generating
                self.cancel()

    def result(self) -> list[Any]:
        return list(self)


@dataclass
class LoadedModel:
    """A model in memory with its worker and queue."""

    record: ModelRecord
    backend: Backend
    load_time_s: float
    footprint_bytes: int
    estimate_bytes: int
    keep_alive_s: float
    jobs: "queue.Queue[Any]"
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    last_used_wall: float = field(default_factory=time.time)
    # Jobs running now, at most backend.parallel (one per worker); further ones wait in `jobs`, FIFO.
    active: set = field(default_factory=set)
    requests_served: int = 0
    admitted: int = 0  # jobs running or waiting: at most backend.parallel + queue_size (admission control)
    workers: list = field(default_factory=list)
    closing: bool = False

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def busy(self) -> bool:
        return bool(self.active) or not self.jobs.empty()

    def expired(self, now: float) -> bool:
        if self.keep_alive_s < 0 or self.busy:
            return False
        return now - self.last_used >= self.keep_alive_s

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name, "format": self.record.format, "bits": self.record.bits,
            "level": self.record.level, "memory_bytes": self.footprint_bytes,
            "estimate_bytes": self.estimate_bytes, "load_time_s": round(self.load_time_s, 3),
            "loaded_at": self.loaded_at, "last_used": self.last_used_wall,
            "queue_depth": self.jobs.qsize() + len(self.active), "running": len(self.active),
            "waiting": self.jobs.qsize(), "keep_alive_s": self.keep_alive_s, "requests_served": self.requests_served,
            "context_length": self.backend.context_length, **self.backend.engine_info(),
        }


class ModelManager:
    """Loads models by name on demand and runs every request on that model's single worker."""

    def __init__(self, settings: Settings, discover_fn: Optional[Callable[[Any], list[ModelRecord]]] = None) -> None:
        self.settings = settings
        # An explicit discover_fn is called as it is; the default re-inspects only what changed on disk.
        self._discover = discover_fn
        self.discovery = DiscoveryCache()
        from server.runtime.endpoints import EndpointRegistry

        self.endpoints = EndpointRegistry(settings)
        self.active = ActiveModel(settings.active_model_path)
        self._lock = threading.RLock()
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, Future] = {}
        # Estimated bytes of loads in flight: counted as held, so concurrent loads cannot overshoot the budget.
        self._reserved: dict[str, int] = {}
        # Models whose files are being removed, renamed or copied (agents.models.admin): no load may start on them.
        self._changing: dict[str, str] = {}
        self._closed = threading.Event()
        self._loads: dict[str, int] = {}  # completed loads per model: /metrics' lqmf_model_loads_total
        self._engine: Optional[EngineChoice] = None
        self._engine_noticed = False
        # The process's one history Store (see `store`); its own lock, so opening SQLite never holds up loads.
        self._store: Optional["Store"] = None
        self._store_lock = threading.Lock()
        self._reaper = threading.Thread(target=self._reap, name="lqmf-ttl-reaper", daemon=True)
        self._reaper.start()

    @property
    def store(self) -> "Store":
        """The process's one history Store, opened on first use (the shell starts without SQLite); close() closes it."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:  # two first users at once open it once
                    from memory.store import Store

                    self._store = Store(self.settings.db_path)
        return self._store

    # -- discovery ----------------------------------------------------------------------------
    def available(self, probe: bool = False) -> list[ModelRecord]:
        """Every model on disk (usable or not), then every remote endpoint; blocking (stats the folder),
        so routes call it off the loop. `probe` (the listings a person reads): first probe endpoints not
        heard from lately; otherwise nothing waits on a dead endpoint."""
        if self._discover is not None:
            local = self._discover(self.settings.models_dir)
        else:
            local = self.discovery.records(self.settings.models_dir)
        return local + self.endpoints.records(taken=[r.name for r in local], probe=probe)

    def resolve(self, name: Optional[str]) -> list[str]:
        """The models a request for `name` may go to, in order: itself, or for `default` (or none) the
        active model and its fallbacks (`use A then B`)."""
        if name not in (None, "", DEFAULT):
            return [name]
        chain = self.active.chain()
        if not chain:
            raise ModelNotFound("no default model is set",
                                "use NAME sets it (POST /model/switch/NAME), or name a model")
        return chain

    def record(self, name: str) -> ModelRecord:
        """The discovered model called `name`, or ModelNotFound with the closest names."""
        # No probes: finding one model must not wait on a dead endpoint (a remote one probes when it attaches).
        records = {r.name: r for r in self.available()}
        if name in records:
            return records[name]
        raise ModelNotFound(f"no model named {name!r} in {self.settings.models_dir}", names_hint(name, list(records)))

    @contextlib.contextmanager
    def changing(self, name: str, action: str, *, unload: bool = False) -> Iterator[None]:
        """Hold `name` while its files change (`action`: "removed", "renamed"): no load starts on it meanwhile.

        Refuses (ModelBusy) while it is loaded or loading, unless `unload` is set: then it is unloaded first
        (after its requests in flight finish); a model with requests running or waiting is still refused.
        """
        with self._lock:
            if name in self._changing:
                raise ModelBusy(f"{name} is already being {self._changing[name]}", "retry in a moment")
            if name in self._loading:
                raise ModelBusy(f"{name} is loading", f"wait for the load, then unload model {name} first")
            model = self._loaded.get(name)
            if model is not None and (not unload or model.busy):
                why = "is serving requests" if model.busy else "is loaded"
                raise ModelBusy(f"{name} {why}, so it cannot be {action}",
                                f"unload model {name} first"
                                + (", when its requests have finished" if model.busy else ""))
            self._changing[name] = action
        try:
            if model is not None:
                self.unload(name)
            yield
        finally:
            with self._lock:
                self._changing.pop(name, None)
            self.discovery.invalidate()

    # -- remote endpoints (the shell and the server both come here) --------------------------------------
    def add_endpoint(self, name: str, urls: Sequence[str], model: Optional[str] = None,
                     key_env: Optional[str] = None) -> tuple[Any, bool]:
        """Register (or replace) a remote endpoint as the model `name`; (its Fleet, whether one was replaced).

        A replaced endpoint is detached first: its requests in flight finish there, the next go to the new one.
        """
        from lqmf.base.errors import OutputExists

        local = self._discover(self.settings.models_dir) if self._discover is not None else \
            self.discovery.records(self.settings.models_dir)
        if name in {r.name for r in local}:
            raise OutputExists(f"{name} is already a local model", "give the endpoint another name")
        replaced = name in self.endpoints.config.all()
        if replaced:
            self.unload(name)
        return self.endpoints.put(name, urls, model, key_env), replaced

    def remove_endpoint(self, name: str) -> Any:
        """Forget an endpoint (after its requests in flight finish), and take it out of the default chain."""
        if self.endpoints.fleet(name) is None:
            names = ", ".join(self.endpoints.config.all()) or "none"
            raise ModelNotFound(f"no endpoint named {name} (registered: {names})", "list endpoints")
        self.unload(name)
        removed = self.endpoints.remove(name)
        chain = self.active.chain()
        if name in chain:
            self.active.set([n for n in chain if n != name])
            log.info("%s left the default chain with its endpoint", name)
        return removed

    def use(self, chain: list[str]) -> list[str]:
        """Make chain[0] the default model, the rest its fallbacks in order; persisted. Names must exist."""
        if not chain:
            raise LQMFError("name the model to use", "use NAME [then OTHER]")
        if len(set(chain)) != len(chain):
            raise LQMFError(f"a model appears twice in {' then '.join(chain)}", "name each model once")
        if DEFAULT in chain:
            raise LQMFError("'default' names the active model itself", "name a real model: use NAME")
        for name in chain:
            record = self.record(name)
            if not record.usable:
                from lqmf.base.errors import ModelLoadError

                raise ModelLoadError(f"{name} cannot be used: {record.reason}", "pick another model (list models)")
        self.active.set(chain)
        log.info("default model: %s", " then ".join(chain))
        return chain

    def loaded(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.info() for m in self._loaded.values()]

    def loads(self) -> dict[str, int]:
        """How often each model has been loaded by this process (a model evicted and loaded again counts twice)."""
        with self._lock:
            return dict(self._loads)

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._loaded

    def get(self, name: str) -> LoadedModel:
        with self._lock:
            if name not in self._loaded:
                raise ModelNotFound(f"{name} is not loaded", f"load it first (load model {name})")
            return self._loaded[name]

    def engine(self) -> "EngineChoice":
        """How GGUF models are served here, decided at the first GGUF load and said once."""
        from server.runtime.engine import choose_engine

        with self._lock:
            if self._engine is None:
                self._engine = choose_engine(self.settings)
                (log.info if self._engine.server else log.warning)("%s", self._engine.reason)
            return self._engine

    def engine_status(self) -> dict[str, Any]:
        """Which engine serves GGUF here and why (decided now if no GGUF load has decided it yet)."""
        try:
            return self.engine().describe()
        except LQMFError as exc:  # LQMF_GGUF_ENGINE=server without a usable llama-server
            return {"engine": "none", "reason": exc.message, "binary": None, "repack": None,
                    "in_process_weights": None}

    def engine_notice(self) -> Optional[str]:
        """Once per manager, after a GGUF load on the in-process fallback: why, and how to get the engine."""
        with self._lock:
            if self._engine is None or self._engine.server or self._engine_noticed:
                return None
            self._engine_noticed = True
            return self._engine.reason

    # -- load / unload --------------------------------------------------------------------------
    def load(self, name: str, keep_alive_s: Optional[float] = None) -> LoadedModel:
        """Load `name` (or return it when loaded); concurrent callers share one load.

        The load runs on a thread of its own and callers wait for it. Ctrl-C (KeyboardInterrupt,
        which Python raises only in the main thread) then ends the wait, never the load: a library
        import cut in half cannot be redone (torch refuses to register its types twice) and would
        break every later load of the process. An abandoned load still completes into the loaded
        set, where its keep_alive applies, and a later load of the same name joins it.
        """
        with self._lock:
            if self._closed.is_set():
                raise ModelBusy("the model manager is shutting down", "start it again")
            if name in self._changing:
                raise ModelBusy(f"{name} is being {self._changing[name]} right now",
                                "retry in a moment (list models shows what it is called now)")
            if name in self._loaded:
                model = self._loaded[name]
                if keep_alive_s is not None:
                    model.keep_alive_s = keep_alive_s
                # Asking for a loaded model is a use: its keep_alive (and the LRU order) start over.
                model.last_used, model.last_used_wall = time.monotonic(), time.time()
                return model
            future = self._loading.get(name)
            if future is None:
                future = Future()
                loader = threading.Thread(target=self._load_settling, args=(name, keep_alive_s, future),
                                          name=f"lqmf-load-{name}", daemon=True)
                self._loading[name] = future
                try:
                    loader.start()
                except BaseException:
                    # Ctrl-C inside start(): withdraw the load (still holding the lock, so nobody has
                    # joined it); a loader thread that did start sees that and does nothing.
                    self._loading.pop(name, None)
                    raise
        return future.result()

    def _load_settling(self, name: str, keep_alive_s: Optional[float], future: Future) -> None:
        """One load, on its own thread: it ends in the loaded set or as the future's error, never half done."""
        with self._lock:
            if self._loading.get(name) is not future:  # withdrawn before it began
                return
        try:
            model = self._load_now(name, keep_alive_s)
        except BaseException as exc:  # delivered to every waiter, never lost in this thread
            with self._lock:
                self._loading.pop(name, None)
                self._reserved.pop(name, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._loaded[name] = model
            self._loading.pop(name, None)
            self._reserved.pop(name, None)
            self._loads[name] = self._loads.get(name, 0) + 1
            closed = self._closed.is_set()
        if closed:  # close() ran while this loaded: nobody may be left holding it
            self.unload(name)
            future.set_exception(ModelBusy("the model manager is shutting down", "start it again"))
            return
        future.set_result(model)

    def _load_now(self, name: str, keep_alive_s: Optional[float]) -> LoadedModel:
        from server.runtime.backends import backend_for

        record = self.record(name)
        if not record.usable:
            from lqmf.base.errors import ModelLoadError

            raise ModelLoadError(f"{name} cannot be loaded: {record.reason}", "fix or remove the file, then retry")
        if record.format == "remote":
            return self._attach_remote(record, keep_alive_s)
        n_ctx = min(self.settings.context_length, record.context_length or self.settings.context_length)
        engine = self.engine() if record.format == "gguf" else None
        slots = self.settings.parallel if engine is not None and engine.server else 1
        need = estimate_bytes(record, n_ctx * slots)  # every slot holds a KV cache of its own
        self._make_room(name, need)
        backend = backend_for(record, n_ctx=n_ctx, threads=self.settings.threads, engine=engine, slots=slots,
                              logs_dir=self.settings.logs_dir)
        start = time.perf_counter()
        backend.load()
        load_time = time.perf_counter() - start
        keep = self.settings.keep_alive_s if keep_alive_s is None else keep_alive_s
        model = LoadedModel(
            record=record, backend=backend, load_time_s=load_time, footprint_bytes=backend.footprint(),
            estimate_bytes=need, keep_alive_s=keep, jobs=queue.Queue(),
        )
        self._start_workers(model)
        log.info("loaded %s (%s) in %.2fs, %.1f MiB", name, record.format, load_time, model.footprint_bytes / MiB)
        return model

    def _attach_remote(self, record: ModelRecord, keep_alive_s: Optional[float]) -> LoadedModel:
        """A remote model "loads" by probing its endpoint: no memory, no budget, workers to wait on it."""
        from server.runtime.backends.remote import RemoteBackend

        fleet = self.endpoints.fleet(record.name)
        if fleet is None:
            raise ModelNotFound(f"endpoint {record.name} was removed", "list endpoints")
        backend = RemoteBackend(record, fleet=fleet, parallel=self.settings.remote_parallel,
                                timeout_s=self.settings.remote_timeout_s)
        start = time.perf_counter()
        backend.load()
        model = LoadedModel(record=record, backend=backend, load_time_s=time.perf_counter() - start,
                            footprint_bytes=0, estimate_bytes=0,
                            keep_alive_s=self.settings.keep_alive_s if keep_alive_s is None else keep_alive_s,
                            jobs=queue.Queue())
        self._start_workers(model)
        log.info("attached remote %s (%s at %s)", record.name, backend.remote_model, ", ".join(fleet.endpoint.urls))
        return model

    def _start_workers(self, model: LoadedModel) -> None:
        for slot in range(model.backend.parallel):
            worker = threading.Thread(target=self._work, args=(model,), name=f"lqmf-worker-{model.name}-{slot}",
                                      daemon=True)
            model.workers.append(worker)
            worker.start()

    def budget_bytes(self) -> int:
        """The memory budget: the configured maximum, capped by what is available plus what we hold."""
        import psutil

        with self._lock:
            held = sum(m.footprint_bytes for m in self._loaded.values())
        return min(self.settings.max_memory_mb * MiB, psutil.virtual_memory().available + held)

    def _make_room(self, name: str, need: int) -> None:
        """Evict least-recently-used idle models until `need` fits; refuse with the numbers if it cannot."""
        budget = self.budget_bytes()
        if need > budget:
            raise InsufficientMemory(
                f"{name} needs about {need / MiB:.0f} MiB (weights + KV cache for the context) but the "
                f"memory budget is {budget / MiB:.0f} MiB",
                "raise LQMF_MAX_MEMORY_MB, lower LQMF_CONTEXT_LENGTH, or use a smaller quantization",
            )
        while True:
            with self._lock:
                loading = {n: b for n, b in self._reserved.items() if n != name}
                local = {n: m for n, m in self._loaded.items() if m.record.format != "remote"}
                held = sum(m.footprint_bytes for m in local.values()) + sum(loading.values())
                too_many = len(local) + len(loading) >= self.settings.max_models
                if held + need <= budget and not too_many:
                    self._reserved[name] = need
                    return
                idle = sorted((m for m in local.values() if not m.busy), key=lambda m: m.last_used)
                if not idle:
                    busy = ", ".join([*local, *(f"{n} (loading)" for n in loading)]) or "none"
                    reason = (
                        f"{plural(len(local), 'model')} loaded (the maximum is {self.settings.max_models})"
                        if too_many else
                        f"{name} needs about {need / MiB:.0f} MiB, {held / MiB:.0f} of the {budget / MiB:.0f} MiB "
                        f"budget are held"
                    )
                    raise InsufficientMemory(
                        f"cannot load {name}: {reason}, and every loaded model is busy ({busy})",
                        "retry when a request finishes, or unload a model",
                    )
                victim = idle[0]
            log.info("evicting %s (least recently used, idle) to load %s", victim.name, name)
            self.unload(victim.name)

    def unload(self, name: str) -> bool:
        """Unload after the model's queued requests finish; False when it was not loaded."""
        with self._lock:
            model = self._loaded.pop(name, None)
            if model is None:
                return False
            model.closing = True
        for _ in model.workers:
            model.jobs.put(_STOP)
        for worker in model.workers:
            if worker is not threading.current_thread():
                worker.join()
        model.backend.unload()
        log.info("unloaded %s", name)
        return True

    def close(self) -> None:
        """Unload everything, stop the TTL reaper, and close the history Store."""
        self._closed.set()
        for name in list(self._loaded):
            self.unload(name)
        self.endpoints.close()
        if self._reaper.is_alive() and self._reaper is not threading.current_thread():
            self._reaper.join(timeout=5)
        with self._store_lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def _reap(self) -> None:
        while not self._closed.wait(0.25):
            now = time.monotonic()
            with self._lock:
                expired = [m.name for m in self._loaded.values() if m.expired(now)]
            for name in expired:
                log.info("keep_alive expired for %s", name)
                self.unload(name)

    # -- work -------------------------------------------------------------------------------------
    def submit(self, name: str, work: Work, keep_alive_s: Optional[float] = None, loop=None,
               block: bool = True) -> Job:
        """Queue `work` on the model's worker (loading the model first); QueueFull when the queue is full.

        block=False never waits for a load: NotLoadedNow when the model is not loaded (the event loop
        calls it so, and falls back to a worker thread).
        """
        while True:
            if not block:
                with self._lock:
                    if name not in self._loaded:
                        raise NotLoadedNow(name)
            model = self.load(name)
            job = Job(name, work, keep_alive_s, loop)
            with self._lock:
                if model.closing:  # unloaded between load() and here: load again
                    continue
                # Counted from admission to the end of the job, so a burst that arrives before the
                # workers wake is still held to the slots plus the queue.
                if model.admitted >= model.backend.parallel + self.settings.queue_size:
                    raise QueueFull(
                        f"{name} already has {self.settings.queue_size} requests waiting "
                        f"(and {model.backend.parallel} running)",
                        "retry in a few seconds or raise LQMF_QUEUE_SIZE",
                    )
                model.admitted += 1
                model.jobs.put_nowait(job)
            return job

    def _work(self, model: LoadedModel) -> None:
        while True:
            job = model.jobs.get()
            if job is _STOP:
                return
            model.active.add(job)
            job.started_at = time.perf_counter()
            try:
                if job.cancel_event.is_set():  # cancelled while it waited: say so, never end without an output
                    job.emit(_Failure(job.error or ModelBusy("the request was cancelled before it started",
                                                             "send it again")))
                else:
                    self._deliver(job, job.work(model.backend, job.cancel_event))
            except BaseException as exc:  # delivered to the caller, never lost in the worker
                if not isinstance(exc, LQMFError):
                    log.error("request on %s failed", model.name, exc_info=exc)
                job.emit(_Failure(exc))
            finally:
                with self._lock:
                    model.admitted -= 1
                model.requests_served += 1
                model.last_used, model.last_used_wall = time.monotonic(), time.time()
                if job.keep_alive_s is not None:
                    model.keep_alive_s = job.keep_alive_s
                model.active.discard(job)
                job.finished_at = time.perf_counter()
                job.emit(_DONE)
                job.finish()

    def _deliver(self, job: Job, items: Iterable[Any]) -> None:
        """Hand a job's outputs to its consumer, batching fast streams.

        Waking the consumer costs about as much as a small model's token; when tokens come faster
        than every stream_batch_ms / 4, they go over in batches at most stream_batch_ms apart
        (vLLM's stream interval). The first output, and every output of a slower stream, goes at once.
        """
        hold = self.settings.stream_batch_ms / 1000
        held: list[Any] = []
        delivered = False
        last_flush = last_item = time.perf_counter()
        for item in items:
            now = time.perf_counter()
            held.append(item)
            if not delivered or now - last_flush >= hold or now - last_item >= hold / 4:
                job.emit_batch(held)
                held, delivered, last_flush = [], True, now
            last_item = now
        if held:
            job.emit_batch(held)

    # -- generation conveniences (what the shell and the routes call) ------------------------------
    def stream(
        self, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float] = None, loop=None,
        block: bool = True,
    ) -> Job:
        """A job whose outputs are Chunks (the last with finish_reason and timings)."""
        return self._generation(name, prompt, params, keep_alive_s, loop, block, whole=False)

    def generate(
        self, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float] = None
    ) -> GenerationResult:
        """Non-streaming generation, whole on the worker (the server engine asks its child for one answer)."""
        return self.generate_job(name, prompt, params, keep_alive_s).result()[0]

    def generate_job(
        self, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float] = None, loop=None,
        block: bool = True,
    ) -> Job:
        """A job whose one output is the whole GenerationResult (cancel() ends it early, as 'cancelled')."""
        return self._generation(name, prompt, params, keep_alive_s, loop, block, whole=True)

    def _generation(self, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float],
                    loop, block: bool, *, whole: bool) -> Job:
        def work(backend: Backend, cancel: threading.Event) -> Iterator[Any]:
            backend.require(params)
            # Whole: the backend's own one-shot path (an engine child answers in one response).
            if whole:
                yield backend.generate_prompt(prompt, params, cancel)
            else:
                yield from backend.stream_prompt(prompt, params, cancel)

        return self.submit(name, work, keep_alive_s, loop, block)

    def call(self, name: str, fn: Callable[[Backend], Any], keep_alive_s: Optional[float] = None) -> Any:
        """Run `fn(backend)` on the model's worker (tokenize, embed, logits) and return its value."""
        job = self.submit(name, lambda backend, cancel: [fn(backend)], keep_alive_s)
        return job.result()[0]

