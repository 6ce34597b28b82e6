"""Ollama-compatible API: /api/tags, /api/ps, /api/show, /api/generate, /api/chat, /api/embed, /api/embeddings,
/api/version."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lqmf.base.errors import InvalidRequest, ModelNotFound
from lqmf.base.generation import Chunk
from lqmf.base.version import __version__
from lqmf.serving_types import ModelRecord
from server.http.listing import remote_facts
from server.http.schemas import (
    MAX_KEEP_ALIVE_S,
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaOptions,
    OllamaShowRequest,
    check_dimensions,
    check_model_name,
    ollama_format,
    parse_keep_alive,
)
from server.http.streaming import collect_chunks, ensure_loaded, generate, map_chunks, ndjson, start_stream
from server.http.tool_calls import ToolPlan, parse_tools, plan, read_reply, rendered_history

router = APIRouter(prefix="/api", tags=["ollama"])
NS = 1_000_000_000
FOREVER = "2318-01-01T00:00:00Z"  # what Ollama reports for keep_alive -1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def human_params(n: Optional[int]) -> str:
    if not n:
        return ""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def details(record: ModelRecord) -> dict[str, Any]:
    family = (record.architecture or "").lower().replace("forcausallm", "")
    return {"parent_model": "", "format": record.format, "family": family, "families": [family] if family else [],
            "parameter_size": human_params(record.parameter_count),
            "quantization_level": (record.level or "").upper()}


def digest(record: ModelRecord) -> str:
    """The sha256 of the weights, as the model's manifest measured it (empty without a manifest)."""
    files = (record.manifest or {}).get("weight_files") or []
    return files[0]["sha256"] if files else ""


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/tags")
async def tags(request: Request) -> dict[str, Any]:
    """Models available locally."""

    def listing() -> JSONResponse:  # built (a stat per model) and encoded off the loop
        models = []
        for r in request.app.state.library.models(probe=True):
            if not r.usable:
                continue
            try:
                modified = r.path.stat().st_mtime
            except OSError:  # removed since discovery looked: no longer local
                continue
            models.append({"name": r.name, "model": r.name, "modified_at": iso(modified), "size": r.size_bytes,
                           "digest": digest(r), "details": details(r), **remote_facts(r)})
        return JSONResponse({"models": models})

    return await run_in_threadpool(listing)


@router.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    """Models loaded now, with when they will be unloaded."""
    library = request.app.state.library
    out = []
    for info in library.loaded():
        record = library.loaded_record(info["name"])
        keep = info["keep_alive_s"]
        # A keep_alive from the environment may be past any date the calendar can write: that is forever too.
        expires = FOREVER if keep < 0 or keep > MAX_KEEP_ALIVE_S else iso(info["last_used"] + keep)
        out.append({"name": info["name"], "model": info["name"], "size": info["memory_bytes"], "size_vram": 0,
                    "digest": digest(record), "expires_at": expires, "details": details(record),
                    "context_length": info["context_length"]})
    return {"models": out}


@router.post("/show")
async def show(request: Request, body: OllamaShowRequest) -> dict[str, Any]:
    """A model's details, template, parameters and capabilities, plus `lqmf`: what `show NAME` shows (manifest,
    lineage, latest speed and fidelity figures, disk use)."""
    name = check_model_name(body.model or body.name or "")
    state = request.app.state
    record = await run_in_threadpool(state.library.find, name)
    # The template comes with show's facts: show reads again when a rename or removal races the read.
    facts = await run_in_threadpool(state.library.show, name)
    template = facts.chat_template
    arch = (record.architecture or "unknown").lower()
    info = {"general.architecture": arch, "general.basename": record.name,
            "general.parameter_count": record.parameter_count, "general.file_type": record.level,
            f"{arch}.context_length": record.context_length, f"{arch}.block_count": record.block_count}
    manifest = facts.manifest or {}
    if manifest.get("bits_per_weight") is not None:
        info["general.bits_per_weight"] = manifest["bits_per_weight"]
    ancestors = facts.lineage.get("ancestors") or []
    num_ctx = min(state.settings.context_length, record.context_length or state.settings.context_length)
    parameters = f"num_ctx {num_ctx}"
    modelfile = f"# Modelfile generated by LQMF\nFROM {record.path}\n"
    if template:
        modelfile += f'TEMPLATE """{template}"""\n'
    modelfile += f"PARAMETER {parameters}\n"
    try:
        modified = iso(record.path.stat().st_mtime)
    except (OSError, TypeError):  # a remote endpoint has no file
        modified = now_iso()
    return {
        "modelfile": modelfile, "parameters": parameters, "template": template or "",
        "details": {**details(record), "parent_model": ancestors[0] if ancestors else ""}, "model_info": info,
        "modified_at": modified, "capabilities": CAPABILITIES[record.role],
        "lqmf": {**facts.model_dict(), "chat_template": None},  # the template is said once, as "template"
    }


