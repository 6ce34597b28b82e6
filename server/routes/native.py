"""The brief's own endpoints: status, models, load/unload, chat."""

from __future__ import annotations

import time
from typing import Any, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

import lqmf
from server.errors import APIError
from server.schemas import LoadRequest, ModelPath, NativeChatRequest, check_model_name, parse_keep_alive
from server.streaming import generate, sse, start_stream

router = APIRouter(tags=["native"])

NATIVE_DEFAULTS = {"max_tokens": 256, "temperature": 0.7}


def chat_summary(name: str, finish: str, timings, text: Optional[str] = None) -> dict[str, Any]:
    summary = {
        "model_name": name, "tokens_generated": timings.completion_tokens, "prompt_tokens": timings.prompt_tokens,
        "time_taken": round(timings.total_s, 4), "time_to_first_token": round(timings.time_to_first_token_s, 4),
        "tokens_per_second": round(timings.tokens_per_second, 2), "finish_reason": finish,
    }
    if text is not None:
        summary = {"response": text, **summary}
    return summary


@router.get("/")
async def status(request: Request) -> dict[str, Any]:
    """Server status and the loaded models."""
    state = request.app.state
    return {
        "name": "LQMF", "version": lqmf.__version__, "status": "ok" if state.ready.is_set() else "starting",
        "uptime_s": round(time.time() - state.started_at, 3), "models_dir": str(state.settings.models_dir),
        "loaded_models": state.manager.loaded(),
    }


@router.get("/models")
async def loaded_models(request: Request) -> dict[str, Any]:
    """Loaded models: format, bits, memory, load time, last used, queue depth, engine (process, slots, health)."""
    return {"models": request.app.state.manager.loaded()}


@router.get("/models/available")
async def available_models(request: Request) -> dict[str, Any]:
    """Every model discovered on disk, with a usable flag and the reason when it is not."""
    manager = request.app.state.manager

    def listing() -> JSONResponse:  # built and encoded off the loop: hundreds of models take milliseconds
        return JSONResponse({"models": [{**r.to_dict(), "loaded": manager.is_loaded(r.name)}
                                        for r in manager.available()]})

    return await run_in_threadpool(listing)


@router.post("/models/{name}/load")
async def load_model(request: Request, name: ModelPath, body: Optional[LoadRequest] = None) -> dict[str, Any]:
    """Load a model; answers when it is loaded, or with the error."""
    name = check_model_name(name)
    keep_alive = parse_keep_alive(body.keep_alive if body else None)
    model = await run_in_threadpool(request.app.state.manager.load, name, keep_alive)
    return {"status": "loaded", "model": model.info()}


@router.post("/models/{name}/unload")
async def unload_model(request: Request, name: ModelPath) -> dict[str, Any]:
    """Unload a model after its running requests finish."""
    name = check_model_name(name)
    manager = request.app.state.manager
    if not await run_in_threadpool(manager.unload, name):
        await run_in_threadpool(manager.record, name)  # unknown -> 404 with suggestions
        raise APIError(404, f"{name} is not loaded", "GET /models lists the loaded models")
    return {"status": "unloaded", "model_name": name}


@router.post("/models/{name}/chat")
async def chat(request: Request, name: ModelPath, body: NativeChatRequest):
    """Chat with a model: {"message": ...} -> {"response", "tokens_generated", "time_taken", "model_name", ...}."""
    name = check_model_name(name)
    params = body.params(**NATIVE_DEFAULTS)
    keep_alive = parse_keep_alive(body.keep_alive)
    convo = body.conversation()
    if not body.stream:
        result = await generate(request, name, convo, params, keep_alive)
        name = result.model or name  # `default` may have fallen back
        return chat_summary(name, result.finish_reason, result.timings, result.text)
    job, chunks = await start_stream(request, name, convo, params, keep_alive)
    name = job.model

    async def events():
        async for chunk in chunks:
            if chunk.text:
                yield {"delta": chunk.text, "done": False}
            if chunk.finish_reason is not None:
                yield {"done": True, **chat_summary(name, chunk.finish_reason, chunk.timings)}

    return sse(request, events(), job)
