"""Typed results the executor returns and cli/render.py draws (or --json prints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Optional


@dataclass
class Result:
    """Base of every result; `ok` False means the command failed (the shell's -c exits non-zero)."""

    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self) if is_dataclass(self) else {}
        data["type"] = type(self).__name__
        return data


@dataclass
class Message(Result):
    text: str = ""


@dataclass
class ErrorResult(Result):
    message: str = ""
    hint: str = ""
    ok: bool = False


@dataclass
class Question(Result):
    """A slot is missing: ask, offering choices."""

    text: str = ""
    choices: list[str] = field(default_factory=list)
    ok: bool = False


@dataclass
class Unknown(Result):
    text: str = ""
    suggestion: str = ""
    ok: bool = False


@dataclass
class ModelList(Result):
    models_dir: str = ""
    models: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Loaded(Result):
    model: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # said once: GGUF is served in-process because the server engine is not built


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


@dataclass
class ChatStart(Result):
    """Enter chat mode with a model (or answer one prompt when given)."""

    model: str = ""
    prompt: Optional[str] = None


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


@dataclass
class ExperimentResult(Result):
    """A finished experiment: per-model rows, per-generation runs, the recommendation and the report file."""

    id: int = 0
    kind: str = ""
    models: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    recommendation: str = ""
    reference: Optional[str] = None
    report_path: Optional[str] = None
    notes: list[str] = field(default_factory=list)


@dataclass
class AgreementResult(Result):
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentList(Result):
    experiments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Statistics(Result):
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlanResult(Result):
    """A quantization plan shown before it runs (refused: `problems` say why, and it is not ok)."""

    plan: dict[str, Any] = field(default_factory=dict)
    refused: bool = False
    acquired: Optional[dict[str, Any]] = None  # the download that came first, when the source was a repo id


@dataclass
class Quantized(Result):
    """A finished quantization run: the plan it followed, the output's manifest and the run's measurements."""

    run_id: int = 0
    output: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    peak_rss_bytes: int = 0
    acquired: Optional[dict[str, Any]] = None  # the download that came first, when the source was a repo id
    fidelity: Optional[ExperimentResult] = None


@dataclass
class AcquiredResult(Result):
    """A model downloaded from the Hub or imported from a local path."""

    action: str = ""  # downloaded | imported
    model: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantizationList(Result):
    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LoggedIn(Result):
    user: str = ""
    token_path: str = ""


@dataclass
class EmbeddingResult(Result):
    """Raw (unnormalised) embeddings of one or more texts: per text its tokens, norm and whole vector."""

    model: str = ""
    dim: int = 0
    pooling: str = ""
    seconds: float = 0.0
    items: list[dict[str, Any]] = field(default_factory=list)  # text, tokens, norm, vector


@dataclass
class ClassifierTrained(Result):
    """A trained embedding classifier: its folder, manifest (metrics, embedding model, data) and history id."""

    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassifierList(Result):
    folder: str = ""
    classifiers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Classification(Result):
    """Labels and probabilities of texts by a classifier, with its embedding model and the latency."""

    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassifierCheckResult(Result):
    """A classifier checked on quantized variants' embeddings: one row per model, the report file."""

    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class EndpointList(Result):
    """Remote endpoints with their members' health; `changed` says what a command just did to them."""

    endpoints: list[dict[str, Any]] = field(default_factory=list)
    changed: str = ""


@dataclass
class ExportResult(Result):
    """The command that serves a model on another engine, and what to know about it."""

    target: str = ""
    model: str = ""
    command: str = ""
    notes: list[str] = field(default_factory=list)
    experimental: bool = False


@dataclass
class Confirm(Result):
    """The command needs a yes first (destructive, or understood with low confidence).

    The interactive shell asks `question` [y/N] and, on yes, runs the same command again with
    slots.yes set; -c / --script fail with the question as the error (add --yes to run it).
    """

    question: str = ""
    ok: bool = False


@dataclass
class AlreadyLoaded(Loaded):
    """`load model X` when X was loaded already: nothing was loaded, its last use (keep_alive) starts over."""


@dataclass
class ModelChanged(Result):
    """A model removed, renamed or copied: what changed on disk (model_admin.Change as a dict)."""

    change: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelDetails(Result):
    """`show NAME`: the manifest's facts, the lineage tree, the latest figures, chat template and context."""

    model: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiskUsage(Result):
    """Per model: bytes on disk and what removing it frees; the total and the disk's free space."""

    usage: dict[str, Any] = field(default_factory=dict)
