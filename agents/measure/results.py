"""What measuring returns: experiments, agreement reports, embeddings and the recorded history.

The library (lqmf.api) returns these, the shell draws them (cli/render.py) and --json prints their to_dict().
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Optional

from agents.measure.embedding_fidelity import EmbeddingFidelityStats
from agents.measure.fidelity import FidelityStats
from agents.measure.quality import QualityHeuristic
from lqmf.base.results import Result

if TYPE_CHECKING:  # the report's module stays unimported until an agreement runs
    from agents.measure.agreement import AgreementReport

# Over HTTP the decode time is when the tokens after the first arrived here. When they came within this share
# of the whole request (an answer buffered by the remote or the network, or sent as one piece), their arrival
# says nothing of how fast they were decoded: such a run has no decode rate.
BURST_SHARE = 0.1


def arrived_in_one_burst(decode_s: float, latency_s: float) -> bool:
    """Whether the tokens after the first arrived too close together for their times to be a decode rate."""
    return latency_s > 0 and decode_s < BURST_SHARE * latency_s


@dataclass
class RunFigures:
    """One generation, measured on the model's worker (times in seconds)."""

    model: str
    prompt: str
    response: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    ttft_s: float  # prompt processing up to the first token
    decode_s: float  # after the first token
    latency_s: float  # submit to result, queueing included
    quality: QualityHeuristic
    # False when decode_s is no decode time: a remote's answer that arrived in one burst (arrived_in_one_burst).
    decode_timed: bool = True

    @property
    def prompt_tps(self) -> Optional[float]:
        """Prompt tokens over the time to the first token."""
        return self.prompt_tokens / self.ttft_s if self.ttft_s > 0 else None

    @property
    def gen_tps(self) -> Optional[float]:
        """Tokens after the first over the time after the first (the first belongs to the prompt's time)."""
        if self.completion_tokens > 1 and self.decode_s > 0 and self.decode_timed:
            return (self.completion_tokens - 1) / self.decode_s
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the rates and the heuristic under its full name."""
        data = asdict(self)
        data["quality_heuristic"] = data.pop("quality")
        data.update(prompt_tps=self.prompt_tps, gen_tps=self.gen_tps)
        return data


@dataclass
class SpeedFigures:
    """A model's speed over its runs: totals, rates over summed times, latency percentiles (seconds)."""

    runs: int
    prompt_tokens: int
    completion_tokens: int
    prompt_tps: Optional[float]
    gen_tps: Optional[float]  # tokens after the first over decode time: the generation rate
    ttft_p50_s: float
    latency_p50_s: float
    latency_p95_s: float
    quality_heuristic: float  # the word heuristic's mean (agents/measure/quality.py): no measure of correctness
    untimed_runs: int = 0  # runs whose decode could not be timed (a remote's burst): left out of gen_tps


@dataclass
class LoadFigures:
    """What loading a model for a benchmark cost (a remote model: timed over HTTP, no memory here)."""

    load_time_s: float
    loaded_by_benchmark: bool
    footprint_bytes: Optional[int]
    peak_rss_attributable_bytes: Optional[int]  # only when the benchmark did the load: the rise over the process
    measured_over: Optional[str] = None  # "http" for a remote model (TTFT and latency include the network)
    host: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; where it was measured is said only for a remote model."""
        data = asdict(self)
        if self.measured_over is None:
            del data["measured_over"], data["host"]
        return data


@dataclass
class ModelRow:
    """One model in an experiment: its file's facts, its speed, its load, its fidelity against the reference.

    A part an experiment did not measure is None (a fidelity report has no speed; a prompt experiment
    no file facts); `rank` is set where rows are ranked by speed (benchmark, compare).
    """

    model: str
    format: Optional[str] = None  # gguf | gptq | bnb | hf | remote
    level: Optional[str] = None  # q4_k_m, nf4, f16 ...
    bits: Optional[float] = None  # the level's nominal bits per weight (the manifest has the measured ones)
    size_bytes: Optional[int] = None  # on disk; None for a remote model
    speed: Optional[SpeedFigures] = None  # prompt experiments, benchmark, compare
    load: Optional[LoadFigures] = None  # benchmark, compare
    fidelity: Optional[FidelityStats] = None  # fidelity, compare (local models that share a reference)
    rank: Optional[int] = None  # 1 = the fastest
    embedding: Optional[EmbeddingFidelityStats] = None  # an embedding model's fidelity (its peer of `fidelity`)
    bits_per_weight: Optional[float] = None  # measured, from the manifest (set where a table shows it)

    @property
    def gen_tps(self) -> Optional[float]:
        """The generation rate, when speed was measured: what rows are ranked by."""
        return self.speed.gen_tps if self.speed else None

    def value(self, key: str) -> Any:
        """One figure by its JSON name ("gen_tps", "kld_mean", "size_bytes"), from whichever part holds it."""
        for part in (self, self.speed, self.load, self.fidelity, self.embedding):
            if part is not None and key in {f.name for f in fields(part)}:
                return getattr(part, key)
        return None

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON object, as the history stores it: the parts that were measured, side by side."""
        data: dict[str, Any] = {"model": self.model}
        if self.speed is not None:
            data.update(asdict(self.speed))
        if self.format is not None:
            data.update(format=self.format, level=self.level, bits=self.bits, size_bytes=self.size_bytes)
        if self.load is not None:
            data.update(self.load.to_dict())
        if self.fidelity is not None:
            data.update(self.fidelity.to_dict())
        if self.embedding is not None:
            data.update(self.embedding.to_dict())
        if self.bits_per_weight is not None:
            data["bits_per_weight"] = self.bits_per_weight
        if self.rank is not None:
            data["rank"] = self.rank
        return data


