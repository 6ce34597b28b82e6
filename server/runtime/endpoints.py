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

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from lqmf.base.errors import InvalidRequest, LQMFError
from server.runtime.endpoint_file import EndpointConfig
from server.runtime.endpoint_spec import Endpoint, ModelChoiceNeeded, check_endpoint, normalize_url
from server.runtime.fleet import Fleet

log = logging.getLogger(__name__)

LISTING_PROBE_TIMEOUT_S = 3.0  # a listing waits at most this long for stale probes

__all__ = ["EndpointRegistry"]


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
