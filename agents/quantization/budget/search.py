"""The budget search, end to end: measure a source once, solve any budget against the measurements, verify.

measure_source() is the expensive part (sensitivities on calibration text, every standard level measured on
the held-out fidelity text for the frontier and for checking the predictions); it is kept in the history under
the source's hash, so a second budget on the same source costs one solve, one quantization and one KLD run.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from agents.quantization.budget.evaluate import KldMeter, ScoringText
from agents.quantization.budget.mixwrite import write_mix
from agents.quantization.budget.sensitivity import Sensitivity, measure_sensitivity
from agents.quantization.budget.solve import Allocation, Frontier
from agents.quantization.budget.space import MixSpace
from agents.quantization.budget.target import KLD, RAM, Budget, BudgetError, decimal_mb
from lqmf.base.tools import LlamaTools

log = logging.getLogger(__name__)

SEARCH_VERSION = 1  # bump when what is measured changes: older cached measurements are then not reused
CALIBRATION_WINDOWS = 3  # of 512 tokens: the probes' text (held apart from the fidelity text)
HELDOUT_WINDOWS = 8  # as `fidelity` measures (agents.measure.experiments.DEFAULT_CHUNKS)
LEVELS = ("q2_k", "q3_k_m", "q4_k_s", "q4_k_m", "q5_k_m", "q6_k", "q8_0")
MAX_TRIES = 3  # solves for a KLD budget whose first mix measured above it

Tick = Callable[[str, int, int], None]


@dataclass
class LevelPoint:
    """A standard level of the source, measured: the frontier's reference points and the predictions' check."""

    label: str
    kind: str  # level | level+imatrix
    size_bytes: int
    kld: float
    ppl: float
    ppl_ref: float
    top1: float
    predicted_kld: Optional[float]


@dataclass
class Measurements:
    """Everything a budget needs about one source, kept in the history."""

    sensitivity: Sensitivity
    levels: list[LevelPoint]
    heldout: str  # what the levels' (and every result's) KLD was measured on
    seconds: float
    version: int = SEARCH_VERSION

    @property
    def correction(self) -> float:
        """Measured over predicted KLD, the median over the standard levels: how far the sum of the tensors'
        separate effects falls short of their joint effect (used to scale predictions; 1 without levels)."""
        ratios = [p.kld / p.predicted_kld for p in self.levels if p.predicted_kld and p.kld > 0]
        return statistics.median(ratios) if ratios else 1.0

    def validation(self) -> dict[str, Any]:
        """Predicted against measured KLD over the standard levels (mixes the search never chose): rank correlation
        and relative errors of the raw sums, and of the sums corrected leave-one-out (each level's correction from
        the other levels only, so no level checks a figure fitted to itself)."""
        points = [p for p in self.levels if p.predicted_kld and p.kld > 0]
        out = validation_of([(p.predicted_kld, p.kld) for p in points], [p.label for p in points])
        corrected = []
        for i, p in enumerate(points):
            others = [q.kld / q.predicted_kld for j, q in enumerate(points) if j != i]
            corrected.append((p.predicted_kld * (statistics.median(others) if others else 1.0), p.kld))
        loo = validation_of(corrected, [p.label for p in points])
        out["corrected_median_abs_rel_error"] = loo["median_abs_rel_error"]
        out["corrected_max_abs_rel_error"] = loo["max_abs_rel_error"]
        out["correction"] = self.correction
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"sensitivity": self.sensitivity.to_dict(), "levels": [asdict(p) for p in self.levels],
                "heldout": self.heldout, "seconds": self.seconds, "version": self.version}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Measurements":
        return cls(Sensitivity.from_dict(data["sensitivity"]), [LevelPoint(**p) for p in data["levels"]],
                   data["heldout"], data["seconds"], data.get("version", 0))


def validation_of(pairs: list[tuple[float, float]], labels: list[str]) -> dict[str, Any]:
    """Spearman's rank correlation of predicted against measured, and the relative errors, per mix."""
    from scipy.stats import spearmanr

    errors = [abs(pred - meas) / meas for pred, meas in pairs if meas > 0]
    rho = float(spearmanr([p for p, _ in pairs], [m for _, m in pairs]).statistic) if len(pairs) >= 3 else None
    return {"mixes": len(pairs), "spearman": rho,
            "median_abs_rel_error": statistics.median(errors) if errors else None,
            "max_abs_rel_error": max(errors) if errors else None,
            "rows": [{"label": label, "predicted": pred, "measured": meas}
                     for label, (pred, meas) in zip(labels, pairs, strict=True)]}


