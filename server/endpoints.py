"""Remote endpoints: OpenAI-compatible servers registered as models, alone or as a fleet under one name.

The registry lives in LQMF_HOME/endpoints.toml, written by `add endpoint` and POST /endpoints and
readable by hand:

    [endpoints.big]
    urls = ["http://10.0.0.5:8000/v1"]
    model = "Qwen/Qwen2.5-7B-Instruct-AWQ"   # optional: else the one model the server lists
    key_env = "VLLM_KEY"                        # optional: the key is read from this variable per request

Keys are never written anywhere: only the variable's name is. Each member is probed (GET /models)
when it is added, when it is listed after its last probe went stale, and every probe_interval_s
while a server runs; a member that fails a request is skipped until a probe finds it up again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from lqmf.errors import InvalidRequest, LQMFError, RemoteError
from lqmf.files import write_text_atomic

log = logging.getLogger(__name__)

KEY_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
REMOTE_MODEL = re.compile(r"^[^\s\x00-\x1f]{1,256}$")
LISTING_PROBE_TIMEOUT_S = 3.0  # a listing waits at most this long for stale probes
MAX_MEMBERS = 64


@dataclass(frozen=True)
class Endpoint:
    """One registered name: its member URLs (…/v1), the remote model id, and where its key comes from."""

    name: str
    urls: tuple[str, ...]
    model: Optional[str] = None
    key_env: Optional[str] = None

    def api_key(self) -> Optional[str]:
        """The key, read from its environment variable now; RemoteError when the variable is unset."""
        if not self.key_env:
            return None
        key = os.environ.get(self.key_env)
        if not key:
            raise RemoteError(f"endpoint {self.name} takes its key from ${self.key_env}, which is not set",
                              f"set {self.key_env} in the environment of the shell or server that calls it",
                              status=502)
        return key

    def public(self) -> dict[str, Any]:
        """What may be shown anywhere: never the key, only the variable it comes from."""
        return {"name": self.name, "urls": list(self.urls), "model": self.model, "key_env": self.key_env}


def normalize_url(url: str) -> str:
    """An http(s) base URL of an OpenAI-compatible API; a bare host gets /v1 (what every such server uses)."""
    url = url.strip()
    if not url or any(not ("!" <= c <= "~") for c in url):
        raise InvalidRequest(f"{url[:200]!r} has spaces, control or non-ASCII characters",
                             "give a plain http(s) URL (an international host name in its xn-- form)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:  # a bad port or a bracketed host that is no IP address
        raise InvalidRequest(f"{url[:200]!r} is not a valid URL ({exc})", "give e.g. http://10.0.0.5:8000/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{url!r} is not an http(s) URL", "give the server's base URL, e.g. http://10.0.0.5:8000/v1")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidRequest(f"{url!r} carries a query, fragment or credentials",
                             "give the bare base URL; a key goes in an environment variable (key from ENV_VAR)")
    path = parts.path.rstrip("/")
    normal = f"{parts.scheme}://{parts.netloc}{path or '/v1'}"
    try:
        import httpx

        httpx.URL(normal)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(f"{url[:200]!r} is not a valid URL ({exc})", "give e.g. http://10.0.0.5:8000/v1") from None
    return normal


def check_endpoint(name: str, urls: Iterable[str], model: Optional[str], key_env: Optional[str]) -> Endpoint:
    """A valid Endpoint from user input, or InvalidRequest that says what to change."""
    from lqmf.names import MODEL_NAME, MODEL_NAME_MAX

    if not name or len(name) > MODEL_NAME_MAX or not MODEL_NAME.match(name) or name.endswith(":latest") \
            or name == "default":
        raise InvalidRequest(f"{name!r} cannot name an endpoint",
                             "use letters, digits and . _ + - (not 'default', which means the active model)")
    members = tuple(dict.fromkeys(normalize_url(u) for u in urls))
    if not members:
        raise InvalidRequest(f"endpoint {name} has no URL", "add endpoint NAME at http://HOST:PORT/v1")
    if len(members) > MAX_MEMBERS:
        raise InvalidRequest(f"endpoint {name} has {len(members)} members, more than {MAX_MEMBERS}",
                             "split the fleet under several names")
    if model is not None and not REMOTE_MODEL.match(model):
        raise InvalidRequest(f"{model!r} is not a model id", "give the id the server lists under GET /v1/models")
    if key_env is not None and not KEY_ENV.match(key_env):
        raise InvalidRequest(f"{key_env!r} is not an environment variable name",
                             "give the variable's name (e.g. OPENAI_API_KEY), never the key itself")
    return Endpoint(name, members, model or None, key_env or None)


def remote_facts(record: Any) -> dict[str, Any]:
    """A listing entry's extra for a remote model: host, health, probe latency (clients ignore unknown keys)."""
    if getattr(record, "remote", None) is None:
        return {}
    return {"remote": {"host": record.display.get("host"), "health": record.remote["health"],
                       "latency_ms": record.remote["latency_ms"]}}


