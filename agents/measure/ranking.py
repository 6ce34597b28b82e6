"""From measured runs to a table: each model's row, the ranking by speed, and the one-line verdicts."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

from agents.measure.results import ModelRow, RunFigures, SpeedFigures


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_runs(model: str, runs: list[RunFigures]) -> ModelRow:
    """A model's row from its runs: totals, rates over summed times, latency percentiles."""
    if not runs:
        return ModelRow(model)
    decoded = [r for r in runs if r.completion_tokens > 1]
    timed = [r for r in decoded if r.decode_timed]  # a remote's burst has no decode time to sum
    decode_s = sum(r.decode_s for r in timed)
    ttft_s = sum(r.ttft_s for r in runs)
    latencies = [r.latency_s for r in runs]
    return ModelRow(model, speed=SpeedFigures(
        runs=len(runs),
        prompt_tokens=sum(r.prompt_tokens for r in runs),
        completion_tokens=sum(r.completion_tokens for r in runs),
        prompt_tps=sum(r.prompt_tokens for r in runs) / ttft_s if ttft_s > 0 else None,
        gen_tps=sum(r.completion_tokens - 1 for r in timed) / decode_s if decode_s > 0 else None,
        ttft_p50_s=percentile([r.ttft_s for r in runs], 50),
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        quality_heuristic=sum(r.quality.total for r in runs) / len(runs),
        untimed_runs=len(decoded) - len(timed),
    ))


def untimed_notes(rows: list[ModelRow]) -> list[str]:
    """What each row with answers that arrived in one burst over HTTP left out of its generation rate."""
    notes = []
    for row in rows:
        speed = row.speed
        if speed is None or not speed.untimed_runs:
            continue
        which = ("its answer" if speed.runs == 1 else f"all {speed.runs} answers" if speed.untimed_runs == speed.runs
                 else f"{speed.untimed_runs} of {speed.runs} answers")
        rest = (f"its generation rate is over the other {speed.runs - speed.untimed_runs}" if row.gen_tps
                else "it has no generation rate and is not ranked by speed")
        notes.append(f"{row.model}: {which} arrived in one burst over HTTP (the tokens after the first came at "
                     "once), so their arrival times are no decode rate; " + rest)
    return notes


def rank(rows: list[ModelRow]) -> list[ModelRow]:
    """Rows ordered by generation speed, fastest first, each with its rank (none for a row without a rate)."""
    ordered = sorted(rows, key=lambda r: -(r.gen_tps or 0))
    return [dataclasses.replace(row, rank=i + 1 if row.gen_tps else None) for i, row in enumerate(ordered)]


def recommend(rows: list[ModelRow], reference: Optional[str] = None) -> str:
    """One line naming the fastest, the most faithful (the reference aside) and the smallest, with their numbers."""
    parts = []
    fast = [r for r in rows if r.gen_tps]
    if fast:
        best = max(fast, key=lambda r: r.gen_tps)
        parts.append(f"fastest: {best.model} ({best.gen_tps:.1f} tok/s)")
    faithful = [r for r in rows if r.fidelity is not None and r.model != reference]
    if faithful:
        best = min(faithful, key=lambda r: r.fidelity.kld_mean)
        parts.append(f"most faithful: {best.model} (KLD {best.fidelity.kld_mean:.5f}, "
                     f"top-1 {100 * best.fidelity.top1_agreement:.1f}%)")
    sized = [r for r in rows if r.size_bytes]
    if sized:
        best = min(sized, key=lambda r: r.size_bytes)
        parts.append(f"smallest: {best.model} ({best.size_bytes / 2**20:.1f} MiB)")
    return " · ".join(parts)


def fidelity_verdict(rows: list[ModelRow], reference: str) -> str:
    """One line per variant: its KLD, top-1 agreement and perplexity change against the reference."""
    parts = []
    for row in rows:
        if row.model != reference:
            f = row.fidelity
            change = 100 * (f.ppl_test / f.ppl_ref - 1)
            parts.append(f"{row.model}: KLD {f.kld_mean:.5f}, same top token {100 * f.top1_agreement:.1f}%, "
                         f"perplexity {change:+.2f}% vs {reference}")
    return " · ".join(parts)
