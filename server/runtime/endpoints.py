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

import datetime
import json
import logging
import os
import re
import socket
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from lqmf.base.errors import InvalidRequest, LQMFError, RemoteError
from lqmf.base.files import write_text_atomic

log = logging.getLogger(__name__)

KEY_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
REMOTE_MODEL = re.compile(r"^[^\s\x00-\x1f]{1,256}$")
# A DNS label as resolvers take it: letters, digits, '-' inside, and '_' (container and compose service names).
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
NUMERIC_HOST = re.compile(r"^[0-9.]+$")  # all digits: an IPv4 address or nothing (no top-level domain is numeric)
MAX_HOST_NAME = 253
LISTING_PROBE_TIMEOUT_S = 3.0  # a listing waits at most this long for stale probes
MAX_MEMBERS = 64


@dataclass(frozen=True)
class Endpoint:
    """One registered name: its member URLs (…/v1), the remote model id, and where its key comes from."""

    name: str
    urls: tuple[str, ...]
    model: Optional[str] = None
    key_env: Optional[str] = None
    # Why the file's entry cannot be used: it is listed with this reason and never routed to.
    broken: Optional[str] = None
    # A broken entry as the file holds it, written back unchanged when other entries change.
    raw: Any = field(default=None, compare=False, hash=False, repr=False)

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


class ModelChoiceNeeded(InvalidRequest):
    """An endpoint added without a model on a server that lists several: which one is the person's to say.

    Nothing is registered; `models` are the ids the server lists (the shell asks among them).
    """

    SHOWN = 8  # ids named in the message; the rest are counted

    def __init__(self, endpoint: Endpoint, models: list[str]) -> None:
        more = len(models) - self.SHOWN
        listed = ", ".join(models[:self.SHOWN]) + (f" and {more} more" if more > 0 else "")
        self.endpoint, self.models = endpoint, list(models)
        super().__init__(f"{endpoint.name} serves {len(models)} models: {listed}",
                         f"say which one: {self.command(models[0])}")

    def command(self, model: str) -> str:
        """The shell line that adds the endpoint with `model`."""
        key = f" key from {self.endpoint.key_env}" if self.endpoint.key_env else ""
        return f"add endpoint {self.endpoint.name} at {', '.join(self.endpoint.urls)} model {model}{key}"


def normalize_url(url: str) -> str:
    """An http(s) base URL of an OpenAI-compatible API; a bare host gets /v1 (what every such server uses)."""
    url = url.strip()
    if not url or any(not ("!" <= c <= "~") for c in url):
        raise InvalidRequest(f"{url[:200]!r} has spaces, control or non-ASCII characters",
                             "give a plain http(s) URL (an international host name in its xn-- form)")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port out of range
    except ValueError as exc:  # a bad port or a bracketed host that is no IP address
        raise InvalidRequest(f"{url[:200]!r} is not a valid URL ({exc})", "give e.g. http://10.0.0.5:8000/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{url!r} is not an http(s) URL", "give the server's base URL, e.g. http://10.0.0.5:8000/v1")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidRequest(f"{url!r} carries a query, fragment or credentials",
                             "give the bare base URL; a key goes in an environment variable (key from ENV_VAR)")
    if port == 0:
        raise InvalidRequest(f"{url!r} names port 0, which no server listens on",
                             "give the port the server listens on (1-65535), e.g. http://10.0.0.5:8000/v1")
    check_host(parts.hostname, url)
    path = parts.path.rstrip("/")
    normal = f"{parts.scheme}://{parts.netloc}{path or '/v1'}"
    try:
        import httpx

        httpx.URL(normal)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(f"{url[:200]!r} is not a valid URL ({exc})", "give e.g. http://10.0.0.5:8000/v1") from None
    return normal


def check_host(host: str, url: str) -> None:
    """InvalidRequest unless the resolver can take `host`: an IP address, or a DNS name of valid labels.

    getaddrinfo encodes a name with the idna codec, which raises UnicodeError (not an HTTP error) on an
    empty or over-long label, and a name with characters no host has can never resolve: both are
    refused here, before anything is written, rather than failing every later probe.
    """
    if ":" in host:  # urlsplit has already checked that a bracketed host is an IPv6 address
        return
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name's root dot
    hint = ("give a host name of letters, digits, '-' and '_' in dot-separated labels of 1-63 characters "
            "(at most 253 in all), or an IP address, e.g. http://10.0.0.5:8000/v1")
    if NUMERIC_HOST.match(name):
        try:
            socket.inet_aton(name)  # what getaddrinfo accepts as an IPv4 address (0 is 0.0.0.0)
        except OSError:
            raise InvalidRequest(f"{url!r}: {host!r} is not an IPv4 address", hint) from None
        return
    why = next((w for w in map(label_problem, name.split(".")) if w), None)
    if why is None and len(name) > MAX_HOST_NAME:
        why = f"it is longer than {MAX_HOST_NAME} characters"
    if why is not None:
        raise InvalidRequest(f"{url!r}: the host {host!r} cannot be resolved ({why})", hint)
    try:
        host.encode("idna")  # exactly what the resolver does first; the rules above should make this hold
    except UnicodeError as exc:
        raise InvalidRequest(f"{url!r}: the host {host!r} cannot be resolved ({exc})", hint) from None


