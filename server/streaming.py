"""Bridging manager jobs to HTTP: start a job off the event loop, stream it as SSE or NDJSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable, Optional

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from server.backends.base import Chunk, GenerationParams, GenerationResult
from server.manager import Job, ModelManager, Prompt


async def ensure_loaded(request: Request, name: str, keep_alive_s: Optional[float] = None) -> None:
    """Load a discovered model for a request, or refuse when autoload is off."""
    from server.errors import APIError

    manager: ModelManager = request.app.state.manager
    if manager.is_loaded(name):
        return
    manager.record(name)  # 404 with suggestions before anything else
    if not request.app.state.settings.autoload:
        raise APIError(409, f"{name} is not loaded", f"POST /models/{name}/load first (autoload is off)")
    await run_in_threadpool(manager.load, name, keep_alive_s)


def route_of(request: Request) -> str:
    """The route template ("/models/{name}/chat"), not the raw path: one bucket per endpoint."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


async def start_stream(
    request: Request, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float]
) -> tuple[Job, AsyncIterator[Chunk]]:
    """Queue a generation and wait for its first chunk, so that errors still get a proper status."""
    await ensure_loaded(request, name, keep_alive_s)
    manager: ModelManager = request.app.state.manager
    job = await run_in_threadpool(manager.stream, name, prompt, params, keep_alive_s, asyncio.get_running_loop())
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
                    ended = True
                    usage.record(name, route, chunk.finish_reason, chunk.timings)
                yield chunk
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
        except (GeneratorExit, asyncio.CancelledError):
            if not ended:  # the client went away mid-generation
                metrics.generations.labels(name, "cancelled").inc()
            raise
        finally:
            await chunks.aclose()  # a disconnect closes this generator: cancel the generation

    return job, all_chunks()


async def generate(
    request: Request, name: str, prompt: Prompt, params: GenerationParams, keep_alive_s: Optional[float]
) -> GenerationResult:
    """A whole generation for a non-streaming request, collected on the model's worker."""
    await ensure_loaded(request, name, keep_alive_s)
    result = await run_in_threadpool(request.app.state.manager.generate, name, prompt, params, keep_alive_s)
    request.app.state.usage.record(name, route_of(request), result.finish_reason, result.timings)
    return result


def _coalesced(events: AsyncIterator[Any], job: Job, encode: Callable[[Any], str], tail: str) -> AsyncIterator[bytes]:
    """Encoded events, joined into one write while the job already has more output waiting."""

    async def body() -> AsyncIterator[bytes]:
        buffer: list[str] = []
        async for event in events:
            buffer.append(event if isinstance(event, str) else encode(event))  # str: encoded already
            if not job.pending():
                yield "".join(buffer).encode()
                buffer.clear()
        buffer.append(tail)
        yield "".join(buffer).encode()

    return body()


def sse_line(event: Any) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"


def sse(events: AsyncIterator[Any], job: Job, done_marker: bool = True) -> StreamingResponse:
    """Server-sent events: one `data: <json>` per item, then `data: [DONE]`."""
    body = _coalesced(events, job, sse_line,
                      "data: [DONE]\n\n" if done_marker else "")
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def ndjson(events: AsyncIterator[Any], job: Job) -> StreamingResponse:
    """Newline-delimited JSON, the Ollama streaming format."""
    body = _coalesced(events, job, lambda e: json.dumps(e, separators=(",", ":")) + "\n", "")
    return StreamingResponse(body, media_type="application/x-ndjson")


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