def cache_key(source_sha: str, imatrix: bool) -> str:
    return f"v{SEARCH_VERSION}:{source_sha}:{'imatrix' if imatrix else 'plain'}"


@dataclass
class SearchContext:
    """What a measurement or a check needs: the f16 reference, the tools, a scratch folder, the threads."""

    f16: Path
    tools: LlamaTools
    workdir: Path
    threads: int
    settings: Any
    tick: Optional[Tick] = None
    meters: dict[str, KldMeter] = field(default_factory=dict)

    def heldout(self) -> KldMeter:
        """The fidelity text's meter (the reference's logits computed on first use, then kept)."""
        if "heldout" not in self.meters:
            from agents.measure.experiments import heldout_text

            text, source = heldout_text()
            self.meters["heldout"] = KldMeter(self.f16, ScoringText(text, source, HELDOUT_WINDOWS),
                                              threads=self.threads)
        return self.meters["heldout"]


def measure_source(space: MixSpace, ctx: SearchContext, *, imatrix_file: Path, quant_imatrix: bool) -> Measurements:
    """Sensitivities on calibration text, then every standard level measured on the held-out text."""
    from agents.quantization.calibration import default_calibration

    start = time.perf_counter()
    samples = default_calibration()
    meter = KldMeter(ctx.f16, ScoringText("\n\n".join(samples), "LQMF's calibration text (Python standard library "
                                          "docstrings)", CALIBRATION_WINDOWS), threads=ctx.threads)
    sensitivity = measure_sensitivity(space, ctx.tools, meter, imatrix_file, ctx.workdir, quant_imatrix=quant_imatrix,
                                      threads=ctx.threads, tick=ctx.tick)
    del meter  # its reference logits: a few hundred MB
    levels = [measure_level(space, ctx, level, sensitivity, imatrix_file if quant_imatrix else None, i)
              for i, level in enumerate(LEVELS)]
    return Measurements(sensitivity, levels, ctx.heldout().scored, round(time.perf_counter() - start, 1))


def measure_level(space: MixSpace, ctx: SearchContext, level: str, sensitivity: Sensitivity,
                  imatrix: Optional[Path], index: int) -> LevelPoint:
    """Quantize to a standard level with llama-quantize and measure it on the held-out text."""
    from gguf import GGUFReader

    from lqmf.base.processes import exit_words, run_child_captured

    if ctx.tick:
        ctx.tick(f"measuring {level} for the frontier", index, len(LEVELS))
    out = ctx.workdir / f"level-{level}.gguf"
    cmd = [str(ctx.tools.quantize), *(("--imatrix", str(imatrix)) if imatrix else ()), str(ctx.f16), str(out),
           level.upper(), str(ctx.threads)]
    code, output = run_child_captured(cmd)
    try:
        if code != 0 or not out.is_file():
            raise BudgetError(f"llama-quantize {level} {exit_words(code)}: {output.strip()[-300:]}",
                              "see logs/lqmf.log")
        types = {t.name: t.tensor_type.name for t in GGUFReader(str(out)).tensors if t.name in sensitivity.costs}
        known = all(t in sensitivity.costs[n] for n, t in types.items())
        stats = ctx.heldout().measure(out)
        return LevelPoint(level.upper(), "level+imatrix" if imatrix else "level", out.stat().st_size,
                          stats.kld_mean, stats.ppl_test, stats.ppl_ref, stats.top1_agreement,
                          sensitivity.predict(types) if known else None)
    finally:
        out.unlink(missing_ok=True)


