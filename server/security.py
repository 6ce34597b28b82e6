"""API key, body size limit, and the bind-address rule."""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Optional

from lqmf.errors import LQMFError

OPEN_PATHS = frozenset({"/health"})


class InsecureBind(LQMFError):
    """Refusing to expose the server on the network without an API key."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: Optional[str], allow_insecure: bool) -> None:
    """Refuse a non-loopback bind without an API key unless explicitly overridden."""
    if not is_loopback(host) and not api_key and not allow_insecure:
        raise InsecureBind(
            f"refusing to listen on {host} without an API key: anyone on the network could use the models",
            "set LQMF_API_KEY, bind 127.0.0.1, or set LQMF_ALLOW_INSECURE_BIND=1 if you really mean it",
        )


async def _reject(send, status: int, message: str, hint: str, headers: list | None = None) -> None:
    body = json.dumps({"error": {"message": message, "hint": hint, "type": "RequestRejected", "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class APIKeyMiddleware:
    """Pure ASGI: when a key is configured, every path but /health needs `Authorization: Bearer KEY` or `x-api-key`."""

    def __init__(self, app, api_key: Optional[str]) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.key is None or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if auth.lower().startswith(b"bearer "):
            given = auth[7:].strip()
        if not given or not hmac.compare_digest(given, self.key):
            await _reject(send, 401, "missing or wrong API key",
                          "send 'Authorization: Bearer <LQMF_API_KEY>' or 'x-api-key: <LQMF_API_KEY>'",
                          [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Pure ASGI: refuse bodies over the limit, by Content-Length or as they stream in."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        hint = f"send at most {self.limit} bytes (LQMF_MAX_BODY_BYTES)"
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _reject(send, 413, f"request body of {int(declared)} bytes is too large", hint)
            return
        seen = 0
        too_large = False

        async def limited_receive():
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _reject(send, 413, f"request body over {self.limit} bytes", hint)


class _BodyTooLarge(Exception):
    pass


class OllamaContentTypeMiddleware:
    """Ollama accepts JSON bodies whatever their Content-Type (its docs use plain `curl -d`); so do we."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/") and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": headers + [(b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
