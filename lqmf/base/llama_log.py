"""llama.cpp's log through Python logging (logger "llama.cpp"), so it reaches the log file, never the terminal.

llama-cpp-python's own callback prints to stderr whatever its logger's level lets through, and every Llama()
resets that level (verbose=False: ERROR). It also reads ggml's levels by an older enum (WARN = 2), while this
ggml's WARN is 3, which it takes for ERROR: every warning of a load reached the shell's screen
("n_ctx_seq (512) > n_ctx_train (0)" on each vocab-only handle). Here ggml's levels are read by its enum and
each line is logged, where the log file's filters (lqmf.base.log: known noise, counted repeats) apply.
"""

from __future__ import annotations

import ctypes
import logging
import threading

from lqmf.base.log import noise_filtered

LOGGER = "llama.cpp"

GGML_CONT = 5  # "continue the previous line" in ggml's enum ggml_log_level
# ggml's enum ggml_log_level (NONE, DEBUG, INFO, WARN, ERROR) -> logging. llama.cpp's INFO is a load's
# running commentary (every metadata key, every buffer): DEBUG here.
LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_MARK = "lqmf_routed"  # set on the callback this module installs


class LineLogger:
    """Receives llama.cpp's log pieces and logs each complete line at its level."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        self._level = logging.DEBUG
        self._partial = ""

    def __call__(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            self.add(level, text.decode("utf-8", "replace"))
        except Exception:  # an exception cannot cross back into C
            pass

    def add(self, level: int, text: str) -> None:
        """One piece of llama.cpp's log: a line, part of one, or (GGML_CONT) more of the previous one."""
        with self._lock:
            if level != GGML_CONT:
                self._flush_locked()
                self._level = LEVELS.get(level, logging.DEBUG)
            if not self.logger.isEnabledFor(self._level):
                return
            *lines, self._partial = (self._partial + text).split("\n")
            level_now = self._level
        for line in lines:
            if line.strip():
                self.logger.log(level_now, "%s", line.rstrip())

    def _flush_locked(self) -> None:
        if self._partial.strip():
            self.logger.log(self._level, "%s", self._partial.rstrip())
        self._partial = ""


def route_llama_log() -> None:
    """Make llama.cpp's process-wide log callback one that logs (idempotent); call before making a Llama."""
    import llama_cpp
    from llama_cpp import _logger

    if getattr(_logger.llama_log_callback, _MARK, False):
        return
    # Known noise stays out even where no lqmf.base.log is configured.
    callback = llama_cpp.llama_log_callback(LineLogger(noise_filtered(LOGGER)))
    setattr(callback, _MARK, True)
    # C keeps only a pointer: the library's module holds the callback alive, and whoever swaps the callback
    # for a while and restores "the library's" (gguf_quant's quantizer capture) restores this one.
    _logger.llama_log_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
