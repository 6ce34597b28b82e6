"""What the factory returns: a plan to inspect and run, the finished run, downloads, imports and the run history.

The library (lqmf.api) returns these, the shell draws them (cli/render.py) and --json prints their to_dict().
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from lqmf.base.errors import LQMFError, PlanRefused
from lqmf.base.progress import Progress
from lqmf.base.results import Result

if TYPE_CHECKING:  # typing only: the factory's modules load when a plan is made
    from agents.measure.results import ExperimentResult
    from agents.quantization.acquire import Acquired
    from agents.quantization.plan import QuantPlan


def _acquired_dict(acquired: Optional["Acquired"]) -> Optional[dict[str, Any]]:
    if acquired is None:
        return None
    data = asdict(acquired)
    data["path"] = str(data["path"])
    return data


@dataclass
class Quantized(Result):
    """A finished quantization run: the plan it followed, the output's manifest and the run's measurements."""

    run_id: int = 0
    output: str = ""  # the output's file or folder name in the models folder
    model: str = ""  # the output as discovery names it (a .gguf file without its suffix): what load() takes
    plan: Optional["QuantPlan"] = None
    manifest: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    peak_rss_bytes: int = 0
    acquired: Optional["Acquired"] = None  # the download that came first, when the source was a repo id
    fidelity: Optional["ExperimentResult"] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the plan and the download as plain data."""
        return {"ok": self.ok, "run_id": self.run_id, "output": self.output, "model": self.model,
                "plan": self.plan.to_dict() if self.plan else None, "manifest": self.manifest,
                "wall_time_s": self.wall_time_s, "peak_rss_bytes": self.peak_rss_bytes,
                "acquired": _acquired_dict(self.acquired),
                "fidelity": self.fidelity.to_dict() if self.fidelity else None, "type": type(self).__name__}


Runner = Callable[["QuantizePlan", Optional[Progress]], Quantized]


@dataclass
class QuantizePlan(Result):
    """A quantization plan, shown before it runs: inspect it, then run() it (a refused one says why and won't run).

    Made by `Library.quantize()` with the runner that runs it (agents/quantization/plan_runner.py: the plan never
    calls back into the library); nothing has run while you hold it.
    """

    plan: Optional["QuantPlan"] = None
    acquired: Optional["Acquired"] = None  # the download that came first, when the source was a repo id
    runner: Optional[Runner] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ok = self.runnable

    @property
    def problems(self) -> list[str]:
        """Why the plan cannot run (empty when it can)."""
        return list(self.plan.problems) if self.plan else ["no plan"]

    @property
    def runnable(self) -> bool:
        """Whether run() would start."""
        return self.plan is not None and self.plan.runnable

    @property
    def refused(self) -> bool:
        """The opposite of runnable: the shell draws a refused plan in red."""
        return not self.runnable

    @property
    def output(self) -> str:
        """The output's file or folder name in the models folder."""
        return self.plan.output_name if self.plan else ""

    def run(self, progress: Optional[Progress] = None) -> Quantized:
        """Run the plan (progress gets each step, and tensors within a step); a refused plan raises PlanRefused."""
        if not self.runnable:
            raise PlanRefused("; ".join(self.problems), "change the request (see the plan) and try again")
        if self.runner is None:
            raise LQMFError("this plan has no library to run it", "make it with lqmf.quantize() or Library.quantize()")
        return self.runner(self, progress)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the plan's fields, whether it was refused, and the download that came first."""
        return {"ok": self.ok, "plan": self.plan.to_dict() if self.plan else None, "refused": self.refused,
                "acquired": _acquired_dict(self.acquired), "type": type(self).__name__}


@dataclass
class AcquiredResult(Result):
    """A model downloaded from the Hub or imported from a local path."""

    action: str = ""  # downloaded | imported
    model: Optional["Acquired"] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the model's facts with its path as text."""
        return {"ok": self.ok, "action": self.action, "model": _acquired_dict(self.model), "type": type(self).__name__}


@dataclass
class QuantizationList(Result):
    """Recorded quantization runs, newest first, as the history store keeps them."""

    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LoggedIn(Result):
    """A Hugging Face token validated and kept in the hub's own store."""

    user: str = ""
    token_path: str = ""
