"""Logging set-up: one rotating file under the logs folder, kept bounded.

Libraries warn in loops (bitsandbytes once per int8 matmul: 16,044 identical lines in a 20-minute chat), so the
file's handler lets each distinct warning through once and then counts its repeats (RepeatFilter), and the
warnings known to be noise are dropped or demoted to DEBUG by one table (NOISE). Python's `warnings` and the
libraries that print through handlers of their own (transformers, torch) come through the same handler.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from typing import Optional

from lqmf.base.settings import Settings

_HANDLER_NAME = "lqmf-file"
DROP, TO_DEBUG = "drop", "debug"  # what NOISE does with a message
LOAD_OUTPUT = "library-output"  # the logger of what libraries print to the terminal while a model loads
DEMOTED = "lqmf_demoted_noise"  # set on a record NoiseFilter demoted to DEBUG


@dataclass(frozen=True)
class Noise:
    """A known library message: where it comes from, what it says, what to do with it, and why."""

    logger: str  # the logger's name or a parent of it
    pattern: str  # searched in the formatted message
    action: str  # DROP: never written; TO_DEBUG: written only where the log level is DEBUG
    reason: str

    def matches(self, record: logging.LogRecord) -> bool:
        name = record.name
        return ((name == self.logger or name.startswith(self.logger + "."))
                and re.search(self.pattern, record.getMessage()) is not None)


# Every message LQMF knows to be noise, with the reason it tells a reader nothing.
NOISE: tuple[Noise, ...] = (
    Noise("llama.cpp", r"n_ctx_seq \(\d+\) > n_ctx_train \(0\)", TO_DEBUG,
          "a vocab-only handle (the tokenizer of a model served by llama-server, or of an imatrix) reads no "
          "hyper-parameters, so its trained context reads 0; llama-cpp-python gives it a context all the same"),
    Noise("llama.cpp", r"model default pooling_type is \[-1\], but \[\d+\] was specified", TO_DEBUG,
          "an embedding of a generative model asks for mean pooling on purpose; the file names none"),
    Noise("llama.cpp", r"cannot decode batches with this context", TO_DEBUG,
          "an encoder (BERT) is always run with encode(); llama.cpp says so on every batch"),
    Noise(LOAD_OUTPUT, r".", TO_DEBUG,
          "what libraries print while a model folder loads: GPTQModel's ~50-line banner (versions, kernels, "
          "\"Built map across 1 GPU(s)\" on a CPU-only machine), transformers' \"Loading weights\" bar"),
    Noise("bitsandbytes", r"MatMul8bitLt: inputs will be cast from torch\.\w+ to float16", TO_DEBUG,
          "LLM.int8 multiplies in float16 by design; float32 activations are cast on every matmul of every token"),
)

# Repeats of one warning are written when their count reaches these (then every further power of ten).
MILESTONES = (10, 100, 1000)
MAX_DISTINCT = 1024  # distinct warnings remembered; the oldest is written out and forgotten beyond this


def known_noise(record: logging.LogRecord) -> Optional[Noise]:
    """The NOISE entry a record matches, if any."""
    return next((noise for noise in NOISE if noise.matches(record)), None)


class NoiseFilter(logging.Filter):
    """Known noise (NOISE) dropped, or demoted to DEBUG and written only where its logger has DEBUG enabled."""

    def filter(self, record: logging.LogRecord) -> bool:
        noise = known_noise(record) if record.levelno > logging.DEBUG else None
        if noise is None:
            return True
        if noise.action == DROP or not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        setattr(record, DEMOTED, True)  # still counted as a repeat (RepeatFilter) where DEBUG is written
        return True


def noise_filtered(name: str) -> logging.Logger:
    """The logger `name` with a NoiseFilter on it: its known noise stays out of every handler, configured or not."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, NoiseFilter) for f in logger.filters):
        logger.addFilter(NoiseFilter())
    return logger


def _is_milestone(count: int) -> bool:
    if count in MILESTONES:
        return True
    top = MILESTONES[-1]
    while count > top and count % 10 == 0:
        count //= 10
    return count == top


