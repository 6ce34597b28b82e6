"""What a remote endpoint is, and the checks on what a person types for one: its name, its URLs (a host as the
resolver takes it), the remote model id, and the variable its key is read from (never the key itself)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from lqmf.base.errors import InvalidRequest, RemoteError

KEY_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
REMOTE_MODEL = re.compile(r"^[^\s\x00-\x1f]{1,256}$")
# A DNS label as resolvers take it: letters, digits, '-' inside, and '_' (container and compose service names).
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
NUMERIC_HOST = re.compile(r"^[0-9.]+$")  # all digits: an IPv4 address or nothing (no top-level domain is numeric)
MAX_HOST_NAME = 253
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
