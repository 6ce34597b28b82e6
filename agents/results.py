"""The shell's results: what a command answers besides the library's own results (questions, help, errors...).

The library's results live with the work that makes them (agents/measure/results.py,
agents/quantization/results.py, agents/models/results.py, agents/classifiers/results.py) and are re-exported
here, so that the shell and cli/render*.py read every result as `r.X`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from agents.classifiers.results import (  # noqa: F401  (re-exported: the shell's one namespace of results)
    Classification,
    ClassifierCheckResult,
    ClassifierList,
    ClassifierTrained,
)
from agents.measure.results import (  # noqa: F401
    AgreementResult,
    EmbeddedText,
    EmbeddingResult,
    EmbeddingsSideBySide,
    ExperimentList,
    ExperimentResult,
    Statistics,
    TuneResult,
)
from agents.models.results import (  # noqa: F401
    DiskUsage,
    EndpointList,
    ExportResult,
    ModelChanged,
    ModelDetails,
    ModelList,
    ModelsRemoved,
)
from agents.quantization.results import (  # noqa: F401
    AcquiredResult,
    LoggedIn,
    QuantizationList,
    Quantized,
    QuantizePlan,
)
from lqmf.base.results import Result

if TYPE_CHECKING:  # typing only: the chat session loads with the first chat
    from agents.chat_session import ChatSession


@dataclass
class Message(Result):
    text: str = ""


@dataclass
class NotDone(Result):
    """Base of the answers that are not the command done: an error, a question, a line not understood.

    None of them is ok, so -c and --script stop there with a non-zero exit.
    """

    ok: bool = False


@dataclass
class ErrorResult(NotDone):
    """A command that failed: what went wrong, and what to do about it."""

    message: str = ""
    hint: str = ""


@dataclass
class Question(NotDone):
    """A slot is missing: ask, offering choices."""

    text: str = ""
    choices: list[str] = field(default_factory=list)


@dataclass
class Unknown(NotDone):
    text: str = ""  # the line as typed
    suggestion: str = ""  # the closest commands ("load NAME or show NAME")


@dataclass
class Confirm(NotDone):
    """The command needs a yes first (destructive, or understood with low confidence).

    The interactive shell asks `question` [y/N] and, on yes, runs the same command again with
    slots.yes set; -c / --script fail with the question as the error (add --yes to run it).
    """

    question: str = ""


@dataclass
class ChooseModel(NotDone):
    """An endpoint's server lists several models and the command named none: which one is the person's to say.

    Nothing is registered yet; Executor.answer(command, this, NUMBER-OR-NAME) adds it with the model chosen.
    Only a face that can ask gets this (execute(..., answers={"model"})); the others get the refusal as an error.
    """

    question: str = ""  # "far serves 3 models. Which one?"
    models: list[str] = field(default_factory=list)  # the ids the server lists, in its order
    hint: str = ""  # what to type instead (an answer that names none of them says it)
    cancelled: str = ""  # what an empty answer says: nothing added, and the line that would add it


@dataclass
class NeedsSecret(NotDone):
    """A command that needs a secret typed at a hidden prompt (login: a Hugging Face token).

    Executor.answer(command, this, SECRET) goes on with it; only a face that can ask gets this
    (execute(..., answers={"secret"})).
    """

    prompt: str = ""


@dataclass
class Loaded(Result):
    model: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # said once: GGUF is served in-process because the server engine is not built


@dataclass
class AlreadyLoaded(Loaded):
    """`load model X` when X was loaded already: nothing was loaded, its last use (keep_alive) starts over."""


@dataclass
class Unloaded(Result):
    name: str = ""


@dataclass
class ServerInfo(Result):
    """Server state and the loaded models (SHOW_API_STATUS, start, stop)."""

    running: bool = False
    url: str = ""
    host: str = ""
    port: int = 0
    uptime_s: float = 0.0
    loaded: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    gguf: dict[str, Any] = field(default_factory=dict)  # which engine serves GGUF, and why


@dataclass
class ChatStart(Result):
    """Chat mode with a loaded model, its session ready (or one prompt to answer when given)."""

    model: str = ""
    prompt: Optional[str] = None
    session: Optional["ChatSession"] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the model and the prompt (the live session is no data)."""
        return {"ok": self.ok, "model": self.model, "prompt": self.prompt, "type": type(self).__name__}


@dataclass
class Config(Result):
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Help(Result):
    """Rows of (task, form, what it does, example); `help TOPIC` rows may be shorter (form, meaning)."""

    commands: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class Exit(Result):
    pass