class RepeatFilter(logging.Filter):
    """Each distinct warning (or demoted noise) once; its repeats counted and written at 10, 100, 1000, ... and
    when the handler closes. Errors are not counted away: each carries its own traceback and error id.
    """

    _SUMMARY = "_lqmf_repeat_summary"

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self._handler = handler
        self._lock = threading.Lock()
        # (logger, level, message) -> [repeats so far, repeats already written, a record to summarize from]
        self._seen: OrderedDict[tuple[str, int, str], list] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, self._SUMMARY, False) or not (
                record.levelno == logging.WARNING or getattr(record, DEMOTED, False)):
            return True
        key = (record.name, record.levelno, record.getMessage())
        evicted = None
        with self._lock:
            entry = self._seen.get(key)
            if entry is None:
                self._seen[key] = [0, 0, record]
                if len(self._seen) > MAX_DISTINCT:
                    evicted = self._seen.popitem(last=False)[1]
                first = True
            else:
                self._seen.move_to_end(key)
                entry[0] += 1
                first = False
                milestone = _is_milestone(entry[0])
                if milestone:
                    entry[1] = entry[0]
        if evicted is not None:
            self._write_count(evicted)
        if first:
            return True
        if milestone:
            self._summarize(record, entry[0], " so far")
        return False

    def write_counts(self) -> None:
        """Write the repeats not yet written ("(repeated N more times)"), as at close."""
        with self._lock:
            entries = list(self._seen.values())
        for entry in entries:
            self._write_count(entry)

    def _write_count(self, entry: list) -> None:
        with self._lock:
            repeats, written = entry[0], entry[1]
            entry[1] = repeats
        if repeats > written:
            self._summarize(entry[2], repeats)

    def _summarize(self, record: logging.LogRecord, repeats: int, when: str = "") -> None:
        summary = logging.makeLogRecord({
            "name": record.name, "levelno": record.levelno, "levelname": record.levelname,
            "msg": f"%s (repeated %d more times{when})", "args": (record.getMessage().splitlines()[0][:300], repeats),
            self._SUMMARY: True,
        })
        self._handler.handle(summary)


class BoundedFileHandler(RotatingFileHandler):
    """The rotating lqmf.base.log whose repeated warnings are counted, and the counts written when it closes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.repeats = RepeatFilter(self)

    def close(self) -> None:
        try:
            self.repeats.write_counts()
        except Exception:  # closing must not fail over a count: the lines themselves are written
            pass
        super().close()


def configure_logging(settings: Settings) -> logging.Handler:
    """Attach a bounded rotating handler writing logs/lqmf.log to the root logger (idempotent)."""
    root = logging.getLogger()
    log_path = settings.logs_dir / "lqmf.log"
    for handler in root.handlers:
        if handler.get_name() == _HANDLER_NAME:
            if getattr(handler, "baseFilename", None) == str(log_path):
                return handler
            root.removeHandler(handler)
            handler.close()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    level = logging.getLevelName(settings.log_level.upper())
    level = level if isinstance(level, int) else logging.INFO
    handler = BoundedFileHandler(log_path, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8")
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(NoiseFilter())
    handler.addFilter(handler.repeats)  # after the noise: what is dropped is not counted
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings: to the log as "py.warnings", counted like the rest
    route_library_loggers()
    return handler


# Libraries that attach a terminal handler of their own and stop propagation ("[transformers] ...", torch's
# "W1206 12:00:00 ... torch/utils/_pytree.py:630] <enum 'KernelPreference'> ...").
LIBRARY_LOGGERS = ("transformers", "torch")


def route_library_loggers() -> None:
    """Send the loggers of LIBRARY_LOGGERS already imported to the root's handlers (the log) instead of the terminal.

    Call after importing such a library; transformers adds its handler once, on import, so the change holds.
    """
    for name in LIBRARY_LOGGERS:
        if name not in sys.modules:
            continue
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                library.removeHandler(handler)
        library.propagate = True


def console_handler(tag: str) -> logging.Handler:
    """INFO and above from LQMF's own loggers on stderr, as `[tag] message`: what a setup step tells the person."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(f"[{tag}] %(message)s"))
    handler.addFilter(lambda record: record.name.startswith(("lqmf", "agents")))
    return handler
