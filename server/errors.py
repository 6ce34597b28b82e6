"""One translation of core errors into HTTP: status, JSON body with a message that says what to do."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lqmf.errors import (
    ContextOverflow,
    InsufficientMemory,
    LQMFError,
    ModelBusy,
    ModelLoadError,
    ModelNotFound,
    QueueFull,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = "2"


class APIError(LQMFError):
    """An error raised by a route itself, with its HTTP status."""

    def __init__(self, status: int, message: str, hint: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.headers = headers or {}


# Core error -> (status, extra headers). Order matters: the first isinstance match wins.
STATUS_FOR: list[tuple[type[BaseException], int, dict[str, str]]] = [
    (ModelNotFound, 404, {}),
    (ContextOverflow, 400, {}),
    (QueueFull, 503, {"Retry-After": RETRY_AFTER_S}),
    (ModelBusy, 503, {"Retry-After": RETRY_AFTER_S}),
    (InsufficientMemory, 503, {"Retry-After": RETRY_AFTER_S}),
    (ModelLoadError, 422, {}),
    (ValueError, 422, {}),
    (LQMFError, 400, {}),
]


def error_body(request_path: str, status: int, message: str, hint: str, kind: str) -> dict[str, Any]:
    """OpenAI-style {"error": {...}}; Ollama routes get Ollama's {"error": "text"}.

    The message carries the hint too: clients show only the message.
    """
    text = f"{message} ({hint})" if hint else message
    if request_path.startswith("/api/"):
        return {"error": text}
    return {"error": {"message": text, "hint": hint, "type": kind, "code": status}}


def to_response(request: Request, exc: BaseException) -> JSONResponse:
    if isinstance(exc, APIError):
        status, headers = exc.status, exc.headers
    else:
        status, headers = next((s, h) for cls, s, h in STATUS_FOR if isinstance(exc, cls))
    message = exc.message if isinstance(exc, LQMFError) else str(exc)
    hint = exc.hint if isinstance(exc, LQMFError) else "check the request's parameters"
    return JSONResponse(
        error_body(request.url.path, status, message, hint, type(exc).__name__), status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON; nothing the client sends can produce a 500."""

    @app.exception_handler(LQMFError)
    async def _core(request: Request, exc: LQMFError) -> JSONResponse:
        return to_response(request, exc)

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        return to_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
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
        log.exception("unhandled error on %s", request.url.path)
        body = error_body(request.url.path, 500, f"internal error: {exc}", "see logs/lqmf.log", type(exc).__name__)
        return JSONResponse(body, status_code=500)
