"""ModelManager: the only owner of loaded models (load once, budget, eviction, TTL, queues, cancel).

It is composed of one object per job: the catalog finds models (catalog.py), the routing picks the default model
and its fallbacks (routing.py), the endpoint registry and RemoteModels keep remote models (endpoints.py,
remotes.py), and the memory budget admits loads (budget.py); jobs and their workers are in jobs.py.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Iterator, Optional

from lqmf.base.errors import ModelBusy, ModelLoadError, ModelNotFound, QueueFull
from lqmf.base.generation import GenerationParams, GenerationResult, Prompt
from lqmf.base.settings import Settings
from server.runtime.backends.base import Backend
from server.runtime.budget import MemoryBudget, MiB, estimate_bytes
from server.runtime.catalog import ModelCatalog
from server.runtime.discovery import ModelRecord
from server.runtime.endpoints import EndpointRegistry
from server.runtime.engine_decision import EngineDecision
from server.runtime.engine_tuning import EngineTuning
from server.runtime.jobs import Job, LoadedModel, NotLoadedNow, Work, generation_work, start_workers, stop_workers
from server.runtime.remotes import RemoteModels
from server.runtime.routing import Routing

log = logging.getLogger(__name__)

__all__ = ["ModelManager"]


class ModelManager:
    """Loads models by name on demand, within the memory budget, and runs every request on its model's workers.

    The parts it is composed of are attributes: `catalog` finds models (`available` and `record` are its
    methods), `routing` keeps the default model and its fallbacks (`active` is their file), `endpoints` is the
    registry of remote endpoints and `remotes` adds and removes them, `budget` is the memory budget, and
    `engines` decides how GGUF models are served (`engine`, `engine_status` and `engine_notice` are its methods).
    """

    def __init__(self, settings: Settings, discover_fn: Optional[Callable[[Any], list[ModelRecord]]] = None) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, Future] = {}
        self.endpoints = EndpointRegistry(settings)
        self.catalog = ModelCatalog(settings, self.endpoints, discover_fn)
        self.discovery = self.catalog.discovery
        # Finding a model is the catalog's job and the GGUF engine the EngineDecision's: the faces call them by
        # these names.
        self.available, self.record = self.catalog.available, self.catalog.record
        self.routing = Routing(settings.active_model_path, self.catalog.record)
        self.active = self.routing.active
        self.remotes = RemoteModels(settings, self.endpoints, self.catalog, self.routing, detach=self.unload)
        self.budget = MemoryBudget(settings, self._lock, self._loaded, evict=self.unload)
        self.engines = EngineDecision(settings)
        self.engine, self.engine_status, self.engine_notice = (self.engines.choice, self.engines.status,
                                                               self.engines.notice)
        # A model's stored engine tuning, by name: the Library, which owns the history, sets this.
        self.tuning_of: Callable[[str], Optional[EngineTuning]] = lambda name: None
        # Models whose files are being removed, renamed or copied (agents.models.admin): no load may start on them.
        self._changing: dict[str, str] = {}
        self._closed = threading.Event()
        self._loads: dict[str, int] = {}  # completed loads per model: /metrics' lqmf_model_loads_total
        self._reaper = threading.Thread(target=self._reap, name="lqmf-ttl-reaper", daemon=True)
        self._reaper.start()

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
            self.catalog.discovery.invalidate()

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
                self.budget.release(name)
            future.set_exception(exc)
            return
        with self._lock:
            self._loaded[name] = model
            self._loading.pop(name, None)
            self.budget.release(name)
            self._loads[name] = self._loads.get(name, 0) + 1
            closed = self._closed.is_set()
        if closed:  # close() ran while this loaded: nobody may be left holding it
            self.unload(name)
            future.set_exception(ModelBusy("the model manager is shutting down", "start it again"))
            return
        future.set_result(model)

    def _load_now(self, name: str, keep_alive_s: Optional[float]) -> LoadedModel:
        record = self.record(name)
        if not record.usable:
            raise ModelLoadError(f"{name} cannot be loaded: {record.reason}", "fix or remove the file, then retry")
        if record.format == "remote":  # "loads" by probing its endpoint: no memory, no budget
            backend, need = self.remotes.backend(record), 0
        else:
            backend, need = self._local_backend(record)
        start = time.perf_counter()
        backend.load()
        load_time = time.perf_counter() - start
        keep = self.settings.keep_alive_s if keep_alive_s is None else keep_alive_s
        model = LoadedModel(
            record=record, backend=backend, load_time_s=load_time, footprint_bytes=backend.footprint(),
            estimate_bytes=need, keep_alive_s=keep, jobs=queue.Queue(),
        )
        start_workers(model, self._lock, self.settings.stream_batch_ms)
        if record.format == "remote":
            urls = ", ".join(backend.fleet.endpoint.urls)
            log.info("attached remote %s (%s at %s)", name, backend.remote_model, urls)
        else:
            log.info("loaded %s (%s) in %.2fs, %.1f MiB", name, record.format, load_time, model.footprint_bytes / MiB)
        return model

    def _local_backend(self, record: ModelRecord) -> tuple[Backend, int]:
        """The backend of a model on disk, not loaded yet, with room reserved in the budget for what it needs."""
        from server.runtime.backends import backend_for

        n_ctx = min(self.settings.context_length, record.context_length or self.settings.context_length)
        engine = self.engine() if record.format == "gguf" else None
        served = engine is not None and engine.server
        tuning = self._tuning(record) if served else None
        slots = (tuning and tuning.slots or self.settings.parallel) if served else 1
        threads = tuning and tuning.threads or self.settings.threads
        need = estimate_bytes(record, n_ctx * slots)  # every slot holds a KV cache of its own
        self.budget.reserve(record.name, need)
        return backend_for(record, n_ctx=n_ctx, threads=threads, engine=engine, slots=slots,
                           logs_dir=self.settings.logs_dir, tuned_args=tuning.server_args() if tuning else ()), need

    def _tuning(self, record: ModelRecord) -> Optional[EngineTuning]:
        """The model's stored engine tuning when it holds for its file on this machine (LQMF_TUNED=0: never)."""
        tuning = self.tuning_of(record.name) if self.settings.tuned else None
        why = tuning.applies_to(record.path) if tuning is not None else None
        if why:
            log.warning("%s is served with the default engine settings: its tuning does not hold (%s); "
                        "run `tune %s` again", record.name, why, record.name)
            return None
        if tuning is not None:
            log.info("%s is served as tuned: %s", record.name, " ".join(tuning.server_args()) or "no extra arguments")
        return tuning

    def unload(self, name: str) -> bool:
        """Unload after the model's queued requests finish; False when it was not loaded."""
        with self._lock:
            model = self._loaded.pop(name, None)
            if model is None:
                return False
            model.closing = True
        stop_workers(model)
        model.backend.unload()
        log.info("unloaded %s", name)
        return True

    def close(self) -> None:
        """Unload everything and stop the TTL reaper (the history Store is the Library's)."""
        self._closed.set()
        for name in list(self._loaded):
            self.unload(name)
        self.endpoints.close()
        if self._reaper.is_alive() and self._reaper is not threading.current_thread():
            self._reaper.join(timeout=5)

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

    # -- generation conveniences (what the shell and the routes call) ------------------------------
    def stream(
        self, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float] = None, loop=None,
        block: bool = True,
    ) -> Job:
        """A job whose outputs are Chunks (the last with finish_reason and timings)."""
        return self.submit(name, generation_work(prompt, params, whole=False), keep_alive_s, loop, block)

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
        return self.submit(name, generation_work(prompt, params, whole=True), keep_alive_s, loop, block)

    def call(self, name: str, fn: Callable[[Backend], Any], keep_alive_s: Optional[float] = None) -> Any:
        """Run `fn(backend)` on the model's worker (tokenize, embed, logits) and return its value."""
        job = self.submit(name, lambda backend, cancel: [fn(backend)], keep_alive_s)
        return job.result()[0]
