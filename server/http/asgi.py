"""The shape every LQMF middleware shares: pure ASGI, acting on HTTP requests alone."""

from __future__ import annotations


class HTTPMiddleware:
    """Pure ASGI middleware (not BaseHTTPMiddleware, which buffers and re-wraps streamed bodies) that acts on
    HTTP requests alone; lifespan and websocket scopes go straight on to the app."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope, receive, send) -> None:
        """Handle one HTTP request; `await self.app(scope, receive, send)` passes it on."""
        await self.app(scope, receive, send)