# -- the config file -------------------------------------------------------------------------------

def parse_config(text: str, path: Path) -> dict[str, Endpoint]:
    """Endpoints from the TOML text; LQMFError naming the file and the entry that is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LQMFError(f"{path} is not valid TOML: {exc}",
                        "fix the file or remove it (see docs/SCALE_OUT.md)") from exc
    table = data.get("endpoints", {})
    if not isinstance(table, dict):
        raise LQMFError(f"{path}: 'endpoints' must be a table of [endpoints.NAME] entries", "see docs/SCALE_OUT.md")
    out: dict[str, Endpoint] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise LQMFError(f"{path}: [endpoints.{name}] must be a table", "see docs/SCALE_OUT.md")
        unknown = set(entry) - {"url", "urls", "model", "key_env"}
        if unknown:
            raise LQMFError(f"{path}: [endpoints.{name}] has unknown keys {sorted(unknown)}",
                            "use url or urls, model, key_env (never a key itself)")
        urls = entry.get("urls", [entry["url"]] if "url" in entry else [])
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise LQMFError(f"{path}: [endpoints.{name}] urls must be a list of strings", 'urls = ["http://HOST:PORT/v1"]')
        try:
            out[name] = check_endpoint(name, urls, entry.get("model"), entry.get("key_env"))
        except InvalidRequest as exc:
            raise LQMFError(f"{path}: [endpoints.{name}]: {exc.message}", exc.hint) from None
    return out


def _toml_string(value: str) -> str:
    # A JSON string of printable text is a TOML basic string (validated values have no control characters).
    return json.dumps(value, ensure_ascii=False)


def render_config(endpoints: dict[str, Endpoint]) -> str:
    lines = ["# LQMF remote endpoints (see docs/SCALE_OUT.md). Keys are never stored: key_env names the",
             "# environment variable each request reads the key from.", ""]
    for e in endpoints.values():
        lines.append(f"[endpoints.{_toml_string(e.name)}]")
        lines.append(f"urls = [{', '.join(_toml_string(u) for u in e.urls)}]")
        if e.model:
            lines.append(f"model = {_toml_string(e.model)}")
        if e.key_env:
            lines.append(f"key_env = {_toml_string(e.key_env)}")
        lines.append("")
    return "\n".join(lines)


class EndpointConfig:
    """The endpoints file, re-read when it changes on disk (the shell and a server share it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: Optional[tuple[int, int]] = None
        self._endpoints: dict[str, Endpoint] = {}

    def all(self) -> dict[str, Endpoint]:
        with self._lock:
            return dict(self._read())

    def _read(self) -> dict[str, Endpoint]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._endpoints = None, {}
            return self._endpoints
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._endpoints = parse_config(self.path.read_text(encoding="utf-8"), self.path)
            self._stamp = stamp
        return self._endpoints

    def put(self, endpoint: Endpoint) -> Optional[Endpoint]:
        """Add or replace an endpoint; the one it replaced, if any."""
        with self._lock:
            current = dict(self._read())
            old = current.get(endpoint.name)
            current[endpoint.name] = endpoint
            self._write(current)
            return old

    def remove(self, name: str) -> Optional[Endpoint]:
        with self._lock:
            current = dict(self._read())
            old = current.pop(name, None)
            if old is not None:
                self._write(current)
            return old

    def _write(self, endpoints: dict[str, Endpoint]) -> None:
        write_text_atomic(self.path, render_config(endpoints))
        self._stamp = None  # re-read (and so re-validated) next time


# -- health ------------------------------------------------------------------------------------------

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
        self.members = [Member(u) for u in endpoint.urls]
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
                "members": [m.status() for m in self.members]}


