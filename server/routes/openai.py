"""OpenAI-compatible API: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from agents.embeddings import embed_texts
from server.backends.base import Chunk
from server.schemas import (
    OpenAIChatRequest,
    OpenAICompletionRequest,
    ModelPath,
    OpenAIEmbeddingRequest,
    check_dimensions,
    check_model_name,
)
from server.streaming import ensure_loaded, generate, map_chunks, sse, sse_line, start_stream

router = APIRouter(prefix="/v1", tags=["openai"])

# OpenAI's own defaults.
OPENAI_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "max_tokens": 1024}


def usage(timings) -> dict[str, int]:
    return {"prompt_tokens": timings.prompt_tokens, "completion_tokens": timings.completion_tokens,
            "total_tokens": timings.prompt_tokens + timings.completion_tokens}


def finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every usable model on disk, loaded or not (a request naming one loads it)."""
    created = int(request.app.state.started_at)

    def listing() -> JSONResponse:  # built and encoded off the loop: hundreds of models take milliseconds
        return JSONResponse({"object": "list", "data": [
            {"id": r.name, "object": "model", "created": created, "owned_by": "lqmf"}
            for r in request.app.state.manager.available() if r.usable
        ]})

    return await run_in_threadpool(listing)


@router.get("/models/{name}")
async def get_model(request: Request, name: ModelPath) -> dict[str, Any]:
    record = await run_in_threadpool(request.app.state.manager.record, check_model_name(name))
    return {"id": record.name, "object": "model", "created": int(request.app.state.started_at), "owned_by": "lqmf"}


@router.post("/chat/completions")
async def chat_completions(request: Request, body: OpenAIChatRequest):
    """Chat completion, streamed as SSE chunks ending in [DONE] when `stream` is true."""
    name = check_model_name(body.model)
    defaults = dict(OPENAI_DEFAULTS)
    if body.max_completion_tokens is not None:
        defaults["max_tokens"] = body.max_completion_tokens
    params = body.params(**defaults)
    messages = [m.model_dump() for m in body.messages]
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.stream:
        result = await generate(request, name, messages, params, None)
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "logprobs": None, "finish_reason": finish(result.finish_reason)}],
            "usage": usage(result.timings),
        }
    job, chunks = await start_stream(request, name, messages, params, None)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def event(delta: dict, reason=None, choices=True, extra=None) -> dict:
        out = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": name,
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}] if choices else []}
        if extra:
            out.update(extra)
        return out

    # The per-token event, pre-encoded around its text: this is the hot path of every stream.
    head, _, tail = sse_line(event({"content": "\x00"})).partition(json.dumps("\x00"))

    async def events():
        yield event({"role": "assistant", "content": ""})
        async for chunk in chunks:
            if chunk.text:
                yield head + json.dumps(chunk.text) + tail
            if chunk.finish_reason is not None:
                yield event({}, finish(chunk.finish_reason))
                if include_usage:
                    yield event({}, choices=False, extra={"usage": usage(chunk.timings)})

    return sse(request, events(), job)


@router.post("/completions")
async def completions(request: Request, body: OpenAICompletionRequest):
    """Text completion of a raw prompt (no chat template)."""
    name = check_model_name(body.model)
    params = body.params(**{**OPENAI_DEFAULTS, "max_tokens": 16})
    prompt = body.text()
    completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prefix = prompt if body.echo else ""

    def event(text: str, reason=None, extra=None) -> dict:
        out = {"id": completion_id, "object": "text_completion", "created": created, "model": name,
               "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}]}
        if extra:
            out.update(extra)
        return out

    if not body.stream:
        result = await generate(request, name, prompt, params, None)
        return event(prefix + result.text, finish(result.finish_reason), {"usage": usage(result.timings)})
    job, chunks = await start_stream(request, name, prompt, params, None)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def on_final(chunk: Chunk) -> list[dict]:
        events = [event("", finish(chunk.finish_reason))]
        if include_usage:
            events.append({**event(""), "choices": [], "usage": usage(chunk.timings)})
        return events

    async def events():
        if prefix:
            yield event(prefix)
        async for e in map_chunks(chunks, lambda c: event(c.text) if c.text else None, on_final):
            yield e

    return sse(request, events(), job)


@router.post("/embeddings")
async def embeddings(request: Request, body: OpenAIEmbeddingRequest) -> dict[str, Any]:
    """Embeddings from any model (GGUF through llama.cpp's embedding mode, transformers: mean-pooled
    last hidden state), L2-normalised unless normalize is false; an input past the context is a 400."""
    name = check_model_name(body.model)
    manager = request.app.state.manager
    await ensure_loaded(request, name)
    result = await run_in_threadpool(
        lambda: embed_texts(manager, name, body.inputs(), normalize=body.normalize, truncate=body.truncate))
    check_dimensions(name, result.dim, body.dimensions)

    def response() -> JSONResponse:  # thousands of floats per vector: encoded off the loop
        if body.encoding_format == "base64":  # little-endian float32, what the official client asks for
            vectors: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in result.vectors]
        else:
            vectors = result.vectors.tolist()
        return JSONResponse({
            "object": "list", "model": name,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": result.total_tokens, "total_tokens": result.total_tokens},
        })

    return await run_in_threadpool(response)
