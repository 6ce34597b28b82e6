"""A failed quantization step in plain words: which step, what the library said, where the traceback went."""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType
from typing import Optional

from lqmf.base.errors import LQMFError, QuantizationError

MAX_MESSAGE_CHARS = 600  # library messages can be pages long (tensor dumps); the log keeps all of it
OUR_PACKAGES = frozenset({"agents", "lqmf", "server", "memory", "cli"})


class QuantizationFailed(QuantizationError):
    """A quantization step failed; `step` names it, the cause's traceback is in the log file."""

    def __init__(self, message: str, hint: str = "", *, step: str = "", log_path: Optional[Path] = None) -> None:
        super().__init__(message, hint)
        self.step = step
        self.log_path = log_path


def origin_of(exc: BaseException) -> tuple[str, str]:
    """(the library LQMF called, the package whose code raised): ('gptqmodel', 'torch'); '' where unknown.

    Read from the traceback's frames: the first one outside LQMF's own packages, and the innermost.
    """
    called = raised = ""
    tb: Optional[TracebackType] = exc.__traceback__
    while tb is not None:
        package = _package(tb.tb_frame.f_globals.get("__name__", ""))
        if package:
            raised = package
            if not called and package != "LQMF":
                called = package
        tb = tb.tb_next
    return called, raised


def _package(module: str) -> str:
    package = (module or "").split(".", 1)[0]
    if not package or package == "__main__":
        return ""
    return "LQMF" if package in OUR_PACKAGES else package


def plain_message(exc: BaseException) -> str:
    """The exception's own message, trimmed to something a person reads: never a traceback."""
    if isinstance(exc, LQMFError):
        text = exc.message
    else:
        text = str(exc).strip() or type(exc).__name__
        if text.startswith("'") and isinstance(exc, KeyError):
            text = f"missing key {text}"
    # A child's output can embed a Python traceback; keep only the lines a person needs.
    text = strip_traceback(text).strip() or type(exc).__name__
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return text


def strip_traceback(text: str) -> str:
    """`text` without Python traceback lines ("Traceback ...", "  File ...", and the code under each)."""
    kept: list[str] = []
    in_frame = False
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("Traceback (most recent call last)") or stripped.startswith('File "'):
            in_frame = True
            continue
        if in_frame and line.startswith("    "):
            continue  # the source line (and caret markers) under a frame
        in_frame = False
        kept.append(line)
    return "\n".join(kept)


def step_failure(exc: BaseException, step: str, log_path: Path) -> QuantizationFailed:
    """The error a user sees for an exception inside `step`: the library's words, the step, the log file."""
    where = f"step “{step}”" if step else "preparing the run"
    if isinstance(exc, LQMFError):
        message = f"{where} failed: {plain_message(exc)}"
        hint = exc.hint
    else:
        called, raised = origin_of(exc)
        said = f"{raised} raised {type(exc).__name__}" if raised else type(exc).__name__
        if called and called != raised:
            said += f" inside {called}"
        message = f"{where} failed: {said}: {plain_message(exc)}"
        hint = ""
    if "lqmf.log" in hint:  # core hints name the log relative to LQMF_HOME; say where it really is
        hint = re.sub(r"[\w./~-]*lqmf\.log", str(log_path), hint)
    else:
        tail = f"the details and the traceback are in {log_path}"
        hint = f"{hint}; {tail}" if hint else tail
    return QuantizationFailed(message, hint, step=step, log_path=log_path)
