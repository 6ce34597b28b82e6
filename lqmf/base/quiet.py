"""Libraries' own terminal output sent to the log while LQMF's own progress stays on the terminal.

GPTQModel prints through LogBar (banners, INFO lines, redrawn progress bars: about 13,900 lines for one
SmolLM2 run), Python warnings and plain prints, all resolved from sys.stdout / sys.stderr at write time.
While inside `library_output_to` (a log file of its own: a quantization's output) or `library_output_logged`
(lines to a logger: a load's banner), both are a sink. The shell's rich progress bar resolves sys.stdout at
write time too; the sink names the real stream as `rich_proxied_file` (rich's own hook for a stream that stands
in for another, rich.file_proxy.FileProxy), so rich keeps drawing on the terminal. The swap is process-wide:
anything printed by another thread meanwhile goes to the log as well.

LogBar stops drawing progress where it guesses a CI or agent session (a `CI` or `AGENT` variable, TERM=dumb),
and then no "Quantizing layer" line ever reaches `on_line`: the caller would see no progress at all. Inside
`library_output_to` LOGBAR_FORCE_PROGRESS=1 keeps it drawing, into the log file, wherever the shell runs.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

log = logging.getLogger(__name__)
LINE_END = re.compile(r"[\r\n]")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FORCE_PROGRESS = "LOGBAR_FORCE_PROGRESS"


class _Sink(io.TextIOBase):
    """A text stream that writes to the log (or, once the context has ended, where the stream wrote before)."""

    # LogBar wraps a stream it takes for unbuffered in a queue of its own, drained by a thread and cached for
    # the process: its writes would outlive the context. The sink serializes its writes itself.
    _logbar_queue_wrapped = True

    def __init__(self, handle: IO[str], terminal: IO[str], lock: threading.RLock,
                 on_line: Optional[Callable[[str], None]]) -> None:
        super().__init__()
        self._handle: Optional[IO[str]] = handle
        self._terminal = terminal
        self._lock = lock
        self._on_line = on_line
        self._partial = ""

    @property
    def rich_proxied_file(self) -> IO[str]:
        return getattr(self._terminal, "rich_proxied_file", self._terminal)

    @property
    def buffer(self):
        return getattr(self._handle, "buffer", None) if self._handle else getattr(self._terminal, "buffer", None)

    @property
    def encoding(self) -> str:
        return "utf-8"

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            if self._handle is None:  # a library kept this stream past the context: behave as before it
                return self._terminal.write(text)
            self._handle.write(text)
            lines = self._lines(text) if self._on_line is not None else []
        # Outside the lock: a callback that prints (to this very stream) must not wait on itself.
        for line in lines:
            try:
                self._on_line(line)
            except Exception:  # progress is a courtesy: a failing callback must not fail the library's print
                log.debug("progress from a library's line failed: %r", line, exc_info=True)
        return len(text)

    def _lines(self, text: str) -> list[str]:
        parts = LINE_END.split(self._partial + text)
        self._partial = parts.pop()
        return [line for line in parts if line.strip()]

    def flush(self) -> None:
        with self._lock:
            (self._handle or self._terminal).flush()

    def detach_log(self) -> None:
        with self._lock:
            self._handle = None


class _LoggedLines(io.TextIOBase):
    """A text stream whose complete lines (terminal control sequences removed) go to a logger."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        super().__init__()
        self._logger = logger
        self._level = level
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = LINE_END.split(self._partial + text)
        for line in lines:
            line = ANSI.sub("", line).rstrip()
            if line.strip():
                self._logger.log(self._level, "%s", line)
        return len(text)

    def flush(self) -> None:
        """Lines are logged as they complete; a trailing part waits for its line end."""


@contextmanager
def _redirected(handle: IO[str], on_line: Optional[Callable[[str], None]]) -> Iterator[None]:
    lock = threading.RLock()  # one per target: stdout and stderr lines do not interleave mid-line
    saved = sys.stdout, sys.stderr
    sinks = _Sink(handle, saved[0], lock, on_line), _Sink(handle, saved[1], lock, on_line)
    # A library may configure the root logger as it is imported (GPTQModel's tokenicer calls
    # logging.basicConfig(level=INFO)): every INFO line of the process would then reach the terminal.
    root = logging.getLogger()
    root_before = list(root.handlers), root.level
    sys.stdout, sys.stderr = sinks
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        root.handlers[:] = root_before[0]
        root.setLevel(root_before[1])
        for sink in sinks:
            sink.detach_log()


@contextmanager
def library_output_to(log_file: Path, on_line: Optional[Callable[[str], None]] = None,
                      title: str = "") -> Iterator[Path]:
    """While inside, sys.stdout and sys.stderr append to `log_file`; `on_line` sees each line as it comes."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8", errors="replace") as handle:
        handle.write(f"\n===== {datetime.now().isoformat(timespec='seconds')} {title}\n")
        forced = os.environ.get(FORCE_PROGRESS)
        os.environ[FORCE_PROGRESS] = "1"
        try:
            with _redirected(handle, on_line):
                yield log_file
        finally:
            if forced is None:
                os.environ.pop(FORCE_PROGRESS, None)
            else:
                os.environ[FORCE_PROGRESS] = forced


@contextmanager
def library_output_logged(logger: logging.Logger, level: int = logging.DEBUG) -> Iterator[None]:
    """While inside, the lines written to sys.stdout and sys.stderr go to `logger` at `level` (a load's banner)."""
    lines = _LoggedLines(logger, level)
    try:
        with _redirected(lines, None):
            yield
    finally:
        lines.write("\n")  # a last line without its line end
