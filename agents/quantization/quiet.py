"""Libraries' own terminal output sent to a log file while LQMF's own progress stays on the terminal.

GPTQModel prints through LogBar (banners, INFO lines, redrawn progress bars: about 13,900 lines for one
SmolLM2 run), Python warnings and plain prints, all resolved from sys.stdout / sys.stderr at write time.
While inside `library_output_to`, both are a sink that appends to a log file. The shell's rich progress bar
resolves sys.stdout at write time too; the sink names the real stream as `rich_proxied_file` (rich's own
hook for a stream that stands in for another, rich.file_proxy.FileProxy), so rich keeps drawing on the
terminal. The swap is process-wide: anything printed by another thread meanwhile goes to the log as well.

LogBar stops drawing progress where it guesses a CI or agent session (a `CI` or `AGENT` variable, TERM=dumb),
and then no "Quantizing layer" line ever reaches `on_line`: the caller would see no progress at all. Inside the
context LOGBAR_FORCE_PROGRESS=1 keeps it drawing, into the log, wherever the shell runs.
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
FORCE_PROGRESS = "LOGBAR_FORCE_PROGRESS"


class _Sink(io.TextIOBase):
    """A text stream that writes to the log file (or, once the context has ended, where the stream wrote before)."""

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
    def buffer(self):  # LogBar wraps streams without one in a queue whose writes would outlive the context
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


@contextmanager
def library_output_to(log_file: Path, on_line: Optional[Callable[[str], None]] = None,
                      title: str = "") -> Iterator[Path]:
    """While inside, sys.stdout and sys.stderr append to `log_file`; `on_line` sees each line as it comes."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.RLock()  # one per file: stdout and stderr lines do not interleave mid-line
    with open(log_file, "a", encoding="utf-8", errors="replace") as handle:
        handle.write(f"\n===== {datetime.now().isoformat(timespec='seconds')} {title}\n")
        saved = sys.stdout, sys.stderr
        sinks = _Sink(handle, saved[0], lock, on_line), _Sink(handle, saved[1], lock, on_line)
        sys.stdout, sys.stderr = sinks
        forced = os.environ.get(FORCE_PROGRESS)
        os.environ[FORCE_PROGRESS] = "1"
        try:
            yield log_file
        finally:
            sys.stdout, sys.stderr = saved
            if forced is None:
                os.environ.pop(FORCE_PROGRESS, None)
            else:
                os.environ[FORCE_PROGRESS] = forced
            for sink in sinks:
                sink.detach_log()
