"""Bridging the library's generation jobs to HTTP: start a job off the event loop, stream it as SSE or NDJSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from typing import Any, AsyncIterator, Callable, Optional

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from lqmf.base.errors import (
    LQMFError,
    ShuttingDown,
)
from lqmf.base.generation import Chunk, GenerationParams, GenerationResult, Prompt, Timings
from lqmf.serving import Serving
from lqmf.serving_types import Job, NotLoadedNow
from server.http.asgi import HTTPMiddleware

log = logging.getLogger(__name__)


async def ensure_loaded(request: Request, name: str, keep_alive_s: Optional[float] = None) -> None:
    """Load a discovered model for a request, or refuse when autoload is off."""
    from server.http.errors import APIError

    library: Serving = request.app.state.library
    if library.is_loaded(name):
        return
    await run_in_threadpool(library.find, name)  # 404 with suggestions before anything else
    if not request.app.state.settings.autoload:
        raise APIError(409, f"{name} is not loaded", f"POST /models/{name}/load first (autoload is off)")
    await run_in_threadpool(library.load_exact, name, keep_alive_s)


def route_of(request: Request) -> str:
    """The route template ("/models/{name}/chat"), not the raw path: one bucket per endpoint."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


class InFlight:
    """The HTTP face's jobs not yet finished, so a stopping server can end them with a reason."""

    def __init__(self) -> None:
        self._jobs: set[Job] = set()
        self._lock = threading.Lock()

    def track(self, job: Job) -> None:
        with self._lock:
            self._jobs.add(job)
        job.on_done(lambda: self._forget(job))

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.discard(job)

    def abort_all(self, error: BaseException) -> int:
        """End every job in flight with `error`; how many there were."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.abort(error)
        return len(jobs)


def _track(request: Request, job: Job) -> None:
    request.app.state.in_flight.track(job)


def _ended(job: Job, chunk_or_result) -> None:
    """A generation that ended 'cancelled' because the job was aborted ends with the abort's error."""
    if job.error is not None and chunk_or_result.finish_reason == "cancelled":
        raise job.error


async def _with_fallback(attempt: Callable[..., Any], request: Request, name: str, *args: Any) -> Any:
    """attempt(request, model, *args, fallback_from) on `name`, or for `default` on the active model and then
    its fallbacks while one fails before its first token (server/runtime/fallback.py: the walk the shell's chat takes
    too); every move is logged, counted and recorded."""
    library: Serving = request.app.state.library
    fallbacks = request.app.state.metrics.fallbacks
    walk = await run_in_threadpool(library.fallback_walk, name,
                                   lambda failed, following: fallbacks.labels(failed, following).inc())
    for candidate in walk:
        try:
            result = await attempt(request, candidate, *args, walk.fallback_from)
        except Exception as exc:
            walk.failed_on(candidate, exc)
            continue
        request.state.lqmf_model = candidate
        if walk.failed:
            request.state.lqmf_fallback = walk.fallback_from
        return result
    raise AssertionError("unreachable: the chain is never empty")


async def start_stream(
    request: Request, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float]
) -> tuple[Job, AsyncIterator[Chunk]]:
    """Queue a generation and wait for its first chunk, so that errors still get a proper status.

    `default` goes to the active model, falling back along its chain; job.model says which answered.
    """
    return await _with_fallback(_start_stream_on, request, name, prompt, params, keep_alive_s)


async def _start_stream_on(
    request: Request, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float],
    fallback_from: Optional[str],
) -> tuple[Job, AsyncIterator[Chunk]]:
    job = await _submit(request, name, prompt, params, keep_alive_s, whole=False)
    chunks = job.__aiter__()
    try:
        first = await chunks.__anext__()
    except BaseException:
        await chunks.aclose()
        raise

    metrics = request.app.state.metrics
    usage = request.app.state.usage
    route = route_of(request)

    async def all_chunks() -> AsyncIterator[Chunk]:
        ended = False
        chunk = first
        try:
            while True:
                if chunk.finish_reason is not None:
                    _ended(job, chunk)
                    ended = True
                    usage.record(name, route, chunk.finish_reason, chunk.timings, fallback_from)
                yield chunk
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
        except (GeneratorExit, asyncio.CancelledError):
            if not ended:  # the client went away mid-generation
                metrics.generations.labels(name, "cancelled").inc()
            raise
        except Exception:
            if not ended:  # failed after the first chunk: the body ends with an error event (see _coalesced)
                usage.record(name, route, "error", Timings(), fallback_from)
            raise
        finally:
            await chunks.aclose()  # a disconnect closes this generator: cancel the generation

    return job, all_chunks()


async def _submit(request: Request, name: str, prompt: Prompt, params: GenerationParams,
                  keep_alive_s: Optional[float], *, whole: bool) -> Job:
    """Load the model if need be and queue a generation (`whole`: one GenerationResult, else chunks), tracked
    so that a stopping server can end it.

    The job is queued right here when its model is loaded (a lock and a queue: no thread hop on the hot
    path, worth about a millisecond of time to first token on 2 cores), else from a worker thread,
    where a load may block."""
    await ensure_loaded(request, name, keep_alive_s)
    library: Serving = request.app.state.library
    start = library.generate_job if whole else library.stream_job
    loop = asyncio.get_running_loop()
    try:
        job = start(name, prompt, params, keep_alive_s, loop, block=False)
    except NotLoadedNow:
        job = await run_in_threadpool(start, name, prompt, params, keep_alive_s, loop)
    _track(request, job)
    return job


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the body is read already, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def generate(
    request: Request, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float]
) -> GenerationResult:
    """A whole generation for a non-streaming request, collected on the model's worker.

    A client that disconnects while it waits cancels the generation (ClientGone, answered 499).
    `default` goes to the active model, falling back along its chain; result.model says which answered.
    """
    return await _with_fallback(_generate_on, request, name, prompt, params, keep_alive_s)