# What /api/show says a model can do, by its role (server.runtime.discovery): an encoder only embeds.
CAPABILITIES = {"generation": ["completion", "embedding", "tools"], "embedding": ["embedding"]}


def final_stats(name: str, chunk: Chunk, started: float, load_s: float, reason: str) -> dict[str, Any]:
    t = chunk.timings
    return {
        "model": name, "created_at": now_iso(), "done": True, "done_reason": reason,
        "total_duration": int((time.perf_counter() - started) * NS), "load_duration": int(load_s * NS),
        "prompt_eval_count": t.prompt_tokens, "prompt_eval_duration": int(t.prompt_eval_s * NS),
        "eval_count": t.completion_tokens, "eval_duration": int(t.eval_s * NS),
    }


async def _load_or_unload(request: Request, name: str, keep_alive: Optional[float]) -> dict[str, Any]:
    """Ollama's empty-prompt requests: load the model (or unload it when keep_alive is 0); the reply's done fields."""
    if keep_alive == 0:
        with contextlib.suppress(ModelNotFound):  # Ollama's answer is the same for a model that is not there
            await run_in_threadpool(request.app.state.library.unload, name)
        return {"done": True, "done_reason": "unload"}
    await ensure_loaded(request, name, keep_alive)
    return {"done": True, "done_reason": "load"}


async def _ollama_stream(request: Request, name: str, prompt, options: Optional[OllamaOptions],
                         keep_alive: Optional[float], stream: bool, shape, json_schema: Optional[str] = None,
                         tool_plan: Optional[ToolPlan] = None):
    """Shared body of /api/generate and /api/chat: `shape(text, calls)` makes each object.

    `format` (json_schema) and tools (tool_plan) constrain the reply; options.num_ctx is the request's
    own context window, refused with a 400 when larger than the loaded one.
    """
    started = time.perf_counter()

    def shaped(text: str, calls: list) -> dict[str, Any]:  # the model that answered (`default` may fall back)
        return {**shape(text, calls), "model": name}

    load_start = time.perf_counter()
    # `default` is loaded by the generation itself, which may fall back along the chain.
    was_loaded = name == "default" or request.app.state.library.is_loaded(name)
    if not was_loaded:
        await ensure_loaded(request, name, keep_alive)
    load_s = 0.0 if was_loaded else time.perf_counter() - load_start
    options = options or OllamaOptions()
    params = replace(options.params(), num_ctx=options.num_ctx,
                     json_schema=tool_plan.schema if tool_plan is not None else json_schema)
    if tool_plan is not None:
        prompt = tool_plan.messages
    reason = {"stop": "stop", "length": "length", "cancelled": "stop"}

    def whole(text: str, final: Chunk) -> dict[str, Any]:
        content, calls = read_reply(text) if tool_plan is not None else (text, [])
        return {**shaped(content or "", calls),
                **final_stats(name, final, started, load_s, reason[final.finish_reason])}

    if not stream:
        result = await generate(request, name, prompt, params, keep_alive)
        name = result.model or name  # `default` may have fallen back
        return whole(result.text, Chunk("", [], result.finish_reason, result.timings))
    job, chunks = await start_stream(request, name, prompt, params, keep_alive)
    name = job.model
    if tool_plan is not None:  # a tool-call reply means something only whole: one object at the end
        async def at_end():
            text, final = await collect_chunks(chunks)
            yield whole(text, final)

        return ndjson(request, at_end(), job)

    def on_final(chunk: Chunk) -> list[dict]:
        return [{**shaped("", []), **final_stats(name, chunk, started, load_s, reason[chunk.finish_reason])}]

    return ndjson(request, map_chunks(chunks, lambda c: shaped(c.text, []) if c.text else None, on_final), job)


