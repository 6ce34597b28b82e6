"""OpenAI-compatible API: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import replace
from typing import Any, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lqmf.base.errors import InvalidRequest
from lqmf.base.generation import Chunk, GenerationParams, TokenLogprob
from lqmf.base.sampling import OPENAI, OPENAI_COMPLETION
from server.http.listing import remote_facts
from server.http.schemas import (
    ModelPath,
    NamedToolChoice,
    OpenAIChatRequest,
    OpenAICompletionRequest,
    OpenAIEmbeddingRequest,
    check_dimensions,
    check_model_name,
)
from server.http.streaming import collect_chunks, ensure_loaded, generate, map_chunks, sse, sse_line, start_stream
from server.http.tool_calls import ToolPlan, finish_with_calls, parse_tools, plan, read_reply, rendered_history

router = APIRouter(prefix="/v1", tags=["openai"])

# OpenAI's own defaults.


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
            {"id": r.name, "object": "model", "created": created, "owned_by": owner(r), **remote_facts(r)}
            for r in request.app.state.library.models(probe=True) if r.usable
        ]})

    return await run_in_threadpool(listing)


@router.get("/models/{name}")
async def get_model(request: Request, name: ModelPath) -> dict[str, Any]:
    record = await run_in_threadpool(request.app.state.library.find, check_model_name(name))
    return {"id": record.name, "object": "model", "created": int(request.app.state.started_at),
            "owned_by": owner(record)}


def owner(record) -> str:
    """lqmf for a local model; remote:HOST for an endpoint LQMF proxies to."""
    return f"remote:{record.display.get('host', '')}" if record.format == "remote" else "lqmf"


def chat_request(body: OpenAIChatRequest,
                 params: GenerationParams) -> tuple[list[dict], GenerationParams, Optional[ToolPlan]]:
    """The conversation and parameters for a chat request: tools, response_format and logprobs applied."""
    messages = [m.plain() for m in body.messages]
    schema = body.response_format.schema_text() if body.response_format else None
    tool_plan = None
    if body.tools and body.tool_choice != "none":
        if schema is not None:
            raise InvalidRequest("send tools or a JSON response_format, not both",
                                 "a reply is either tool calls or JSON of your schema")
        tools = parse_tools([t.model_dump() for t in body.tools])
        choice = body.tool_choice.model_dump() if isinstance(body.tool_choice, NamedToolChoice) else body.tool_choice
        tool_plan = plan(messages, tools, choice, parallel=body.parallel_tool_calls is not False)
    elif body.tool_choice not in (None, "none", "auto"):
        raise InvalidRequest("tool_choice asks for a tool call but no tools were sent", 'send "tools" as well')
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequest("top_logprobs needs logprobs: true", 'add "logprobs": true')
    changes: dict[str, Any] = {}
    if tool_plan is not None:
        messages, changes["json_schema"] = tool_plan.messages, tool_plan.schema
    else:
        messages = rendered_history(messages)
        changes["json_schema"] = schema
    if body.logprobs:
        changes["logprobs"] = body.top_logprobs or 0
    return messages, replace(params, **changes), tool_plan


def chat_logprobs(entries: list[TokenLogprob], wanted: bool) -> Optional[dict[str, Any]]:
    return {"content": [e.openai() for e in entries]} if wanted else None


@router.post("/chat/completions")
async def chat_completions(request: Request, body: OpenAIChatRequest):
    """Chat completion, streamed as SSE chunks ending in [DONE] when `stream` is true.

    tools / tool_choice and response_format are enforced by a JSON-schema constraint while
    sampling (see server.http.tool_calls); logprobs come from the engine.
    """
    name = check_model_name(body.model)
    defaults = dict(OPENAI)
    if body.max_completion_tokens is not None:
        defaults["max_tokens"] = body.max_completion_tokens
    messages, params, tool_plan = chat_request(body, body.params(**defaults))
    wants_logprobs = bool(body.logprobs)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.stream:
        result = await generate(request, name, messages, params, None)
        name = result.model or name  # `default` may have fallen back
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        reason = finish(result.finish_reason)
        if tool_plan is not None:
            content, calls = read_reply(result.text)
            message = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = [without_index(c.openai(i)) for i, c in enumerate(calls)]
            reason = finish_with_calls(result.finish_reason, calls)
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": name,
            "choices": [{"index": 0, "message": message, "logprobs": chat_logprobs(result.logprobs, wants_logprobs),
                         "finish_reason": reason}],
            "usage": usage(result.timings),
        }
    job, chunks = await start_stream(request, name, messages, params, None)
    name = job.model
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def event(delta: dict, reason=None, choices=True, extra=None, logprobs=None) -> dict:
        out = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": name,
               "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}]
               if choices else []}
        if extra:
            out.update(extra)
        return out

    # The per-token event, pre-encoded around its text: this is the hot path of every stream.
    head, _, tail = sse_line(event({"content": "\x00"})).partition(json.dumps("\x00"))

    def closing(final: Chunk, reason: str) -> list[dict]:
        out = [event({}, reason)]
        if include_usage:
            out.append(event({}, choices=False, extra={"usage": usage(final.timings)}))
        return out

    async def events():
        yield event({"role": "assistant", "content": ""})
        async for chunk in chunks:
            if chunk.text:
                if wants_logprobs:
                    yield event({"content": chunk.text}, logprobs=chat_logprobs(chunk.logprobs, True))
                else:
                    yield head + json.dumps(chunk.text) + tail
            if chunk.finish_reason is not None:
                for e in closing(chunk, finish(chunk.finish_reason)):
                    yield e

    async def tool_events():
        # The reply is one JSON object that means something only whole: it is read at the end, then
        # sent as a content delta or as tool-call deltas.
        yield event({"role": "assistant", "content": None})
        text, final = await collect_chunks(chunks)
        content, calls = read_reply(text)
        if calls:
            yield event({"tool_calls": [c.openai(i) for i, c in enumerate(calls)]})
        elif content:
            yield event({"content": content})
        for e in closing(final, finish_with_calls(final.finish_reason, calls)):
            yield e

    return sse(request, tool_events() if tool_plan is not None else events(), job)


@router.post("/completions")
async def completions(request: Request, body: OpenAICompletionRequest):
    """Text completion of a raw prompt (no chat template)."""
    name = check_model_name(body.model)
    params = body.params(**OPENAI_COMPLETION)
    prompt = body.text()
    completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prefix = prompt if body.echo else ""

    if body.logprobs is not None:
        params = replace(params, logprobs=body.logprobs)

    def event(text: str, reason=None, extra=None, logprobs=None) -> dict:
        out = {"id": completion_id, "object": "text_completion", "created": created, "model": name,
               "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": reason}]}
        if extra:
            out.update(extra)
        return out

    def text_logprobs(entries: list[TokenLogprob], offset: int) -> Optional[dict[str, Any]]:
        return legacy_logprobs(entries, offset) if body.logprobs is not None else None

    if not body.stream:
        result = await generate(request, name, prompt, params, None)
        name = result.model or name  # `default` may have fallen back
        return event(prefix + result.text, finish(result.finish_reason), {"usage": usage(result.timings)},
                     text_logprobs(result.logprobs, len(prefix)))
    job, chunks = await start_stream(request, name, prompt, params, None)
    name = job.model
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def on_final(chunk: Chunk) -> list[dict]:
        events = [event("", finish(chunk.finish_reason))]
        if include_usage:
            events.append({**event(""), "choices": [], "usage": usage(chunk.timings)})
        return events

    async def events():
        if prefix:
            yield event(prefix)
        async for e in map_chunks(chunks, lambda c: event(c.text, logprobs=text_logprobs(c.logprobs, 0))
                                  if c.text else None, on_final):
            yield e

    return sse(request, events(), job)


def legacy_logprobs(entries: list[TokenLogprob], offset: int) -> dict[str, Any]:
    """The completions API's logprobs object: tokens, their logprobs, alternatives, and text offsets."""
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e.token)
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t: lp for t, lp, _ in e.top} for e in entries], "text_offset": offsets}


def without_index(call: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in call.items() if k != "index"}


@router.post("/embeddings")
async def embeddings(request: Request, body: OpenAIEmbeddingRequest) -> dict[str, Any]:
    """Embeddings from any model (GGUF through llama.cpp's embedding mode, transformers: mean-pooled
    last hidden state), L2-normalised unless normalize is false; an input past the context is a 400."""
    name = check_model_name(body.model)
    library = request.app.state.library
    await ensure_loaded(request, name)
    result = await run_in_threadpool(
        lambda: library.embeddings(name, body.inputs(), normalize=body.normalize, truncate=body.truncate))
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
