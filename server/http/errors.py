"""One translation of core errors into HTTP: status, JSON body with a message that says what to do."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from lqmf.base.errors import (
    ContextOverflow,
    EngineUnavailable,
    InsufficientMemory,
    InvalidRequest,
    LQMFError,
    ModelBusy,
    ModelLoadError,
    ModelNotFound,
    OutputExists,
    QueueFull,
    RemoteError,
    ShuttingDown,
)
from lqmf.base.names import MODEL_NAME_PATTERN
from server.http.durations import DURATION_PATTERN

log = logging.getLogger(__name__)

RETRY_AFTER_S = "2"


class APIError(LQMFError):
    """An error raised by a route itself, with its HTTP status."""

    def __init__(self, status: int, message: str, hint: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.headers = headers or {}


class ClientGone(LQMFError):
    """The client disconnected before its answer was ready (logged as nginx's 499; nobody reads the body)."""


# Core error -> (status, extra headers). Order matters: the first isinstance match wins.
STATUS_FOR: list[tuple[type[BaseException], int, dict[str, str]]] = [
    (ClientGone, 499, {}),
    (ModelNotFound, 404, {}),
    (OutputExists, 409, {}),
    (ContextOverflow, 400, {}),
    (QueueFull, 503, {"Retry-After": RETRY_AFTER_S}),
    (ModelBusy, 503, {"Retry-After": RETRY_AFTER_S}),
    (InsufficientMemory, 503, {"Retry-After": RETRY_AFTER_S}),
    (ShuttingDown, 503, {}),
    (EngineUnavailable, 503, {"Retry-After": RETRY_AFTER_S}),
    (ModelLoadError, 422, {}),
    (InvalidRequest, 422, {}),
    (LQMFError, 400, {}),
]


class ErrorDetail(BaseModel):
    message: str
    hint: str = ""
    type: str
    code: int
    error_id: Optional[str] = None


class ErrorBody(BaseModel):
    """Every error outside /api/: OpenAI's shape, with the hint and (for a 500) the id to find it in the log."""

    error: ErrorDetail


class OllamaErrorBody(BaseModel):
    """Every error under /api/: Ollama's shape."""

    error: str


def documented_errors(model: type[BaseModel], *statuses: int) -> dict[Union[int, str], dict[str, Any]]:
    """OpenAPI `responses` for a router: these error statuses, each with `model` as its body."""
    return {status: {"model": model, "description": "error"} for status in statuses}



def error_body(request_path: str, status: int, message: str, hint: str, kind: str,
               error_id: Optional[str] = None) -> dict[str, Any]:
    """OpenAI-style {"error": {...}}; Ollama routes get Ollama's {"error": "text"}.

    The message carries the hint too: clients show only the message.
    """
    text = f"{message} ({hint})" if hint else message
    if request_path.startswith("/api/"):
        return {"error": text}
    detail: dict[str, Any] = {"message": text, "hint": hint, "type": kind, "code": status}
    if error_id:
        detail["error_id"] = error_id
    return {"error": detail}


def unexpected(request_path: str, exc: BaseException) -> tuple[str, dict[str, Any]]:
    """Log an unexpected error's traceback under a fresh id; the body names the id, never the exception's text."""
    error_id = uuid.uuid4().hex[:12]
    log.error("error %s on %s: %s", error_id, request_path, exc, exc_info=exc)
    body = error_body(request_path, 500, f"internal error {error_id}",
                      f"this is a bug in LQMF: logs/lqmf.log has error {error_id}", "InternalError", error_id)
    return error_id, body


def error_payload(request_path: str, exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for an error: core errors by STATUS_FOR, anything else a logged 500 with an id."""
    if not isinstance(exc, LQMFError):
        _, body = unexpected(request_path, exc)
        return 500, body, {}
    if isinstance(exc, APIError):
        status, headers = exc.status, exc.headers
    elif isinstance(exc, RemoteError):  # the gateway's answer for what the remote did
        status, headers = exc.status, {"Retry-After": exc.retry_after} if exc.retry_after else {}
    else:
        status, headers = next((s, h) for cls, s, h in STATUS_FOR if isinstance(exc, cls))
    return status, error_body(request_path, status, exc.message, exc.hint, type(exc).__name__), headers


def to_response(request: Request, exc: BaseException) -> JSONResponse:
    """The HTTP answer to an error."""
    status, body, headers = error_payload(request.url.path, exc)
    return JSONResponse(body, status_code=status, headers=headers)


def _problem(error: dict[str, Any]) -> str:
    """One validation error in words; a pattern a person cannot read is replaced by what it means."""
    where = ".".join(str(p) for p in error["loc"] if p != "body") or "body"
    if error.get("type") == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern")
        shown = repr(error.get("input"))[:80]
        if pattern == MODEL_NAME_PATTERN:
            return (f"{where}: invalid model name {shown}: model names are letters, digits and . _ + - "
                    f"(no paths; see GET /models/available)")
        if pattern == DURATION_PATTERN:
            return f"{where}: {shown} is not a duration: use seconds, '5m', '1h30m', '250ms', '-1' or 0"
    return f"{where}: {error['msg']}"


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON; nothing the client sends can produce a 500."""

    @app.exception_handler(LQMFError)
    async def _core(request: Request, exc: LQMFError) -> JSONResponse:
        return to_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(_problem(e) for e in exc.errors()[:10])
        body = error_body(request.url.path, 422, f"invalid request: {problems}",
                          "see /docs for the expected fields", "RequestValidationError")
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint = "see /docs for the endpoints" if exc.status_code in (404, 405) else ""
        body = error_body(request.url.path, exc.status_code, str(exc.detail), hint, "HTTPException")
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return to_response(request, exc)
