"""Side by side: one prompt through several models in parallel (/compare), many items (/batch)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional

from fastapi import APIRouter, Request

from lqmf.base.sampling import CHAT
from server.http.errors import ClientGone, to_response
from server.http.schemas import (
    BatchRequest,
    ChatMessage,
    CompareRequest,
    SamplingFields,
    check_model_name,
    conversation,
)
from server.http.streaming import generate

router = APIRouter(tags=["side-by-side"])


def _prompt(prompt: Optional[str], messages: Optional[list[ChatMessage]]):
    """The conversation of a body that has a prompt or messages (its schema requires one of them)."""
    if messages:
        return conversation(messages)
    return [{"role": "user", "content": prompt or ""}]


async def _run_one(request: Request, model: str, convo, fields: SamplingFields) -> dict[str, Any]:
    """One generation as a result row; an error becomes the row's `error` instead of failing the lot."""
    started = time.perf_counter()
    try:
        name = check_model_name(model)
        result = await generate(request, name, convo, fields.params(**CHAT), None)
        name = result.model or name  # `default` may have fallen back
    except ClientGone:
        raise
    except Exception as exc:  # one model's failure is its row's error; a bug is logged with an id by to_response
        response = to_response(request, exc)
        return {"model": model, "error": json.loads(response.body)["error"], "status": response.status_code}
    t = result.timings
    return {
        "model": name, "response": result.text, "finish_reason": result.finish_reason,
        "latency_s": round(time.perf_counter() - started, 4),
        "time_to_first_token_s": round(t.time_to_first_token_s, 4),
        "tokens_per_second": round(t.tokens_per_second, 2),
        "usage": {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
                  "total_tokens": t.prompt_tokens + t.completion_tokens},
    }


@router.post("/compare")
async def compare(request: Request, body: CompareRequest) -> dict[str, Any]:
    """The same prompt through 2+ models at once: each response with latency, tokens/s and usage."""
    convo = _prompt(body.prompt, body.messages)
    results = await asyncio.gather(*(_run_one(request, m, convo, body) for m in body.models))
    ok = [r for r in results if "error" not in r]
    summary = {}
    if ok:
        summary["fastest"] = max(ok, key=lambda r: r["tokens_per_second"])["model"]
        summary["lowest_latency"] = min(ok, key=lambda r: r["latency_s"])["model"]
    return {"results": list(results), "summary": summary}


@router.post("/batch")
async def batch(request: Request, body: BatchRequest) -> dict[str, Any]:
    """A list of prompt/model items: each model's items in order, different models in parallel.

    Per-item results; an item's error does not fail the others.
    """
    started = time.perf_counter()
    results: list[dict[str, Any]] = [{} for _ in body.items]
    by_model: dict[str, list[int]] = {}
    for index, item in enumerate(body.items):
        by_model.setdefault(item.model, []).append(index)

    async def run_model(indices: list[int]) -> None:
        for index in indices:
            item = body.items[index]
            results[index] = await _run_one(request, item.model, _prompt(item.prompt, item.messages), item)

    await asyncio.gather(*(run_model(indices) for indices in by_model.values()))
    return {"results": [{"index": i, **r} for i, r in enumerate(results)],
            "errors": sum(1 for r in results if "error" in r), "total_time_s": round(time.perf_counter() - started, 4)}