class EndpointRegistry:
    """The registered endpoints and the live state of their members (health, requests in flight)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.config = EndpointConfig(settings.endpoints_path)
        self._fleets: dict[str, Fleet] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lqmf-probe")

    def fleets(self) -> dict[str, Fleet]:
        """One Fleet per endpoint in the file now (a changed endpoint starts with fresh member state)."""
        endpoints = self.config.all()
        with self._lock:
            for name in list(self._fleets):
                if endpoints.get(name) != self._fleets[name].endpoint:
                    del self._fleets[name]
            for name, endpoint in endpoints.items():
                self._fleets.setdefault(name, Fleet(endpoint))
            return dict(self._fleets)

    def fleet(self, name: str) -> Optional[Fleet]:
        return self.fleets().get(name)

    def refresh(self, max_age_s: Optional[float] = None, timeout: float = LISTING_PROBE_TIMEOUT_S) -> dict[str, Fleet]:
        """Probe stale members of every endpoint, all at once; the fleets."""
        fleets = self.fleets()
        age = self.settings.probe_interval_s if max_age_s is None else max_age_s
        list(self._pool.map(lambda f: f.refresh(age, timeout, self._pool), fleets.values()))
        return fleets

    def put(self, name: str, urls: Iterable[str], model: Optional[str] = None,
            key_env: Optional[str] = None) -> Fleet:
        """Register (or replace) an endpoint and probe it now; its Fleet (health says whether it answered)."""
        endpoint = check_endpoint(name, urls, model, key_env)
        self.config.put(endpoint)
        fleet = self.fleets()[name]
        fleet.refresh(0, LISTING_PROBE_TIMEOUT_S, self._pool)
        log.info("endpoint %s registered (%s): %s", name, ", ".join(endpoint.urls), fleet.health())
        return fleet

    def remove(self, name: str) -> Endpoint:
        removed = self.config.remove(name)
        if removed is None:
            names = ", ".join(self.config.all()) or "none"
            raise LQMFError(f"no endpoint named {name} (registered: {names})", "list endpoints")
        self.fleets()
        log.info("endpoint %s removed", name)
        return removed

    def key_for_url(self, url: str) -> Optional[str]:
        """The key of the registered endpoint that has `url` as a member (None for a URL not registered)."""
        if not url.startswith(("http://", "https://")):
            return None
        try:
            wanted = normalize_url(url)
        except InvalidRequest:
            return None
        for fleet in self.fleets().values():
            if wanted in fleet.endpoint.urls:
                return fleet.endpoint.api_key()
        return None

    def records(self, taken: Iterable[str] = (), probe: bool = True) -> list[Any]:
        """A model record per endpoint (format "remote"); `taken`: names on disk, which win.

        With `probe`, members whose last probe is older than two probe intervals are probed first
        (at most LISTING_PROBE_TIMEOUT_S): a running server's own loop probes every interval, so its
        listings never wait; the shell's do. Without, the last known health is reported.
        """
        from server.discovery import ModelRecord

        taken = set(taken)
        out = []
        fleets = self.refresh(2 * self.settings.probe_interval_s) if probe else self.fleets()
        for name, fleet in fleets.items():
            status = fleet.status()
            record = ModelRecord(name=name, path=self.config.path, format="remote",
                                 context_length=fleet.context_length(), remote=status)
            hosts = sorted({urlsplit(u).netloc for u in fleet.endpoint.urls})
            record.display = {"host": ", ".join(hosts), "health": status["health"],
                              "latency": f"{status['latency_ms']} ms" if status["latency_ms"] is not None else "-"}
            if name in taken:
                record.usable, record.reason = False, f"a local model is also called {name}: rename the endpoint"
            out.append(record)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
