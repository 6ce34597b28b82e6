"""What runs a QuantizePlan: the factory's steps, then, when the plan asks, the fidelity report card.

A plan is data and never calls back up into the library that made it; it holds one of these runners.
`FactoryRunner` runs on a factory that is open now (a Library's); `FreshRunner` makes a manager, a history store
and a factory of its own from the settings when the plan runs, and closes them after: `lqmf.quantize()` returns
its plan after its planning library has closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from lqmf.base.progress import Progress
from lqmf.base.settings import Settings, load_settings

if TYPE_CHECKING:  # typing only: the factory's and the lab's modules load when a plan runs
    from agents.measure.results import ExperimentResult
    from agents.quantization.factory import QuantizationAgent
    from agents.quantization.results import Quantized, QuantizePlan

# (model, reference, progress) -> the fidelity report card of model against reference
Fidelity = Callable[[str, str, Optional[Progress]], "ExperimentResult"]


def lab_fidelity(settings: Settings, manager, store) -> Fidelity:
    """The fidelity measurement of an experiment agent over this manager and store (made when first asked)."""

    def measure(model: str, reference: str, progress: Optional[Progress]) -> "ExperimentResult":
        from agents.measure.experiments import ExperimentAgent

        return ExperimentAgent(settings, manager, store).fidelity(model, reference, progress=progress)

    return measure


@dataclass(frozen=True)
class FactoryRunner:
    """Runs a plan's steps on `factory`; then, when the plan asks, `fidelity` against the plan's source."""

    factory: "QuantizationAgent"
    fidelity: Optional[Fidelity] = None  # None: an experiment agent over the factory's manager and store

    def __call__(self, planned: "QuantizePlan", progress: Optional[Progress] = None) -> "Quantized":
        from agents.quantization.results import Quantized

        plan = planned.plan
        done = self.factory.run(plan, progress=progress)
        output = Path(plan.output_path)
        model = output.stem if output.suffix == ".gguf" else output.name  # as discovery names it
        result = Quantized(run_id=done.run_id, output=output.name, model=model, plan=plan, manifest=done.manifest,
                           wall_time_s=done.wall_time_s, peak_rss_bytes=done.peak_rss_bytes,
                           acquired=planned.acquired)
        if plan.fidelity:
            factory = self.factory
            measure = self.fidelity or lab_fidelity(factory.settings, factory.manager, factory.store)
            result.fidelity = measure(model, plan.source, progress)
        return result


@dataclass(frozen=True)
class FreshRunner:
    """Runs a plan on a manager, a history store and a factory of its own, made when it runs and closed after.

    `settings` None: read from the environment (LQMF_*) when the plan runs.
    """

    settings: Optional[Settings] = None

    def __call__(self, planned: "QuantizePlan", progress: Optional[Progress] = None) -> "Quantized":
        from agents.quantization.factory import QuantizationAgent
        from memory.store import Store
        from server.runtime.manager import ModelManager

        settings = self.settings or load_settings()
        manager = ModelManager(settings)
        store = None
        try:
            store = Store(settings.db_path)
            return FactoryRunner(QuantizationAgent(settings, manager, store))(planned, progress)
        finally:
            manager.close()  # unloads what the fidelity measurement loaded
            if store is not None:
                store.close()
