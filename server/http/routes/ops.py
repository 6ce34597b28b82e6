"""Operations: health, Prometheus metrics, tokenize / detokenize."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from lqmf.base.errors import InvalidRequest
from server.http.errors import APIError
from server.http.schemas import DetokenizeRequest, TokenizeRequest, check_model_name
from server.http.streaming import ensure_loaded

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health(request: Request):
    """200 when ready to serve, with which engine serves GGUF and why; 503 while starting (preloading models)."""
    if request.app.state.ready.is_set():
        # Startup decided the engine (_preload), so this is a lookup, not a smoke check.
        return {"status": "ok", "gguf": await run_in_threadpool(request.app.state.library.engine_status)}
    return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, tokens, latency histograms, queue depth, loaded models, memory."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.post("/tokenize")
async def tokenize(request: Request, body: TokenizeRequest) -> dict[str, Any]:
    """Token ids of a text with the model's own tokenizer."""
    name = check_model_name(body.model)
    text = body.text if body.text is not None else body.content
    if text is None:
        raise APIError(422, "send 'text' to tokenize", '{"model": "...", "text": "hello"}')
    await ensure_loaded(request, name)
    library = request.app.state.library
    tokens = await run_in_threadpool(lambda: library.tokenize(name, text, add_special=body.add_special))
    return {"model": name, "tokens": tokens, "count": len(tokens)}


@router.post("/detokenize")
async def detokenize(request: Request, body: DetokenizeRequest) -> dict[str, Any]:
    """Text of token ids."""
    name = check_model_name(body.model)
    await ensure_loaded(request, name)
    try:
        text = await run_in_threadpool(request.app.state.library.detokenize, name, body.tokens)
    except InvalidRequest as exc:  # ids outside the vocabulary: this route's own 422, as it always answered
        raise APIError(422, exc.message, exc.hint) from None
    return {"model": name, "text": text}