@dataclass
class ExperimentResult(Result):
    """A finished experiment: per-model rows, per-generation runs, the recommendation and the report file."""

    id: int = 0
    kind: str = ""
    models: list[str] = field(default_factory=list)
    rows: list[ModelRow] = field(default_factory=list)
    runs: list[RunFigures] = field(default_factory=list)
    recommendation: str = ""
    reference: Optional[str] = None
    report_path: Optional[str] = None
    notes: list[str] = field(default_factory=list)

    def row(self, model: str) -> ModelRow:
        """The row of one model (KeyError when the experiment has none)."""
        for row in self.rows:
            if row.model == model:
                return row
        raise KeyError(model)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: rows and runs as flat objects, as the history stores them."""
        return {"ok": self.ok, "id": self.id, "kind": self.kind, "models": self.models,
                "rows": [row.to_dict() for row in self.rows], "runs": [run.to_dict() for run in self.runs],
                "recommendation": self.recommendation, "reference": self.reference, "report_path": self.report_path,
                "notes": self.notes, "type": type(self).__name__}


@dataclass
class AgreementResult(Result):
    """How two variants agree on a labelled dataset (the per-example CSV is at report.csv_path)."""

    report: Optional["AgreementReport"] = None


@dataclass
class EmbeddedText:
    """One text's raw embedding: its token count, the vector's norm and the whole vector."""

    text: str
    tokens: int
    norm: float
    vector: list[float]


@dataclass
class EmbeddingResult(Result):
    """Raw (unnormalised) embeddings of one or more texts: per text its tokens, norm and whole vector."""

    model: str = ""
    dim: int = 0
    pooling: str = ""
    seconds: float = 0.0
    items: list[EmbeddedText] = field(default_factory=list)


@dataclass
class EmbeddingsSideBySide(Result):
    """The same texts embedded by several models ("embed X with A and B"): each model's embeddings, and per text
    the cosine similarity of each other model's vector to the first model's (None where the sizes differ)."""

    results: list[EmbeddingResult] = field(default_factory=list)
    cosines: list[list[Optional[float]]] = field(default_factory=list)  # [text][other model]

    @classmethod
    def of(cls, results: list[EmbeddingResult]) -> "EmbeddingsSideBySide":
        import numpy as np

        first, others = results[0], results[1:]
        cosines = []
        for index, item in enumerate(first.items):
            row: list[Optional[float]] = []
            for other in others:
                a, b = np.asarray(item.vector), np.asarray(other.items[index].vector)
                row.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) if a.shape == b.shape else None)
            cosines.append(row)
        return cls(results=results, cosines=cosines)


@dataclass
class ExperimentList(Result):
    """Recorded experiments, newest first, as the history store keeps them."""

    experiments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Statistics(Result):
    """Counts in the history and served requests per model."""

    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class SpeculationRow:
    """One speculation candidate's single-stream decode rate per kind, and whether its text was identical."""

    label: str
    rates: dict[str, float] = field(default_factory=dict)  # kind -> tokens/s (median of the prompts)
    speedups: dict[str, float] = field(default_factory=dict)  # kind -> rate / rate without speculation
    identical: bool = True
    accepted: dict[str, float] = field(default_factory=dict)  # kind -> accepted drafted tokens / generated
    error: str = ""


@dataclass
class SettingsRow:
    """One engine-settings candidate's aggregate tokens/s and TTFT p50 per number of clients."""

    label: str
    slots: int
    threads: int
    ubatch: Optional[int]
    aggregate: dict[int, float] = field(default_factory=dict)
    ttft_ms: dict[int, float] = field(default_factory=dict)
    error: str = ""

    def score(self) -> float:
        values = [v for v in self.aggregate.values() if v > 0]
        return statistics.geometric_mean(values) if values else 0.0


@dataclass
class TuneResult(Result):
    """What `tune NAME` measured and chose; `tuning` is what the model's child now starts with."""

    model: str = ""
    machine: str = ""
    plan: list[str] = field(default_factory=list)
    speculation: list[SpeculationRow] = field(default_factory=list)
    settings: list[SettingsRow] = field(default_factory=list)
    tuning: Optional[dict[str, Any]] = None
    chosen: str = ""  # in words
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    experiment_id: int = 0
