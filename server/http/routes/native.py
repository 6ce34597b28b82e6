"""The brief's own endpoints: status, models, load/unload, chat."""

from __future__ import annotations

import time
from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lqmf.base.errors import ModelBusy
from lqmf.base.sampling import CHAT
from lqmf.base.version import __version__
from server.http.errors import APIError
from server.http.schemas import (
    LoadRequest,
    ModelNameChange,
    ModelPath,
    NativeChatRequest,
    check_model_name,
    parse_keep_alive,
)
from server.http.streaming import generate, sse, start_stream

router = APIRouter(tags=["native"])



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
        "name": "LQMF", "version": __version__, "status": "ok" if state.ready.is_set() else "starting",
        "uptime_s": round(time.time() - state.started_at, 3), "models_dir": str(state.settings.models_dir),
        "loaded_models": state.library.loaded(),
    }


@router.get("/models")
async def loaded_models(request: Request) -> dict[str, Any]:
    """Loaded models: format, bits, memory, load time, last used, queue depth, engine (process, slots, health);
    and which engine serves GGUF here, and why."""
    library = request.app.state.library
    return {"models": library.loaded(), "gguf": await run_in_threadpool(library.engine_status)}


@router.get("/models/available")
async def available_models(request: Request) -> dict[str, Any]:
    """Every model discovered on disk, with a usable flag and the reason when it is not."""
    library = request.app.state.library

    def listing() -> JSONResponse:  # built and encoded off the loop: hundreds of models take milliseconds
        return JSONResponse({"models": [{**r.to_dict(), "loaded": library.is_loaded(r.name)}
                                        for r in library.models(probe=True)]})

    return await run_in_threadpool(listing)


# Declared before /models/{name}, which would take "disk-usage" for a model's name.
@router.get("/models/disk-usage")
async def models_disk_usage(request: Request) -> dict[str, Any]:
    """Bytes per local model (files, manifest, importance matrix), what removing each frees, the total, and the
    models folder's free disk space."""
    library = request.app.state.library
    return (await run_in_threadpool(library.disk_usage)).usage_dict()


@router.get("/models/{name}")
async def show_model(request: Request, name: ModelPath) -> dict[str, Any]:
    """One model: format, level, the manifest's facts (method, bits per weight, source, tool versions), the lineage
    tree (source -> variants), the latest speed and fidelity figures, chat template and context length."""
    name = check_model_name(name)
    return (await run_in_threadpool(request.app.state.library.show, name)).model_dict()


async def _admin(call, conflict_hint: str = "") -> dict[str, Any]:
    """Run a Library model change off the loop; a model in use is a 409 (the hint says what to do)."""
    try:
        change = (await run_in_threadpool(call)).change
    except ModelBusy as exc:
        raise APIError(409, exc.message, conflict_hint or exc.hint) from None
    return {"status": change.action, **change.to_dict()}


@router.delete("/models/{name}")
async def remove_model(request: Request, name: ModelPath,
                       unload: bool = Query(False, description="Unload the model first when it is loaded "
                                            "(still refused while it serves requests).")) -> dict[str, Any]:
    """Delete a local model: its file or folder, its manifest and its importance matrix. Refused (409) while it is
    loaded unless ?unload=true; a remote endpoint is removed with DELETE /endpoints/{name}."""
    name = check_model_name(name)
    library = request.app.state.library
    return await _admin(lambda: library.remove(name, unload=unload),
                        f"unload it first (POST /models/{name}/unload), or send DELETE /models/{name}?unload=true")


@router.post("/models/{name}/rename")
async def rename_model(request: Request, name: ModelPath, body: ModelNameChange) -> dict[str, Any]:
    """Rename a local model (refused while loaded): files, manifest and importance matrix move together, and
    models made from it name its new path in their manifests."""
    name = check_model_name(name)
    library = request.app.state.library
    return await _admin(lambda: library.rename(name, body.to),
                        f"unload it first (POST /models/{name}/unload)")


@router.post("/models/{name}/copy", status_code=201)
async def copy_model(request: Request, name: ModelPath, body: ModelNameChange) -> dict[str, Any]:
    """Copy a local model under a new name, with its manifest and importance matrix (201 when made)."""
    name = check_model_name(name)
    library = request.app.state.library
    return await _admin(lambda: library.copy(name, body.to))


@router.post("/models/{name}/load")
async def load_model(request: Request, name: ModelPath, body: Optional[LoadRequest] = None) -> dict[str, Any]:
    """Load a model; answers when it is loaded, or with the error."""
    name = check_model_name(name)
    keep_alive = parse_keep_alive(body.keep_alive if body else None)
    library = request.app.state.library
    was_loaded = library.is_loaded(name)
    info = await run_in_threadpool(library.load_exact, name, keep_alive)
    return {"status": "loaded", "already_loaded": was_loaded, "model": info}


@router.post("/models/{name}/unload")
async def unload_model(request: Request, name: ModelPath) -> dict[str, Any]:
    """Unload a model after its running requests finish."""
    name = check_model_name(name)
    if not await run_in_threadpool(request.app.state.library.unload, name):  # unknown: 404 with suggestions
        raise APIError(404, f"{name} is not loaded", "GET /models lists the loaded models")
    return {"status": "unloaded", "model_name": name}


@router.post("/models/{name}/chat")
async def chat(request: Request, name: ModelPath, body: NativeChatRequest):
    """Chat with a model: {"message": ...} -> {"response", "tokens_generated", "time_taken", "model_name", ...}."""
    name = check_model_name(name)
    params = body.params(**CHAT)
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
