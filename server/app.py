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

import lqmf
from agents.auto_benchmark import AutoBenchmark
from agents.experiment_agent import ExperimentAgent
from memory.store import Store
from lqmf.settings import Settings
from server.errors import install_error_handlers
from server.manager import ModelManager
from server.metrics import Metrics, MetricsMiddleware
from server.routes import benchmark, compare, native, ollama, ops, openai
from server.usage import Usage
from server.security import APIKeyMiddleware, BodyLimitMiddleware, OllamaContentTypeMiddleware

log = logging.getLogger(__name__)

LOCALHOST_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"


def create_app(settings: Settings, manager: Optional[ModelManager] = None) -> FastAPI:
    """The API app over `manager` (made, and closed at shutdown, when not given)."""
    owns_manager = manager is None
    manager = manager or ModelManager(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        preload = asyncio.create_task(_preload(app))
        try:
            yield
        finally:
            preload.cancel()
            await run_in_threadpool(app.state.usage.close)
            store.close()
            if owns_manager:
                await run_in_threadpool(manager.close)

    app = FastAPI(
        title="LQMF API", version=lqmf.__version__, lifespan=lifespan,
        description="Local Quantized Model Factory: native, OpenAI- and Ollama-compatible endpoints.",
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.started_at = time.time()
    app.state.ready = threading.Event()
    app.state.metrics = Metrics(manager.loaded)
    store = Store(settings.db_path)
    app.state.store = store
    app.state.experiments = ExperimentAgent(settings, manager, store)
    auto_benchmark = AutoBenchmark(app.state.experiments, settings.auto_benchmark_every)
    app.state.usage = Usage(app.state.metrics, store, auto_benchmark)
    install_error_handlers(app)
    for router in (native.router, openai.router, ollama.router, ops.router, compare.router, benchmark.router):
        app.include_router(router)
    # Added innermost first: metrics see every response, including the ones the outer layers refuse.
    app.add_middleware(OllamaContentTypeMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                       allow_origin_regex=None if settings.cors_origins else LOCALHOST_ORIGINS,
                       allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"])
    app.add_middleware(APIKeyMiddleware, api_key=settings.api_key.get_secret_value() if settings.api_key else None)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


async def _preload(app: FastAPI) -> None:
    """Load the configured models, then mark the server ready (/health answers 503 until then)."""
    manager: ModelManager = app.state.manager
    for name in app.state.settings.preload:
        try:
            await run_in_threadpool(manager.load, name, -1.0)
        except Exception as exc:  # a bad preload entry must not keep the server from starting
            log.error("could not preload %s: %s", name, exc)
    app.state.ready.set()
