"""Routing to the default model: `use A then B` makes A the default and B its fallback, kept in a small JSON
file that the shell and a server share; a request for `default` goes down that chain (fallback.py walks it)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from lqmf.base.errors import LQMFError, ModelLoadError, ModelNotFound
from lqmf.base.files import write_text_atomic

log = logging.getLogger(__name__)

DEFAULT = "default"  # the model name that means the active model (`use NAME`)


class ActiveModel:
    """The default model and its fallbacks, kept in a small JSON file (shared by the shell and a server)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: Optional[tuple[int, int]] = None
        self._chain: list[str] = []

    def chain(self) -> list[str]:
        """The default model, then its fallbacks in order ([] when none is set); re-read when the file changes."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._chain = None, []
                return []
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    chain = data["chain"]
                    if not isinstance(chain, list) or not all(isinstance(n, str) and n for n in chain):
                        raise ValueError("chain must be a list of names")
                except (ValueError, KeyError, TypeError) as exc:
                    raise LQMFError(f"{self.path} is not a valid default-model file ({exc})",
                                    "set the default again: use NAME") from None
                self._stamp, self._chain = stamp, chain
            return list(self._chain)

    def set(self, chain: list[str]) -> None:
        """Persist `chain` as it is (Routing.use checks it first)."""
        with self._lock:
            write_text_atomic(self.path, json.dumps({"chain": chain, "set_at": time.time()}) + "\n")
            self._stamp = None


class Routing:
    """The default model and its fallback chain: which models a request may go to, and setting the chain.

    `record` finds a model by name (ModelNotFound with close names): `use` names only models that exist.
    """

    def __init__(self, path: Path, record: Callable[[str], Any]) -> None:
        self.active = ActiveModel(path)
        self._record = record

    def resolve(self, name: Optional[str]) -> list[str]:
        """The models a request for `name` may go to, in order: itself, or for `default` (or none) the
        active model and its fallbacks (`use A then B`)."""
        if name not in (None, "", DEFAULT):
            return [name]
        chain = self.active.chain()
        if not chain:
            raise ModelNotFound("no default model is set",
                                "use NAME sets it (POST /model/switch/NAME), or name a model")
        return chain

    def use(self, chain: list[str]) -> list[str]:
        """Make chain[0] the default model, the rest its fallbacks in order; persisted. Names must exist."""
        if not chain:
            raise LQMFError("name the model to use", "use NAME [then OTHER]")
        if len(set(chain)) != len(chain):
            raise LQMFError(f"a model appears twice in {' then '.join(chain)}", "name each model once")
        if DEFAULT in chain:
            raise LQMFError("'default' names the active model itself", "name a real model: use NAME")
        for name in chain:
            record = self._record(name)
            if not record.usable:
                raise ModelLoadError(f"{name} cannot be used: {record.reason}", "pick another model (list models)")
        self.active.set(chain)
        log.info("default model: %s", " then ".join(chain))
        return chain

    def forget(self, name: str) -> None:
        """Take `name` out of the chain (its endpoint was removed), keeping the others in order."""
        chain = self.active.chain()
        if name in chain:
            self.active.set([n for n in chain if n != name])
            log.info("%s left the default chain with its endpoint", name)
