"""Which engine serves GGUF models in this process: decided once (at the first GGUF load, or when asked), and said
once on the in-process fallback."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Optional

from lqmf.base.errors import LQMFError
from lqmf.base.settings import Settings

if TYPE_CHECKING:
    from server.runtime.engine import EngineChoice

log = logging.getLogger(__name__)


class EngineDecision:
    """The GGUF engine of one manager: chosen on first use (server.runtime.engine.choose_engine), then kept."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._choice: Optional[EngineChoice] = None
        self._noticed = False

    def choice(self) -> "EngineChoice":
        """How GGUF models are served here, decided at the first GGUF load and said once."""
        from server.runtime.engine import choose_engine

        with self._lock:
            if self._choice is None:
                self._choice = choose_engine(self.settings)
                (log.info if self._choice.server else log.warning)("%s", self._choice.reason)
            return self._choice

    def status(self) -> dict[str, Any]:
        """Which engine serves GGUF here and why (decided now if no GGUF load has decided it yet)."""
        try:
            return self.choice().describe()
        except LQMFError as exc:  # LQMF_GGUF_ENGINE=server without a usable llama-server
            return {"engine": "none", "reason": exc.message, "binary": None, "repack": None,
                    "in_process_weights": None}

    def notice(self) -> Optional[str]:
        """Once per manager, after a GGUF load on the in-process fallback: why, and how to get the engine."""
        with self._lock:
            if self._choice is None or self._choice.server or self._noticed:
                return None
            self._noticed = True
            return self._choice.reason
