"""Remote endpoints as models of this runtime: adding, replacing and removing them, and the backend one attaches with.

The registry (endpoints.py) keeps the file and the members' health; this is what a change means for the rest:
a local model's name is never taken, a replaced or removed endpoint is detached first (its requests in flight
finish there), and a removed one leaves the default chain.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from lqmf.base.errors import ModelNotFound, OutputExists
from lqmf.base.settings import Settings
from server.runtime.catalog import ModelCatalog
from server.runtime.discovery import ModelRecord
from server.runtime.endpoint_spec import Endpoint
from server.runtime.endpoints import EndpointRegistry
from server.runtime.routing import Routing

if TYPE_CHECKING:
    from server.runtime.backends.remote import RemoteBackend

log = logging.getLogger(__name__)


class RemoteModels:
    """Adds and removes endpoints (the shell and the server both come here), and attaches a remote model.

    `detach` unloads a model after its requests in flight (the loader's unload).
    """

    def __init__(self, settings: Settings, registry: EndpointRegistry, catalog: ModelCatalog, routing: Routing,
                 detach: Callable[[str], bool]) -> None:
        self.settings = settings
        self.registry = registry
        self._catalog = catalog
        self._routing = routing
        self._detach = detach

    def add(self, name: str, urls: Sequence[str], model: Optional[str] = None,
            key_env: Optional[str] = None) -> tuple[Any, bool]:
        """Register (or replace) a remote endpoint as the model `name`; (its Fleet, whether one was replaced).

        A replaced endpoint is detached first: its requests in flight finish there, the next go to the new one.
        """
        if name in {r.name for r in self._catalog.local()}:
            raise OutputExists(f"{name} is already a local model", "give the endpoint another name")
        replaced = name in self.registry.config.all()
        if replaced:
            self._detach(name)
        return self.registry.put(name, urls, model, key_env), replaced

    def remove(self, name: str) -> Endpoint:
        """Forget an endpoint (after its requests in flight finish), and take it out of the default chain."""
        if self.registry.fleet(name) is None:
            names = ", ".join(self.registry.config.all()) or "none"
            raise ModelNotFound(f"no endpoint named {name} (registered: {names})", "list endpoints")
        self._detach(name)
        removed = self.registry.remove(name)
        self._routing.forget(name)
        return removed

    def backend(self, record: ModelRecord) -> "RemoteBackend":
        """The backend of a remote model, not loaded yet: its load() probes the endpoint (no memory, no budget)."""
        from server.runtime.backends.remote import RemoteBackend

        fleet = self.registry.fleet(record.name)
        if fleet is None:
            raise ModelNotFound(f"endpoint {record.name} was removed", "list endpoints")
        return RemoteBackend(record, fleet=fleet, parallel=self.settings.remote_parallel,
                             timeout_s=self.settings.remote_timeout_s)
