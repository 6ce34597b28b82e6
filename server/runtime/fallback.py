"""The default model's fallback chain (`use A then B`), walked the same way by every face: the HTTP routes and the
shell's chat both ask for `default` and move down the chain while a model fails before its first output.

    walk = FallbackWalk.of(manager, name)
    for candidate in walk:
        try:
            started = attempt(candidate)        # load it, queue the request, wait for its first output
        except Exception as exc:
            walk.failed_on(candidate, exc)      # raises exc unless the chain moves on to the next model
            continue
        return started                          # walk.fallback_from / walk.notice(candidate) say what happened
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, TypeVar

from lqmf.base.errors import (
    EngineUnavailable,
    InsufficientMemory,
    ModelBusy,
    ModelLoadError,
    ModelNotFound,
    QueueFull,
    RemoteError,
)
from server.runtime.routing import DEFAULT

log = logging.getLogger(__name__)

# Failures of the model rather than of the request: a fallback chain moves on from these.
MODEL_FAILURES = (RemoteError, EngineUnavailable, ModelLoadError, InsufficientMemory, QueueFull, ModelBusy,
                  ModelNotFound)

# How a failed model is described to the person whose reply fell back: the first isinstance match wins.
FAILED_AS: tuple[tuple[type, str], ...] = (
    (InsufficientMemory, "does not fit in memory"),
    (ModelLoadError, "cannot be loaded"),
    (EngineUnavailable, "has no engine here"),
    (QueueFull, "is busy"),
    (ModelBusy, "is busy"),
    (ModelNotFound, "is gone"),
)
# A remote's failure by the status LQMF answers in its place.
REMOTE_FAILED_AS = {503: "is unreachable", 504: "did not answer in time", 429: "is rate-limiting"}
# The operating system's words inside a transport error ("[Errno 111] Connection refused"): the cause, short.
OS_CAUSE = re.compile(r"\[Errno -?\d+\]\s*(?P<cause>[^()\[\]]+?)\s*(?:\)|$)")

T = TypeVar("T")


def falls_back(exc: BaseException) -> bool:
    """Whether the next model of a fallback chain should get a request that failed with `exc`."""
    if isinstance(exc, RemoteError):
        return exc.status != 400  # the remote refused the request's values: any model would
    return isinstance(exc, MODEL_FAILURES)


def failure_words(exc: BaseException) -> str:
    """What went wrong with a model, as a person reads it: "is unreachable (connection refused)"."""
    if isinstance(exc, RemoteError):
        said = REMOTE_FAILED_AS.get(exc.status, "failed")
    else:
        said = next((words for kind, words in FAILED_AS if isinstance(exc, kind)), "failed")
    message = getattr(exc, "message", None) or str(exc)
    cause = OS_CAUSE.search(message)
    return f"{said} ({cause.group('cause').lower() if cause else message})"


@dataclass
class FallbackWalk:
    """One request's walk down a chain: the models to try in order, and those that failed before it answered."""

    chain: list[str]
    failed: list[tuple[str, BaseException]] = field(default_factory=list)
    on_move: Optional[Callable[[str, str], None]] = None  # (failed, next): a face's own count of the move

    @classmethod
    def of(cls, manager: Any, name: str, on_move: Optional[Callable[[str, str], None]] = None) -> "FallbackWalk":
        """The walk for a request naming `name`: the default's whole chain for `default`, else `name` alone
        (blocking: reads the active-model file)."""
        return cls(manager.routing.resolve(name) if name == DEFAULT else [name], on_move=on_move)

    def __iter__(self) -> Iterator[str]:
        # Each next model only after the one before failed and failed_on() let the walk go on.
        for index, candidate in enumerate(self.chain):
            if index and len(self.failed) < index:
                return
            yield candidate

    def failed_on(self, candidate: str, exc: Exception) -> str:
        """Note that `candidate` failed with `exc`; the next model to try, or `exc` raised when the walk ends
        here (the last model of the chain, or a failure any model would have: the request's own)."""
        index = self.chain.index(candidate)
        if index + 1 == len(self.chain) or not falls_back(exc):
            raise exc
        following = self.chain[index + 1]
        log.warning("default model %s failed before its first output (%s); falling back to %s",
                    candidate, exc, following)
        self.failed.append((candidate, exc))
        if self.on_move is not None:
            self.on_move(candidate, following)
        return following

    @property
    def fallback_from(self) -> Optional[str]:
        """The models skipped, comma-separated (the X-LQMF-Fallback-From header, the history's column), or None."""
        return ", ".join(name for name, _ in self.failed) or None

    def notice(self, answered: str) -> Optional[str]:
        """What a person should hear when the reply fell back: "far is unreachable (connection refused); answered
        by demo-q4_k_m"; None when the first model answered."""
        if not self.failed:
            return None
        said = "; ".join(f"{name} {failure_words(exc)}" for name, exc in self.failed)
        return f"{said}; answered by {answered}"


class StartedJob:
    """A manager Job whose first output has come (so the model has started answering): iterate it as the job.

    A second loop over it (the drain after a cancel) reads on from the job, as a second loop over a Job does.
    """

    def __init__(self, job: Any) -> None:
        self.job = job
        self._outputs = iter(job)
        # The job's failure before any output raises here, in the caller: the chain moves on from it.
        self._head: Optional[list[Any]] = list(itertools.islice(self._outputs, 1))

    @property
    def model(self) -> str:
        return self.job.model

    def cancel(self) -> None:
        self.job.cancel()

    def __iter__(self) -> Iterator[Any]:
        if self._head is None:
            yield from self.job
            return
        head, self._head = self._head, None
        yield from head
        yield from self._outputs


def first_that_starts(manager: Any, name: str, start: Callable[[str], T]) -> tuple[T, str, FallbackWalk]:
    """start(model) on `name`, or for `default` on each model of its chain until one starts; (what it returned,
    the model that started, the walk: its notice() says what was skipped and why)."""
    walk = FallbackWalk.of(manager, name)
    for candidate in walk:
        try:
            return start(candidate), candidate, walk
        except Exception as exc:
            walk.failed_on(candidate, exc)
    raise AssertionError("unreachable: a chain is never empty and its last failure is raised")


def stream_with_fallback(manager: Any, name: str, prompt: Any, params: Any) -> tuple[StartedJob, FallbackWalk]:
    """A streamed generation on `name` (for `default`: down its chain until a model gives its first output), as
    the shell's chat asks for one; the HTTP routes walk the same chain in server/http/streaming.py."""
    started, _, walk = first_that_starts(manager, name, lambda model: StartedJob(manager.stream(model, prompt, params)))
    return started, walk