def solve(space: MixSpace, measurements: Measurements, budget: Budget, overhead_bytes: int = 0,
          scale: Optional[float] = None) -> tuple[Frontier, Allocation]:
    """The least-KLD mix within a size or RAM budget, or the smallest within a KLD budget (predictions scaled by
    `scale`, default the measured correction). A budget outside what the mixes reach raises BudgetError naming
    the nearest point that can be made."""
    scale = measurements.correction if scale is None else scale
    costs = {n: {t: c * scale for t, c in by_type.items()} for n, by_type in measurements.sensitivity.costs.items()}
    frontier = Frontier(space, costs)
    smallest, largest = frontier.smallest(), frontier.largest()
    if budget.kind == KLD:
        try:
            return frontier, frontier.at_kld(budget.value)
        except ValueError:
            raise BudgetError(
                f"no mix is predicted to reach KLD {budget.value:g}: the closest, Q8_0 everywhere, is predicted at "
                f"{largest.predicted_kld:.4f} ({decimal_mb(largest.file_bytes)})",
                f"ask for kld {_round_up(largest.predicted_kld)} or more, or keep the f16 model") from None
    limit = int(budget.value) - overhead_bytes
    if limit < frontier.least_budget():
        what = "file" if budget.kind != RAM else f"file (plus {decimal_mb(overhead_bytes)} for the context)"
        raise BudgetError(
            f"no mix fits {decimal_mb(budget.value)}: the smallest {what} this search makes is "
            f"{decimal_mb(smallest.file_bytes + overhead_bytes)} (predicted KLD {smallest.predicted_kld:.4f})",
            f"ask for at least {_round_up_mb(smallest.file_bytes + overhead_bytes)} MB")
    return frontier, frontier.at_budget(limit)


def _round_up(value: float) -> str:
    return f"{float(f'{value * 1.05:.2g}'):g}"


def _round_up_mb(n: float) -> str:
    return f"{-(-n // 100_000) / 10:g}"


def check_mix(space: MixSpace, ctx: SearchContext, allocation: Allocation, out: Path,
              imatrix: Optional[Path]) -> dict[str, Any]:
    """Write the mix and measure it on the held-out text: its exact size and its fidelity figures."""
    write_mix(ctx.tools, ctx.f16, out, allocation.types, imatrix=imatrix, threads=ctx.threads)
    stats = ctx.heldout().measure(out)
    size = out.stat().st_size
    if size != allocation.file_bytes:
        log.warning("the mix is %d bytes, %d predicted", size, allocation.file_bytes)
    return {"size_bytes": size, "kld": stats.kld_mean, "kld_p99": stats.kld_p99, "ppl": stats.ppl_test,
            "ppl_ref": stats.ppl_ref, "top1": stats.top1_agreement, "text": stats.ppl_text}


def search_and_write(space: MixSpace, ctx: SearchContext, measurements: Measurements, budget: Budget, out: Path, *,
                     overhead_bytes: int, imatrix: Optional[Path]) -> dict[str, Any]:
    """Solve, write, measure; for a KLD budget measured above its target, scale the predictions by what was
    measured and solve again (at most MAX_TRIES mixes). Returns the budget details the manifest records."""
    scale = measurements.correction
    tries: list[dict[str, Any]] = []
    while True:
        frontier, allocation = solve(space, measurements, budget, overhead_bytes, scale)
        if ctx.tick:
            ctx.tick(f"writing and measuring mix {len(tries) + 1} ({decimal_mb(allocation.file_bytes)})",
                     len(tries), MAX_TRIES)
        measured = check_mix(space, ctx, allocation, out, imatrix)
        tries.append({"scale": scale, "predicted_kld": allocation.predicted_kld,
                      "size_bytes": allocation.file_bytes, "measured_kld": measured["kld"]})
        over = budget.kind == KLD and measured["kld"] > budget.value
        if not over or len(tries) >= MAX_TRIES:
            break
        scale *= measured["kld"] / max(allocation.predicted_kld, 1e-12)
        log.info("mix measured KLD %.5f over the budget %.5f: predictions scaled by %.3f", measured["kld"],
                 budget.value, scale)
    if budget.kind == KLD and measured["kld"] > budget.value:
        raise BudgetError(f"after {len(tries)} mixes the best measured KLD is {measured['kld']:.4f}, above "
                          f"{budget.value:g}", f"ask for kld {_round_up(measured['kld'])}, or keep the f16 model")
    return {"allocation": allocation, "measured": measured, "tries": tries,
            "curve": frontier.curve(), "scale": scale}
