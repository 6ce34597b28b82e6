"""The one shape of progress every long task reports: what it is doing, how far, out of how much."""

from __future__ import annotations

from typing import Optional, Protocol


class Progress(Protocol):
    """Called as work advances: `what` names the step, `done` of `total` units (bytes, tensors, prompts)."""

    def __call__(self, what: str, done: int, total: int) -> None: ...


def report(progress: Optional[Progress], what: str, done: int, total: int) -> None:
    """Call `progress` when there is one; a task without a listener reports to nobody."""
    if progress is not None:
        progress(what, done, total)
