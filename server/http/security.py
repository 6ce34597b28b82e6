"""API key, body size limit, Host and Origin checks, and the bind-address rule."""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from typing import Iterable, Optional

from lqmf.base.errors import LQMFError
from server.http.asgi import HTTPMiddleware

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


async def _reject(send, scope, status: int, message: str, hint: str, headers: list | None = None) -> None:
    """Answer before the app runs, in the error shape of the path (Ollama's under /api/, OpenAI's elsewhere)."""
    from server.http.errors import error_body

    body = json.dumps(error_body(scope["path"], status, message, hint, "RequestRejected")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class APIKeyMiddleware(HTTPMiddleware):
    """When a key is configured, every path but /health needs `Authorization: Bearer KEY` or `x-api-key`."""

    def __init__(self, app, api_key: Optional[str]) -> None:
        super().__init__(app)
        self.key = api_key.encode() if api_key else None

    async def http(self, scope, receive, send) -> None:
        if self.key is None or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if auth.lower().startswith(b"bearer "):
            given = auth[7:].strip()
        if not given or not hmac.compare_digest(given, self.key):
            await _reject(send, scope, 401, "missing or wrong API key",
                          "send 'Authorization: Bearer <LQMF_API_KEY>' or 'x-api-key: <LQMF_API_KEY>'",
                          [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware(HTTPMiddleware):
    """Refuse bodies over the limit, by Content-Length or as they stream in."""

    def __init__(self, app, limit: int) -> None:
        super().__init__(app)
        self.limit = limit

    async def http(self, scope, receive, send) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        hint = f"send at most {self.limit} bytes (LQMF_MAX_BODY_BYTES)"
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _reject(send, scope, 413, f"request body of {int(declared)} bytes is too large", hint)
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
            await _reject(send, scope, 413, f"request body over {self.limit} bytes", hint)


class _BodyTooLarge(Exception):
    pass


class OllamaContentTypeMiddleware(HTTPMiddleware):
    """Ollama reads a body as JSON whatever its Content-Type (`curl -d` sends a form type); so do we, for curl and SDKs.

    A browser may POST text/plain cross-origin without a preflight, so laundering that into JSON would hand any web
    page the API: only requests with no Origin (curl, SDKs) or an allowed one get the convenience.
    """

    def __init__(self, app, policy: Optional["CrossSitePolicy"] = None) -> None:
        super().__init__(app)
        self.policy = policy

    async def http(self, scope, receive, send) -> None:
        if scope["path"].startswith("/api/") and scope["method"] == "POST":
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            trusted = origin is None or (
                self.policy is not None
                and self.policy.origin_allowed(origin.decode("latin-1"), headers.get(b"host", b"").decode("latin-1"))
            )
            if trusted:
                kept = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                # In place, not a copy: the router records the matched route in this same scope, and the
                # metrics middleware outside reads it from there (a copy left every /api/* "unmatched").
                scope["headers"] = kept + [(b"content-type", b"application/json")]
        await self.app(scope, receive, send)


# Origins a web page cannot forge: the loopback web origins on any port, and the schemes desktop shells
# (Electron, Tauri, VS Code webviews) give their local pages, as OLLAMA_ORIGINS allows by default.
# Never "null": any page can make a sandboxed iframe that sends it.
DEFAULT_ORIGINS = tuple(
    f"{scheme}://{host}{port}"
    for scheme in ("http", "https") for host in ("localhost", "127.0.0.1", "[::1]") for port in ("", ":*")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")

# Probes (kubelet, load balancers, docker healthcheck) send whatever Host they were set up with, and the
# answer is one word, so a rebound page learns nothing a port scan would not.
UNGUARDED_PATHS = frozenset({"/health"})

_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})


def _host_name(host_header: str) -> str:
    """'LocalHost.:8000' -> 'localhost', '[::1]:8000' -> '::1': the name alone, lower case, no port."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _origin_pattern(origin: str) -> str:
    """One LQMF_ORIGINS entry as a regex; `*` stands for any run of characters within the origin (no '/')."""
    origin = origin.strip().lower().rstrip("/")
    return "".join(r"[^/\s]*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", origin))


@dataclass(frozen=True)
class CrossSitePolicy:
    """Which Host and Origin headers the server answers; built once per app from the settings."""

    hosts: frozenset[str]
    host_suffixes: tuple[str, ...]
    any_host: bool
    origins: re.Pattern[str]
    any_origin: bool

    @classmethod
    def build(cls, bind_host: str, allowed_hosts: Iterable[str], origins: Iterable[str]) -> "CrossSitePolicy":
        """The loopback defaults plus the bound host, this machine's name, and the configured extras."""
        extra_hosts = [_host_name(h) if not h.strip().startswith(("*.", ".")) else h.strip().lower()
                       for h in allowed_hosts]
        hosts = {"localhost", _host_name(bind_host)} - _ANY_ADDRESS
        machine = socket.gethostname().lower()
        if machine:
            hosts |= {machine, f"{machine}.local"}
        hosts |= {h for h in extra_hosts if not h.startswith(("*.", "."))}
        suffixes = (".localhost",) + tuple("." + h.lstrip("*.") for h in extra_hosts if h.startswith(("*.", ".")))
        extra_origins = [o.strip() for o in origins]
        patterns = [_origin_pattern(o) for o in (*DEFAULT_ORIGINS, *extra_origins) if o != "*"]
        return cls(hosts=frozenset(hosts), host_suffixes=suffixes, any_host="*" in extra_hosts,
                   origins=re.compile("(?i)(?:" + "|".join(patterns) + ")"), any_origin="*" in extra_origins)

    def host_allowed(self, host_header: str, local_address: Optional[str]) -> bool:
        """Whether a request with this Host, arriving on this local address, may be answered (DNS rebinding)."""
        name = _host_name(host_header)
        if self.any_host or not name or name in self.hosts or name.endswith(self.host_suffixes):
            return True
        ip = _ip(name)
        if ip is None:
            return False
        if ip.is_loopback:
            return True
        # Rebinding needs a name the attacker's DNS answers for; an address cannot be rebound. A request that came
        # in over the network (the server is bound beyond loopback) may name us by any address: LAN clients, NAT
        # and container port maps all do.
        local = _ip(local_address or "")
        return local is not None and not local.is_loopback

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """Whether a request from a page of this Origin may be answered (no Origin at all is checked by the caller)."""
        origin = origin.strip().lower()
        if self.any_origin or self.origins.fullmatch(origin):
            return True
        # Same origin (the docs page, reached by whatever name passed the Host check): browsers send Origin on
        # every POST, even to the page's own server.
        scheme, _, rest = origin.partition("://")
        return scheme in ("http", "https") and bool(rest) and rest == host_header.strip().lower()

    def cors_options(self) -> dict:
        """CORSMiddleware arguments that agree with origin_allowed (same list, same wildcards)."""
        if self.any_origin:
            return {"allow_origins": ["*"]}
        return {"allow_origins": [], "allow_origin_regex": self.origins.pattern}


class CrossSiteMiddleware(HTTPMiddleware):
    """Before the body is read, refuse a Host outside the allowlist (DNS rebinding) and a foreign Origin."""

    def __init__(self, app, policy: CrossSitePolicy) -> None:
        super().__init__(app)
        self.policy = policy

    async def http(self, scope, receive, send) -> None:
        if scope["path"] in UNGUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        host = b""
        origins: list[bytes] = []
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"origin":
                origins.append(value)
        host_text = host.decode("latin-1")
        local = scope.get("server")
        if not self.policy.host_allowed(host_text, local[0] if local else None):
            name = _host_name(host_text)[:200]
            await _reject(send, scope, 403, f"Host '{name}' is not allowed (DNS rebinding protection)",
                          f"if this server really is reached by that name, add it to LQMF_ALLOWED_HOSTS (comma or "
                          f"JSON list; '*' turns the check off), e.g. LQMF_ALLOWED_HOSTS={name}")
            return
        # Every method, not only the state-changing ones: a page's fetch() always sends Origin, a plain link never
        # does, so refusing here costs curl and SDKs nothing and leaves no GET that a page can drive.
        for raw in origins:
            origin = raw.decode("latin-1")
            if not self.policy.origin_allowed(origin, host_text):
                shown = origin[:200]
                await _reject(send, scope, 403, f"Origin '{shown}' is not allowed (cross-site request)",
                              f"to let pages from it use this server, add it to LQMF_ORIGINS "
                              f"(comma or JSON list, '*' wildcards; '*' alone allows any), e.g. LQMF_ORIGINS={shown}")
                return
        await self.app(scope, receive, send)
