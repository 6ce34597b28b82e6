"""The models there are: every model on disk and every registered remote endpoint, found by name."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from lqmf.base.errors import ModelNotFound
from lqmf.base.settings import Settings
from server.runtime.discovery import DiscoveryCache, ModelRecord

if TYPE_CHECKING:
    from server.runtime.endpoints import EndpointRegistry


def names_hint(name: str, names: Sequence[str], shown: int = 8) -> str:
    """What to say when `name` is not a model: the nearest names, or else the ones there are."""
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    if not close:  # a part of a name ("q8" for demo-q8_0) is near too
        low = name.lower()
        close = [n for n in names if len(low) >= 2 and low in n.lower()][:3]
    if close:
        return f"did you mean {', '.join(close)}?"
    if not names:
        return "no models yet: download ORG/NAME, import PATH or quantize one"
    listed = sorted(names)
    more = f" and {len(listed) - shown} more (list models)" if len(listed) > shown else ""
    return f"available: {', '.join(listed[:shown])}{more}"


class ModelCatalog:
    """Finding models: those on disk (re-inspecting only what changed) and the registered endpoints."""

    def __init__(self, settings: Settings, endpoints: "EndpointRegistry",
                 discover_fn: Optional[Callable[[Any], list[ModelRecord]]] = None) -> None:
        self.settings = settings
        self.endpoints = endpoints
        # An explicit discover_fn is called as it is; the default re-inspects only what changed on disk.
        self._discover = discover_fn
        self.discovery = DiscoveryCache()

    def local(self) -> list[ModelRecord]:
        """Every model on disk, usable or not (blocking: stats the models folder)."""
        if self._discover is not None:
            return self._discover(self.settings.models_dir)
        return self.discovery.records(self.settings.models_dir)

    def available(self, probe: bool = False) -> list[ModelRecord]:
        """Every model on disk (usable or not), then every remote endpoint; blocking (stats the folder),
        so routes call it off the loop. `probe` (the listings a person reads): first probe endpoints not
        heard from lately; otherwise nothing waits on a dead endpoint."""
        local = self.local()
        return local + self.endpoints.records(taken=[r.name for r in local], probe=probe)

    def record(self, name: str) -> ModelRecord:
        """The discovered model called `name`, or ModelNotFound with the closest names."""
        # No probes: finding one model must not wait on a dead endpoint (a remote one probes when it attaches).
        records = {r.name: r for r in self.available()}
        if name in records:
            return records[name]
        raise ModelNotFound(f"no model named {name!r} in {self.settings.models_dir}", names_hint(name, list(records)))
