"""The history over HTTP: the latest benchmark summary, experiments and quantization runs."""

from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from lqmf.base.sampling import JSON_SAFE_INT
from server.http.errors import APIError

router = APIRouter(tags=["experiments"])
Status = Literal["running", "done", "failed", "incomplete"]


@router.get("/benchmark/summary")
async def summary(request: Request) -> dict[str, Any]:
    """The fastest and the most faithful model, each among figures measured the same way, of models that exist."""
    out = await run_in_threadpool(request.app.state.library.benchmark_summary)
    out["auto_benchmark_every"] = request.app.state.settings.auto_benchmark_every
    return out


@router.get("/experiments")
async def experiments(request: Request, kind: Optional[str] = Query(None, max_length=64),
                      model: Optional[str] = Query(None, max_length=256),
                      status: Optional[Status] = None, limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    """Recorded experiments, newest first, filtered by kind, model or status."""
    rows = await run_in_threadpool(request.app.state.library.experiment_rows, kind, model, status, limit)
    return {"experiments": rows}


@router.get("/experiments/{experiment_id}")
async def experiment(request: Request, experiment_id: int = Path(ge=1, le=JSON_SAFE_INT)) -> dict[str, Any]:
    """One experiment with every recorded result."""
    row = await run_in_threadpool(request.app.state.library.experiment_with_results, experiment_id)
    if row is None:
        raise APIError(404, f"no experiment {experiment_id}", "GET /experiments lists them")
    return row


@router.get("/quantizations")
async def quantizations(request: Request, method: Optional[str] = Query(None, max_length=64),
                        status: Optional[Status] = None, limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    """Recorded quantization runs, newest first: plan, status, manifest, duration and peak memory."""
    rows = await run_in_threadpool(request.app.state.library.quantization_runs, method, status, limit)
    return {"quantizations": rows}
