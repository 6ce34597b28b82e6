"""An endpoint's members and their health: probes (GET /models), and routing a request to the member with the
fewest requests outstanding among those up."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from lqmf.base.errors import RemoteError
from server.runtime.endpoint_spec import Endpoint

log = logging.getLogger(__name__)


@dataclass
class Probe:
    """One GET /models of a member: whether it answered, how fast, and what it serves."""

    ok: bool
    latency_s: float
    at: float
    models: list[dict[str, Any]] = field(default_factory=list)
    error: Optional[str] = None
    status: Optional[int] = None  # the HTTP status, when the member answered

    def ids(self) -> list[str]:
        return [str(m.get("id")) for m in self.models if m.get("id") is not None]


def probe_member(url: str, key: Optional[str], timeout: float) -> Probe:
    """GET {url}/models now."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    start = time.perf_counter()
    try:
        response = httpx.get(f"{url}/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Probe(False, time.perf_counter() - start, time.time(), error=f"unreachable ({describe_http_error(exc)})")
    except (OSError, UnicodeError) as exc:  # the resolver's own errors, which httpx passes on unwrapped
        log.warning("probe of %s failed below HTTP: %r", url, exc)
        return Probe(False, time.perf_counter() - start, time.time(), error=f"unreachable ({describe_http_error(exc)})")
    latency = time.perf_counter() - start
    if response.status_code != 200:
        return Probe(False, latency, time.time(), error=f"GET /models answered HTTP {response.status_code}",
                     status=response.status_code)
    try:
        data = response.json().get("data")
        models = [m for m in data if isinstance(m, dict)] if isinstance(data, list) else None
    except (ValueError, AttributeError):
        models = None
    if models is None:
        return Probe(False, latency, time.time(), error="GET /models did not answer an OpenAI model list")
    return Probe(True, latency, time.time(), models)


def describe_http_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "…"


@dataclass
class Member:
    """One server of an endpoint, with its requests in flight and its last probe."""

    url: str
    outstanding: int = 0
    probe: Optional[Probe] = None
    failed: Optional[str] = None  # a request's failure: skipped until a probe finds it up again
    served: int = 0

    @property
    def healthy(self) -> bool:
        return self.failed is None and (self.probe is None or self.probe.ok)

    @property
    def known_up(self) -> bool:
        return self.failed is None and self.probe is not None and self.probe.ok

    def status(self) -> dict[str, Any]:
        p = self.probe
        return {"url": self.url, "health": "up" if self.known_up else "down" if not self.healthy else "unknown",
                "latency_ms": round(p.latency_s * 1000, 1) if p and p.ok else None,
                "error": self.failed or (p.error if p else None), "outstanding": self.outstanding,
                "served": self.served, "probed_at": p.at if p else None}


class Fleet:
    """An endpoint's members, routed by least outstanding requests among the healthy ones."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        # A broken entry has no members: its URLs are never probed nor routed to.
        self.members = [] if endpoint.broken else [Member(u) for u in endpoint.urls]
        self._lock = threading.Lock()
        self._turn = 0

    @property
    def name(self) -> str:
        return self.endpoint.name

    def acquire(self, tried: Iterable[str] = ()) -> Member:
        """The member to send the next request to (counted as outstanding until release())."""
        tried = set(tried)
        with self._lock:
            candidates = [m for m in self.members if m.healthy and m.url not in tried]
            if not candidates:
                raise self.down_error()
            least = min(m.outstanding for m in candidates)
            ties = [m for m in candidates if m.outstanding == least]
            member = ties[self._turn % len(ties)]  # round robin among equals
            self._turn += 1
            member.outstanding += 1
            return member

    def has_other(self, tried: Iterable[str]) -> bool:
        """Whether a healthy member not in `tried` is left."""
        tried = set(tried)
        with self._lock:
            return any(m.healthy and m.url not in tried for m in self.members)

    def release(self, member: Member, error: Optional[str] = None) -> None:
        with self._lock:
            member.outstanding -= 1
            if error is None:
                member.served += 1
            else:
                member.failed = error
                log.warning("endpoint %s: member %s marked down: %s", self.name, member.url, error)

    def down_error(self) -> RemoteError:
        if self.endpoint.broken:
            return RemoteError(f"endpoint {self.name} is broken: {self.endpoint.broken}",
                               f"fix its entry, or register it again: add endpoint {self.name} at URL", status=503)
        reasons = "; ".join(f"{m.url}: {m.failed or (m.probe.error if m.probe else 'not probed')}"
                            for m in self.members)
        if any(m.probe is not None and m.probe.status in (401, 403) for m in self.members):
            key_env = self.endpoint.key_env
            hint = (f"the key in ${key_env} was refused: set it to a key that server accepts" if key_env else
                    f"that server needs a key: add endpoint {self.name} at {self.endpoint.urls[0]} key from ENV_VAR")
            return RemoteError(f"endpoint {self.name} refused LQMF's key ({reasons})", hint, status=502)
        return RemoteError(f"endpoint {self.name} has no member up ({reasons})",
                           "start the server(s) behind it, or check `list endpoints`", status=503,
                           retry_after="5")

    def refresh(self, max_age_s: float, timeout: float, pool: Optional[ThreadPoolExecutor] = None) -> None:
        """Probe every member whose last probe is older than max_age_s (or that failed a request), in parallel."""
        now = time.time()
        stale = [m for m in self.members if m.failed or m.probe is None or now - m.probe.at >= max_age_s]
        if not stale:
            return
        try:
            key = self.endpoint.api_key()
        except RemoteError as exc:
            for m in stale:
                m.probe = Probe(False, 0.0, now, error=exc.message)
            return
        if pool is None or len(stale) == 1:
            probes = [probe_member(m.url, key, timeout) for m in stale]
        else:
            probes = list(pool.map(lambda m: probe_member(m.url, key, timeout), stale))
        with self._lock:
            for member, probe in zip(stale, probes, strict=True):
                member.probe = probe
                if probe.ok:
                    member.failed = None

    def health(self) -> str:
        if self.endpoint.broken:
            return "broken"
        up = sum(m.known_up for m in self.members)
        if up == len(self.members):
            return "up"
        return "down" if up == 0 else f"degraded ({up} of {len(self.members)} up)"

    def latency_ms(self) -> Optional[float]:
        values = [m.probe.latency_s * 1000 for m in self.members if m.known_up and m.probe]
        return round(min(values), 1) if values else None

    def served_models(self) -> list[str]:
        for m in self.members:
            if m.known_up and m.probe:
                return m.probe.ids()
        return []

    def remote_model(self) -> str:
        """The model id requests carry: the registered one, else the one model the server lists."""
        if self.endpoint.model:
            return self.endpoint.model
        ids = self.served_models()
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise self.down_error() if self.health() == "down" else RemoteError(
                f"endpoint {self.name} lists no model", "name one: add endpoint NAME at URL model M", status=502)
        raise RemoteError(f"endpoint {self.name} serves {len(ids)} models ({', '.join(ids[:8])})",
                          f"register one of them: add endpoint {self.name} at {self.endpoint.urls[0]} model "
                          f"{ids[0]}", status=502)

    def context_length(self) -> Optional[int]:
        """The window the server reports (vLLM's max_model_len), when it does."""
        for m in self.members:
            if m.known_up and m.probe:
                for entry in m.probe.models:
                    if entry.get("id") == self.endpoint.model or self.endpoint.model is None:
                        value = entry.get("max_model_len")
                        if isinstance(value, int) and value > 0:
                            return value
        return None

    def dialect(self) -> str:
        """Which sampling fields beyond OpenAI's the server takes (by what it says owns its models)."""
        for m in self.members:
            if m.probe and m.probe.models:
                owner = str(m.probe.models[0].get("owned_by", "")).lower()
                return {"llamacpp": "llama.cpp", "lqmf": "llama.cpp", "vllm": "vllm"}.get(owner, "openai")
        return "openai"

    def status(self) -> dict[str, Any]:
        return {**self.endpoint.public(), "health": self.health(), "latency_ms": self.latency_ms(),
                "members": [m.status() for m in self.members], "broken": self.endpoint.broken}