def label_problem(label: str) -> Optional[str]:
    """What is wrong with one dot-separated label of a host name, or None."""
    if not label:
        return "it has an empty label"
    if len(label) > 63:
        return f"its label {label[:20]!r}... is longer than 63 characters"
    if not HOST_LABEL.match(label):
        return f"its label {label!r} has characters no host name has, or starts or ends with '-'"
    return None


def check_endpoint(name: str, urls: Iterable[str], model: Optional[str], key_env: Optional[str]) -> Endpoint:
    """A valid Endpoint from user input, or InvalidRequest that says what to change."""
    from lqmf.base.names import MODEL_NAME, MODEL_NAME_MAX

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
    if model is not None and (not isinstance(model, str) or not REMOTE_MODEL.match(model)):
        raise InvalidRequest(f"{model!r} is not a model id", "give the id the server lists under GET /v1/models")
    if key_env is not None and (not isinstance(key_env, str) or not KEY_ENV.match(key_env)):
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
    """Endpoints from the TOML text, a broken entry marked with the reason; LQMFError when the file itself is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LQMFError(f"{path} is not valid TOML: {exc}", "fix the file or remove it (see docs/SCALE_OUT.md); "
                        "nothing is written to it until then") from exc
    table = data.get("endpoints", {})
    if not isinstance(table, dict):
        raise LQMFError(f"{path}: 'endpoints' must be a table of [endpoints.NAME] entries",
                        "see docs/SCALE_OUT.md; nothing is written to the file until it is fixed")
    return {name: parse_entry(name, entry, path) for name, entry in table.items()}


def parse_entry(name: str, entry: Any, path: Path) -> Endpoint:
    """One [endpoints.NAME] entry; a broken one (bad URL, missing field, wrong type) is marked, never raised."""
    try:
        return check_entry(name, entry)
    except InvalidRequest as exc:
        reason = f"{path}: [endpoints.{name}]: {exc.message} ({exc.hint or 'see docs/SCALE_OUT.md'})"
        log.warning("endpoint %s is broken: %s", name, reason)
        urls = entry.get("urls", [entry.get("url")]) if isinstance(entry, dict) else []
        shown = tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else ()
        return Endpoint(name, shown, broken=reason, raw=entry)


def check_entry(name: str, entry: Any) -> Endpoint:
    """A file entry as an Endpoint, or InvalidRequest that says what to change in it."""
    if not isinstance(entry, dict):
        raise InvalidRequest("it must be a table", f'[endpoints.{name}] with urls = ["http://HOST:PORT/v1"]')
    unknown = set(entry) - {"url", "urls", "model", "key_env"}
    if unknown:  # only the names: an unknown key may hold a secret
        raise InvalidRequest(f"it has unknown keys {sorted(unknown)}",
                             "use url or urls, model, key_env (never a key itself)")
    urls = entry.get("urls", [entry["url"]] if "url" in entry else [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise InvalidRequest("urls must be a list of strings", 'urls = ["http://HOST:PORT/v1"]')
    for key in ("model", "key_env"):
        if key in entry and not isinstance(entry[key], str):
            raise InvalidRequest(f"{key} must be a string, not {type(entry[key]).__name__}",
                                 'model = "the remote id", key_env = "THE_VARIABLE_NAME"')
    return check_endpoint(name, urls, entry.get("model"), entry.get("key_env"))


def _toml_value(value: Any) -> str:
    """`value` (as tomllib reads it) in TOML, inline: a broken entry goes back into the file as it was."""
    if isinstance(value, str):
        # A JSON string is a TOML basic string, once DEL (which JSON leaves bare) is escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # inf, -inf and nan are TOML's spellings too
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def render_config(endpoints: dict[str, Endpoint]) -> str:
    lines = ["# LQMF remote endpoints (see docs/SCALE_OUT.md). Keys are never stored: key_env names the",
             "# environment variable each request reads the key from.", ""]
    loose = {e.name: e.raw for e in endpoints.values() if e.broken and not isinstance(e.raw, dict)}
    if loose:  # broken entries that are no tables: keys of [endpoints] itself, before any sub-table
        lines += ["[endpoints]", *(f"{_toml_value(name)} = {_toml_value(raw)}" for name, raw in loose.items()), ""]
    for e in endpoints.values():
        if e.name in loose:
            continue
        lines.append(f"[endpoints.{_toml_value(e.name)}]")
        if e.broken:
            lines += [f"{_toml_value(key)} = {_toml_value(value)}" for key, value in e.raw.items()]
            lines.append("")
            continue
        lines.append(f"urls = [{', '.join(_toml_value(u) for u in e.urls)}]")
        if e.model:
            lines.append(f"model = {_toml_value(e.model)}")
        if e.key_env:
            lines.append(f"key_env = {_toml_value(e.key_env)}")
        lines.append("")
    return "\n".join(lines)


class EndpointConfig:
    """The endpoints file, re-read when it changes on disk (the shell and a server share it).

    A broken entry is kept (listed as broken, written back as it was); a file that cannot be read at all
    lists no endpoint, says why in `problem`, and is never overwritten: it may hold what its owner wrote.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: Optional[tuple[int, int]] = None
        self._endpoints: dict[str, Endpoint] = {}
        self._problem: Optional[LQMFError] = None

    def all(self) -> dict[str, Endpoint]:
        """Every entry, broken ones included ({} when the file cannot be read: see `problem`)."""
        with self._lock:
            return dict(self._read())

    def problem(self) -> Optional[str]:
        """Why the file cannot be read at all (with what to do), or None."""
        with self._lock:
            self._read()
            return None if self._problem is None else f"{self._problem.message} ({self._problem.hint})"

    def _read(self) -> dict[str, Endpoint]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._endpoints, self._problem = None, {}, None
            return self._endpoints
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._endpoints, self._problem = parse_config(self._text(), self.path), None
            except LQMFError as exc:  # listings go on without the file's endpoints; the log and `problem` say why
                log.error("remote endpoints unavailable: %s (%s)", exc.message, exc.hint)
                self._endpoints, self._problem = {}, exc
            self._stamp = stamp
        return self._endpoints

    def _text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LQMFError(f"{self.path} cannot be read ({exc})",
                            "fix or remove the file; nothing is written to it until then") from exc

    def _writable(self) -> dict[str, Endpoint]:
        """The entries to change; LQMFError (nothing written) while the file cannot be read."""
        current = dict(self._read())
        if self._problem is not None:
            raise LQMFError(self._problem.message, self._problem.hint)
        return current

    def put(self, endpoint: Endpoint) -> Optional[Endpoint]:
        """Add or replace an endpoint (a broken entry of that name too); the one it replaced, if any."""
        with self._lock:
            current = self._writable()
            old = current.get(endpoint.name)
            current[endpoint.name] = endpoint
            self._write(current)
            return old

    def remove(self, name: str) -> Optional[Endpoint]:
        with self._lock:
            current = self._writable()
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
        """Register (or replace) an endpoint and probe it now; its Fleet (health says whether it answered).

        Probed before anything is written: a server that lists several models, with none named, is refused
        (ModelChoiceNeeded) rather than registered to fail at its first request.
        """
        endpoint = check_endpoint(name, urls, model, key_env)
        fleet = Fleet(endpoint)
        fleet.refresh(0, LISTING_PROBE_TIMEOUT_S, self._pool)
        served = fleet.served_models()
        if endpoint.model is None and len(served) > 1:
            raise ModelChoiceNeeded(endpoint, served)
        self.config.put(endpoint)
        with self._lock:
            self._fleets[name] = fleet  # its probe stands: fleets() keeps a fleet whose endpoint is unchanged
        fleet = self.fleets()[name]
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
            if not fleet.endpoint.broken and wanted in fleet.endpoint.urls:
                return fleet.endpoint.api_key()
        return None

    def records(self, taken: Iterable[str] = (), probe: bool = True) -> list[Any]:
        """A model record per endpoint (format "remote"); `taken`: names on disk, which win.

        With `probe`, members whose last probe is older than two probe intervals are probed first
        (at most LISTING_PROBE_TIMEOUT_S): a running server's own loop probes every interval, so its
        listings never wait; the shell's do. Without, the last known health is reported.
        """
        from server.runtime.discovery import ModelRecord

        taken = set(taken)
        out = []
        fleets = self.refresh(2 * self.settings.probe_interval_s) if probe else self.fleets()
        for name, fleet in fleets.items():
            status = fleet.status()
            record = ModelRecord(name=name, path=self.config.path, format="remote",
                                 context_length=fleet.context_length(), remote=status)
            hosts = sorted({urlsplit(u).netloc for u in fleet.endpoint.urls}) if not fleet.endpoint.broken else []
            record.display = {"host": ", ".join(hosts) or "-", "health": status["health"],
                              "latency": f"{status['latency_ms']} ms" if status["latency_ms"] is not None else "-"}
            if fleet.endpoint.broken:
                record.usable, record.reason = False, fleet.endpoint.broken
            elif name in taken:
                record.usable, record.reason = False, f"a local model is also called {name}: rename the endpoint"
            out.append(record)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
