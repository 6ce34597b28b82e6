"""A loaded model and the requests on it: Job (one request's outputs, sync or to an asyncio loop), LoadedModel (a
model in memory with its queue), and the worker threads that run a model's jobs in order."""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

from lqmf.base.errors import LQMFError, ModelBusy
from server.runtime.backends.base import Backend
from server.runtime.discovery import ModelRecord

log = logging.getLogger(__name__)

Work = Callable[[Backend, threading.Event], Iterable[Any]]

_DONE = object()
_STOP = object()


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


def generation_work(prompt: Any, params: Any, *, whole: bool) -> Work:
    """The work of one generation: the whole GenerationResult as one output, or its Chunks as they come."""

    def work(backend: Backend, cancel: threading.Event) -> Iterator[Any]:
        backend.require(params)
        # Whole: the backend's own one-shot path (an engine child answers in one response).
        if whole:
            yield backend.generate_prompt(prompt, params, cancel)
        else:
            yield from backend.stream_prompt(prompt, params, cancel)

    return work


def start_workers(model: LoadedModel, lock: threading.RLock, stream_batch_ms: float) -> None:
    """One worker thread per slot of the model's backend; `lock` guards model.admitted (the loader's lock)."""
    for slot in range(model.backend.parallel):
        worker = threading.Thread(target=_work, args=(model, lock, stream_batch_ms / 1000),
                                  name=f"lqmf-worker-{model.name}-{slot}", daemon=True)
        model.workers.append(worker)
        worker.start()


def stop_workers(model: LoadedModel) -> None:
    """Stop the model's workers after the jobs queued before now, and wait for them (never for the caller itself)."""
    for _ in model.workers:
        model.jobs.put(_STOP)
    for worker in model.workers:
        if worker is not threading.current_thread():
            worker.join()


def _work(model: LoadedModel, lock: threading.RLock, hold_s: float) -> None:
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
                _deliver(job, job.work(model.backend, job.cancel_event), hold_s)
        except BaseException as exc:  # delivered to the caller, never lost in the worker
            if not isinstance(exc, LQMFError):
                log.error("request on %s failed", model.name, exc_info=exc)
            job.emit(_Failure(exc))
        finally:
            with lock:
                model.admitted -= 1
            model.requests_served += 1
            model.last_used, model.last_used_wall = time.monotonic(), time.time()
            if job.keep_alive_s is not None:
                model.keep_alive_s = job.keep_alive_s
            model.active.discard(job)
            job.finished_at = time.perf_counter()
            job.emit(_DONE)
            job.finish()


def _deliver(job: Job, items: Iterable[Any], hold: float) -> None:
    """Hand a job's outputs to its consumer, batching fast streams.

    Waking the consumer costs about as much as a small model's token; when tokens come faster
    than every stream_batch_ms / 4 (`hold` is stream_batch_ms in seconds), they go over in batches at
    most stream_batch_ms apart (vLLM's stream interval). The first output, and every output of a slower
    stream, goes at once.
    """
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
