"""create_app(): the FastAPI face of the core. All state lives on app.state, made in the factory."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from lqmf.api import Library
from lqmf.base.errors import LQMFError
from lqmf.base.settings import Settings
from lqmf.base.version import __version__
from server.http.errors import ErrorBody, OllamaErrorBody, documented_errors, install_error_handlers
from server.http.metrics import Metrics, MetricsMiddleware
from server.http.routes import benchmark, classifiers, compare, endpoints, native, ollama, openai, ops
from server.http.routes.links import install_links
from server.http.security import (
    APIKeyMiddleware,
    BodyLimitMiddleware,
    CrossSiteMiddleware,
    CrossSitePolicy,
    OllamaContentTypeMiddleware,
)
from server.http.streaming import InFlight, RoutedModelHeaders
from server.http.usage import Usage

log = logging.getLogger(__name__)

ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504)


def create_app(settings: Settings, library: Optional[Library] = None) -> FastAPI:
    """The API app over `library` (the shell's, so both share one manager and one history store; made, and closed
    at shutdown, when not given). Every route reaches the work through it."""
    owns_library = library is None
    library = library or Library(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        preload = asyncio.create_task(_preload(app))
        health = asyncio.create_task(_probe_endpoints(app))
        try:
            yield
        finally:
            preload.cancel()
            health.cancel()
            await run_in_threadpool(app.state.usage.close)
            if owns_library:  # its manager and its history store with it
                await run_in_threadpool(library.close)

    app = FastAPI(
        title="LQMF API", version=__version__, lifespan=lifespan,
        description="Local Quantized Model Factory: native, OpenAI- and Ollama-compatible endpoints.",
    )
    app.state.settings = settings
    app.state.library = library
    app.state.started_at = time.time()
    app.state.ready = threading.Event()
    app.state.metrics = Metrics(library.loaded, library.load_counts)
    app.state.usage = Usage(app.state.metrics, library, library.auto_benchmark(settings.auto_benchmark_every))
    install_error_handlers(app)
    app.state.in_flight = InFlight()
    # The error bodies are part of the published contract (schemathesis checks responses against it).
    for router in (native.router, openai.router, ops.router, compare.router, benchmark.router, classifiers.router,
                   endpoints.router):
        app.include_router(router, responses=documented_errors(ErrorBody, *ERROR_STATUSES))
    app.include_router(ollama.router, responses=documented_errors(OllamaErrorBody, *ERROR_STATUSES))
    install_links(app)  # which operation takes the name another one made, renamed or removed
    # Added innermost first: metrics see every response, including the ones the outer layers refuse.
    cross_site = CrossSitePolicy.build(settings.host, settings.allowed_hosts, settings.origins)
    app.add_middleware(RoutedModelHeaders)
    app.add_middleware(OllamaContentTypeMiddleware, policy=cross_site)
    app.add_middleware(CORSMiddleware, **cross_site.cors_options(),
                       allow_methods=["GET", "POST", "DELETE", "OPTIONS"], allow_headers=["*"],
                       expose_headers=["X-LQMF-Model", "X-LQMF-Fallback-From"])
    app.add_middleware(APIKeyMiddleware, api_key=settings.api_key.get_secret_value() if settings.api_key else None)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(CrossSiteMiddleware, policy=cross_site)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


async def _probe_endpoints(app: FastAPI) -> None:
    """Health-check every remote endpoint's members while the server runs (a dead one is skipped, a
    revived one used again)."""
    library: Library = app.state.library
    interval = app.state.settings.probe_interval_s
    while True:
        try:
            await run_in_threadpool(library.probe_endpoints)
        except LQMFError as exc:  # a broken endpoints file: said, and tried again next round
            log.error("cannot check the remote endpoints: %s", exc)
        await asyncio.sleep(interval)


async def _preload(app: FastAPI) -> None:
    """Load the configured models, then mark the server ready (/health answers 503 until then)."""
    library: Library = app.state.library
    # Which engine serves GGUF (a smoke check in child processes on a build not checked yet), before ready:
    # /health then reports it without waiting.
    await run_in_threadpool(library.engine_status)
    for name in app.state.settings.preload:
        try:
            await run_in_threadpool(library.load_exact, name, -1.0)
        except Exception as exc:  # a bad preload entry must not keep the server from starting
            log.error("could not preload %s: %s", name, exc)
    app.state.ready.set()
