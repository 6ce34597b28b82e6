"""Remote endpoints (register, list, remove) and the default model (switch, show)."""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lqmf.base.errors import LQMFError
from lqmf.serving_types import ModelChoiceNeeded
from server.http.errors import APIError
from server.http.schemas import EndpointRequest, ModelPath, SwitchRequest, check_model_name

router = APIRouter(tags=["endpoints"])


@router.get("/endpoints")
async def list_endpoints(request: Request) -> dict[str, Any]:
    """Every registered endpoint with its members' health, latency and requests in flight (never a key); a broken
    entry of the file with `health` "broken" and the reason in `broken`; `problem`: why the file cannot be read."""
    listed = await run_in_threadpool(request.app.state.library.endpoints)
    return {"endpoints": listed.endpoints, "problem": listed.problem}


@router.post("/endpoints", status_code=201,
             responses={200: {"description": "An endpoint of that name was replaced (a broken one included)"}})
async def add_endpoint(request: Request, body: EndpointRequest) -> JSONResponse:
    """Register (or replace) an endpoint; it is probed at once and listed as a model of format remote. A server that
    lists several models needs `model` (422 names them; nothing is registered)."""
    name = check_model_name(body.name)
    library = request.app.state.library
    try:
        added = await run_in_threadpool(lambda: library.add_endpoint(name, body.all_urls(), model=body.model,
                                                                     key_env=body.key_env))
    except ModelChoiceNeeded as exc:  # the hint in this face's words: a field of the body, not a shell line
        raise APIError(422, exc.message, f'send the same body with "model": one of them, e.g. '
                                         f'"model": {json.dumps(exc.models[0])}') from None
    return JSONResponse({"status": added.changed, "endpoint": added.endpoints[0]},
                        status_code=200 if added.changed == "replaced" else 201)


@router.delete("/endpoints/{name}")
async def remove_endpoint(request: Request, name: ModelPath) -> dict[str, Any]:
    """Forget an endpoint (after its requests in flight finish); it leaves the model lists and the default chain."""
    removed = await run_in_threadpool(request.app.state.library.remove_endpoint, check_model_name(name))
    return {"status": "removed", "endpoint": {"name": removed.name, "urls": removed.urls, "model": removed.model,
                                              "key_env": removed.key_env}}


@router.post("/model/switch/{name}")
async def switch(request: Request, name: ModelPath, body: Optional[SwitchRequest] = None) -> dict[str, Any]:
    """Make `name` the default model (requests naming `default` go to it), with optional fallbacks; persisted."""
    chain = [check_model_name(name), *(check_model_name(f) for f in (body.fallbacks if body else []))]
    try:
        await run_in_threadpool(request.app.state.library.use, chain)
    except LQMFError as exc:
        if type(exc) is LQMFError:  # a chain that names a model twice, or `default` itself
            raise APIError(422, exc.message, exc.hint) from None
        raise
    return active_answer(chain)


@router.get("/model/active")
async def active(request: Request) -> dict[str, Any]:
    """The default model and its fallbacks (null when none is set)."""
    return active_answer(await run_in_threadpool(request.app.state.library.default_chain))


def active_answer(chain: list[str]) -> dict[str, Any]:
    return {"model": chain[0] if chain else None, "fallbacks": chain[1:], "chain": chain}
