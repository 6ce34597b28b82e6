"""The endpoints file, LQMF_HOME/endpoints.toml: parsed (a broken entry marked with its reason, never raised),
rendered back (a broken entry as it was written), and re-read when it changes on disk."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import tomllib
from pathlib import Path
from typing import Any, Optional

from lqmf.base.errors import InvalidRequest, LQMFError
from lqmf.base.files import write_text_atomic
from server.runtime.endpoint_spec import Endpoint, check_endpoint

log = logging.getLogger(__name__)


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