@router.post("/generate")
async def api_generate(request: Request, body: OllamaGenerateRequest):
    """Completion of a prompt (through the chat template unless raw), NDJSON-streamed by default."""
    name = check_model_name(body.model)
    keep_alive = parse_keep_alive(body.keep_alive)

    def shape(text: str, calls: list) -> dict[str, Any]:
        return {"model": name, "created_at": now_iso(), "response": text, "done": False}

    if not body.prompt:
        return {**shape("", []), **await _load_or_unload(request, name, keep_alive)}
    if body.raw:
        prompt: Any = body.prompt
    else:
        prompt = ([{"role": "system", "content": body.system}] if body.system else []) + [
            {"role": "user", "content": body.prompt}]
    return await _ollama_stream(request, name, prompt, body.options, keep_alive, body.stream, shape,
                                json_schema=ollama_format(body.format))


@router.post("/chat")
async def api_chat(request: Request, body: OllamaChatRequest):
    """Chat through the model's template, NDJSON-streamed by default."""
    name = check_model_name(body.model)
    keep_alive = parse_keep_alive(body.keep_alive)

    def shape(text: str, calls: list) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [c.ollama() for c in calls]
        return {"model": name, "created_at": now_iso(), "message": message, "done": False}

    if not body.messages:
        return {**shape("", []), **await _load_or_unload(request, name, keep_alive)}
    messages = [m.plain() for m in body.messages]
    tool_plan = None
    if body.tools:
        if body.format:
            raise InvalidRequest("send tools or a format, not both", "a reply is either tool calls or JSON")
        tool_plan = plan(messages, parse_tools([t.model_dump() for t in body.tools]), "auto")
    else:
        messages = rendered_history(messages)
    return await _ollama_stream(request, name, messages, body.options, keep_alive, body.stream, shape,
                                json_schema=ollama_format(body.format), tool_plan=tool_plan)


async def _embed(request: Request, name: str, texts: list[str], keep_alive: Optional[float], *, normalize: bool,
                 truncate: bool):
    """Load (timed, for load_duration) and embed on the model's worker; returns (Embeddings, load seconds)."""
    library = request.app.state.library
    load_start = time.perf_counter()
    was_loaded = library.is_loaded(name)
    await ensure_loaded(request, name, keep_alive)
    load_s = 0.0 if was_loaded else time.perf_counter() - load_start
    result = await run_in_threadpool(
        lambda: library.embeddings(name, texts, normalize=normalize, truncate=truncate, keep_alive_s=keep_alive))
    return result, load_s


@router.post("/embed")
async def api_embed(request: Request, body: OllamaEmbedRequest):
    """Embeddings of one or more texts, L2-normalised; too-long inputs are cut to the context unless truncate
    is false."""
    started = time.perf_counter()
    name = check_model_name(body.model)
    keep_alive = parse_keep_alive(body.keep_alive)
    texts = body.inputs()
    if not texts:
        await _load_or_unload(request, name, keep_alive)
        return {"model": name, "embeddings": []}
    result, load_s = await _embed(request, name, texts, keep_alive, normalize=body.normalize, truncate=body.truncate)
    check_dimensions(name, result.dim, body.dimensions)

    def response() -> JSONResponse:  # thousands of floats per vector: encoded off the loop
        return JSONResponse({
            "model": name, "embeddings": result.vectors.tolist(),
            "total_duration": int((time.perf_counter() - started) * NS), "load_duration": int(load_s * NS),
            "prompt_eval_count": result.total_tokens,
        })

    return await run_in_threadpool(response)


@router.post("/embeddings")
async def api_embeddings(request: Request, body: OllamaEmbeddingsRequest):
    """Ollama's older endpoint: one prompt's embedding, not normalised (as Ollama's is not)."""
    name = check_model_name(body.model)
    keep_alive = parse_keep_alive(body.keep_alive)
    if not body.prompt:
        await _load_or_unload(request, name, keep_alive)
        return {"embedding": []}
    result, _ = await _embed(request, name, [body.prompt], keep_alive, normalize=body.normalize,
                             truncate=body.truncate)
    return await run_in_threadpool(lambda: JSONResponse({"embedding": result.vectors[0].tolist()}))
