"""The understanding the decision agent asks: loaded in the background, so the shell's prompt never waits for it.

Until it is ready (or when it cannot be: no package, no GGUF, a CPU where llama.cpp may not run in process)
`rank` answers None and the word rules decide alone, as before; `status` says which, for `show config`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Optional, Sequence

from agents.intents import Intent
from lqmf.base.errors import LQMFError

if TYPE_CHECKING:
    from agents.understanding.intent_model import Calibrator, IntentModel
    from agents.understanding.sentence_model import SentenceModel
    from lqmf.base.settings import Settings

log = logging.getLogger(__name__)


class Understanding:
    """The sentence model and the intent classifier, opened on a background thread (or at once with `wait`)."""

    def __init__(self, settings: "Settings", *, build: bool = True) -> None:
        self.settings = settings
        self.build = build  # make what is missing (the first start after an install), instead of going without
        self._ready = threading.Event()
        self._lock = threading.Lock()  # one llama.cpp context: one line at a time
        self._encoder: Optional["SentenceModel"] = None
        self._model: Optional["IntentModel"] = None
        self.problem: Optional[str] = None
        self.load_seconds: Optional[float] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Understanding":
        """Begin loading on a daemon thread; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="lqmf-understanding", daemon=True)
            self._thread.start()
        return self

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until loaded (or failed); True when it is usable."""
        self.start()
        self._ready.wait(timeout)
        return self._model is not None

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self._encoder, self._model = self._open()
        except (LQMFError, OSError, ValueError, RuntimeError, ImportError) as exc:
            # The rules still work: the reason is logged and shown by `status`, never a crash of the shell.
            self.problem = getattr(exc, "message", None) or str(exc)
            log.warning("the shell reads commands by its word rules only: %s", self.problem)
        finally:
            self.load_seconds = time.perf_counter() - started
            self._ready.set()

    def _open(self) -> tuple["SentenceModel", "IntentModel"]:
        from agents.understanding.build import build
        from agents.understanding.intent_model import CLASSIFIER_FOLDER, load
        from agents.understanding.sentence_model import GGUF_FILE, SentenceModel
        from server.runtime.gguf_smoke import IN_PROCESS, stored_verdict

        # Only a verdict `make smoke` stored: running the smoke check here would spawn children behind the prompt.
        verdict = stored_verdict(IN_PROCESS, self.settings)
        if verdict is not None and verdict.mode == "off":
            raise LQMFError(f"llama.cpp may not run in this process here ({verdict.reason})",
                            "the word rules decide alone")
        folder = self.settings.understanding_dir
        if self.build:
            build(self.settings)
        elif not (folder / GGUF_FILE).is_file() or not (folder / CLASSIFIER_FOLDER).is_dir():
            raise LQMFError(f"the intent classifier is not built in {folder}", "run `make setup`")
        model, _ = load(folder / CLASSIFIER_FOLDER)
        return SentenceModel.open(folder / GGUF_FILE), model

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def calibrator(self) -> Optional["Calibrator"]:
        return self._model.calibrator if self._model is not None else None

    def rank(self, masked_line: str) -> Optional[Sequence[tuple[Intent, float]]]:
        """Intents most probable first for a masked line; None while not ready."""
        if self._model is None or self._encoder is None:
            return None
        with self._lock:
            vector = self._encoder.embed(masked_line)
        return self._model.rank(masked_line, vector)

    def status(self) -> str:
        """One line for `show config`: ready, loading, or why the rules decide alone."""
        if self._model is not None:
            return f"intent classifier on all-MiniLM-L6-v2 (loaded in {self.load_seconds:.1f} s)"
        if self.problem:
            return f"word rules only: {self.problem}"
        return "word rules (the intent classifier is loading)"

    def close(self) -> None:
        if self._encoder is not None:
            with self._lock:
                self._encoder.close()
            self._encoder = None