async def _generate_on(
    request: Request, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float],
    fallback_from: Optional[str],
) -> GenerationResult:
    from server.http.errors import ClientGone

    route = route_of(request)
    job = await _submit(request, name, prompt, params, keep_alive_s, whole=True)
    outputs = job.__aiter__()
    result_task = asyncio.ensure_future(outputs.__anext__())
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({result_task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not result_task.done():
            job.cancel()
            await asyncio.wait({result_task})
            if result_task.exception() is None:
                result: GenerationResult = result_task.result()
                request.app.state.usage.record(name, route, result.finish_reason, result.timings, fallback_from)
            raise ClientGone(f"the client left before {name} finished", "nothing to do: nobody is waiting")
        try:
            result = result_task.result()
            _ended(job, result)
        except Exception as exc:
            if not isinstance(exc, LQMFError) or isinstance(exc, ShuttingDown):
                # A failed generation; a core error before any output (a prompt too long, a full queue) is
                # only the 4xx/503 it answers, counted with the requests.
                request.app.state.usage.record(name, route, "error", Timings(), fallback_from)
            raise
    finally:
        gone.cancel()
        if not result_task.done():  # this request itself was cancelled: stop the job, then close its outputs
            job.cancel()
            result_task.cancel()
            with contextlib.suppress(BaseException):
                await result_task
        await outputs.aclose()
    request.app.state.usage.record(name, route, result.finish_reason, result.timings, fallback_from)
    result.model = name
    return result


def _coalesced(events: AsyncIterator[Any], job: Job, encode: Callable[[Any], str], tail: str,
               error_event: Callable[[BaseException], str]) -> AsyncIterator[bytes]:
    """Encoded events, joined into one write while the job already has more output waiting.

    An error after the response has started cannot change the status any more: the body ends with
    `error_event(exc)` instead of its usual tail, so the client sees why it stopped.
    """

    async def body() -> AsyncIterator[bytes]:
        buffer: list[str] = []
        try:
            async for event in events:
                buffer.append(event if isinstance(event, str) else encode(event))  # str: encoded already
                if not job.pending():
                    yield "".join(buffer).encode()
                    buffer.clear()
        except Exception as exc:
            buffer.append(error_event(exc))
            yield "".join(buffer).encode()
            return
        buffer.append(tail)
        yield "".join(buffer).encode()

    return body()


def sse_line(event: Any) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"


def _error_payload(request: Request, exc: BaseException) -> dict[str, Any]:
    from server.http.errors import error_payload

    return error_payload(request.url.path, exc)[1]


def sse(request: Request, events: AsyncIterator[Any], job: Job, done_marker: bool = True) -> StreamingResponse:
    """Server-sent events: one `data: <json>` per item, then `data: [DONE]` (or an error event)."""
    body = _coalesced(events, job, sse_line, "data: [DONE]\n\n" if done_marker else "",
                      lambda exc: sse_line(_error_payload(request, exc)))
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def ndjson(request: Request, events: AsyncIterator[Any], job: Job) -> StreamingResponse:
    """Newline-delimited JSON, the Ollama streaming format; an error ends it with Ollama's {"error": ...}."""
    line = lambda e: json.dumps(e, separators=(",", ":")) + "\n"  # noqa: E731
    body = _coalesced(events, job, line, "", lambda exc: line(_error_payload(request, exc)))
    return StreamingResponse(body, media_type="application/x-ndjson")


async def collect_chunks(chunks: AsyncIterator[Chunk]) -> tuple[str, Chunk]:
    """All of a stream's text, and its final chunk (for replies that mean something only whole)."""
    parts: list[str] = []
    async for chunk in chunks:
        parts.append(chunk.text)
        if chunk.finish_reason is not None:
            return "".join(parts), chunk
    raise LQMFError("the generation ended without a final chunk", "see logs/lqmf.log")


async def map_chunks(
    chunks: AsyncIterator[Chunk], make: Callable[[Chunk], Optional[Any]], on_final: Callable[[Chunk], list[Any]]
) -> AsyncIterator[Any]:
    """Turn chunks into API events: `make` for text chunks (None skips), `on_final` for the last one."""
    async for chunk in chunks:
        if chunk.finish_reason is not None:
            if chunk.text:
                event = make(Chunk(chunk.text, chunk.token_ids))
                if event is not None:
                    yield event
            for event in on_final(chunk):
                yield event
        else:
            event = make(chunk)
            if event is not None:
                yield event


class RoutedModelHeaders(HTTPMiddleware):
    """Says which model answered (X-LQMF-Model) and which the fallback chain skipped first
    (X-LQMF-Fallback-From), for requests that named `default`."""

    async def http(self, scope, receive, send) -> None:
        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                extra = [(b"x-lqmf-model", state["lqmf_model"].encode())] if "lqmf_model" in state else []
                if "lqmf_fallback" in state:
                    extra.append((b"x-lqmf-fallback-from", state["lqmf_fallback"].encode()))
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_wrapper)
