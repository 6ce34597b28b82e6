"""Embedding classifiers over HTTP: list them, read one's manifest, predict (embed through the manager, classify),
check one on quantized variants."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from lqmf.base.errors import LQMFError
from lqmf.serving_types import ClassifierNotFound, ClassifierRefused, DataError
from server.http.errors import APIError
from server.http.schemas import ClassifierCheckRequest, ClassifierPath, ClassifyRequest, parse_keep_alive

router = APIRouter(tags=["classifiers"])

# The classifier errors' statuses; anything else goes through server/http/errors.py's table.
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
    """Every saved classifier: its embedding model and sha256, labels, algorithm, accuracy, whether that is clearly
    above chance (`above_chance`, `warning`), or why it is unusable."""
    return {"classifiers": (await _run(request.app.state.library.classifiers)).classifiers}


@router.get("/classifiers/{name}")
async def classifier(request: Request, name: ClassifierPath) -> dict[str, Any]:
    """One classifier's manifest, after its safety check (the file's hash and skops' trusted types), and whether
    its cross-validated accuracy is clearly above chance (`above_chance`: false with a `warning` saying why; null
    when not measured), the figures behind that in `chance`."""
    loaded = await _run(request.app.state.library.classifier, name)
    verdict = loaded.manifest.verdict()
    return {"name": name, **verdict.fields(), "chance": verdict.to_dict(), "manifest": loaded.manifest.to_dict()}


@router.post("/classifiers/{name}/predict")
async def predict(request: Request, name: ClassifierPath, body: ClassifyRequest) -> dict[str, Any]:
    """Labels and probabilities for a text or texts; the embedding model is loaded through the manager.
    `above_chance` false (with a `warning`): the classifier's cross-validated accuracy is not clearly above chance,
    so its labels and probabilities mean little.

    409: the classifier failed its safety check, or its embedding model is missing, changed since
    training (sha256) or makes vectors of another dimension.
    """
    keep_alive = parse_keep_alive(body.keep_alive)
    out = await _run(request.app.state.library.classifier_predictions, name, body.inputs(), keep_alive)
    if body.text is not None:
        out["label"] = out["predictions"][0]["label"]
        out["probabilities"] = out["predictions"][0]["probabilities"]
    return out


@router.post("/classifiers/{name}/check")
async def check(request: Request, name: ClassifierPath, body: ClassifierCheckRequest) -> dict[str, Any]:
    """The classifier on each variant's embeddings of its held-out split, or of the labelled file in `data`:
    accuracy, macro F1, agreement with its own model's labels, cosine to its own model's vectors, texts/s.
    Recorded as a classifier-check experiment, with an HTML report.

    The file is sent, never read from the server's disk. 422: its columns are not the classifier's training
    columns (the message names both), it has labels the classifier never saw (unless drop_unknown_labels), or it
    is empty or not UTF-8. 404: no such classifier or model; 409: the classifier or its model is refused.
    """
    data = body.data
    result = await _run(partial(request.app.state.library.check_classifier, name, body.models,
                                data_file=data.name if data else None, data_content=data.content if data else None,
                                drop_unknown_labels=body.drop_unknown_labels))
    return result.report
