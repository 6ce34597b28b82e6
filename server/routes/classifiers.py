"""Embedding classifiers over HTTP: list them, read one's manifest, predict (embed through the manager, classify)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from agents.classifiers.errors import ClassifierNotFound, ClassifierRefused, DataError
from lqmf.errors import LQMFError
from server.errors import APIError
from server.schemas import ClassifierPath, ClassifyRequest, parse_keep_alive

router = APIRouter(tags=["classifiers"])

# The classifier errors' statuses; anything else goes through server/errors.py's table.
STATUS: tuple[tuple[type[LQMFError], int], ...] = (
    (ClassifierNotFound, 404),
    (ClassifierRefused, 409),  # unsafe file, missing or changed embedding model, dimension mismatch
    (DataError, 422),
)


async def _run(fn, *args) -> Any:
    """Run blocking classifier work off the event loop; classifier errors get their HTTP status."""
    try:
        return await run_in_threadpool(fn, *args)
    except tuple(cls for cls, _ in STATUS) as exc:
        status = next(code for cls, code in STATUS if isinstance(exc, cls))
        raise APIError(status, exc.message, exc.hint) from None


@router.get("/classifiers")
async def classifiers(request: Request) -> dict[str, Any]:
    """Every saved classifier: its embedding model and sha256, labels, algorithm, accuracy (or why it is unusable)."""
    return {"classifiers": await _run(request.app.state.classifiers.list)}


@router.get("/classifiers/{name}")
async def classifier(request: Request, name: ClassifierPath) -> dict[str, Any]:
    """One classifier's manifest, after its safety check (the file's hash and skops' trusted types)."""
    loaded = await _run(request.app.state.classifiers.get, name)
    return {"name": name, "manifest": loaded.manifest.to_dict()}


@router.post("/classifiers/{name}/predict")
async def predict(request: Request, name: ClassifierPath, body: ClassifyRequest) -> dict[str, Any]:
    """Labels and probabilities for a text or texts; the embedding model is loaded through the manager.

    409: the classifier failed its safety check, or its embedding model is missing, changed since
    training (sha256) or makes vectors of another dimension.
    """
    registry = request.app.state.classifiers
    keep_alive = parse_keep_alive(body.keep_alive)
    out = await _run(registry.predict, name, body.inputs(), keep_alive)
    if body.text is not None:
        out["label"] = out["predictions"][0]["label"]
        out["probabilities"] = out["predictions"][0]["probabilities"]
    return out
