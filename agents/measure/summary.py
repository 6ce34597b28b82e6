"""What the history says about the models here: the fastest and the most faithful, like with like.

A figure is compared only with figures measured the same way: speeds on the same prompt set and the same
generation length, fidelity against the same reference on the same scored text. Models that no longer exist
(files removed, endpoints forgotten) are left out, and a rate timed over HTTP from answers that arrived in one
burst is no decode rate, so nothing is ranked on it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Collection, Optional, Sequence

from agents.measure.results import arrived_in_one_burst

SPEED_KINDS = ("auto-benchmark", "benchmark", "compare")
FIDELITY_KINDS = ("fidelity", "compare")
HISTORY_LIMIT = 500  # experiments read, newest first
FIXED_LENGTH_KINDS = ("auto-benchmark", "benchmark")  # they ignore end-of-text: every answer is max_tokens long


def prompt_set(prompts: Sequence[Any], standard: Sequence[str]) -> dict[str, Any]:
    """How an experiment records its prompts: a name a reader knows, their count and a hash of their text."""
    prompts = list(prompts)
    if prompts == list(standard):
        name = "the standard prompt set"
    elif prompts and prompts == list(standard[:len(prompts)]):
        name = f"the standard prompt set's first {len(prompts)}"
    else:
        name = f"a prompt set of {len(prompts)}"
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()[:16]
    return {"name": name, "count": len(prompts), "sha256": digest}


@dataclass(frozen=True)
class Workload:
    """How a speed was measured: which prompts, how many tokens each, whether answers ran to that length."""

    key: str
    prompts: str  # in words: "the standard prompt set's first 3"
    max_tokens: Optional[int]
    fixed_length: bool

    def describe(self) -> str:
        """In words, for the summary line."""
        length = (f"{self.max_tokens} tokens each" if self.fixed_length else f"up to {self.max_tokens} tokens each")
        return f"{self.prompts} ({length})" if self.max_tokens else self.prompts


def workload_of(exp: dict[str, Any]) -> Workload:
    """The workload an experiment recorded (an older record without its prompt set: by count, said so)."""
    params = exp.get("params") or {}
    recorded = params.get("prompt_set") if isinstance(params.get("prompt_set"), dict) else None
    fixed = bool(params.get("ignore_eos", exp["kind"] in FIXED_LENGTH_KINDS))
    max_tokens = params.get("max_tokens")
    if recorded:
        key, words = f"sha256:{recorded.get('sha256')}", str(recorded.get("name"))
    else:
        count = params.get("prompts")
        key, words = f"unrecorded:{count}", f"{count} prompts (the record does not say which)"
    return Workload(f"{key}|{max_tokens}|{fixed}", words, max_tokens, fixed)


def decode_rate(row: dict[str, Any]) -> tuple[Optional[float], Optional[str]]:
    """A recorded row's generation rate, or None and why it is no decode rate."""
    rate = row.get("gen_tps")
    if not rate:
        if row.get("untimed_runs"):
            return None, "its answers arrived in one burst over HTTP: their arrival times are no decode rate"
        return None, "no generation rate was measured"
    ttft, latency = row.get("ttft_p50_s"), row.get("latency_p50_s")
    # Rows recorded before bursts were told apart carry no `untimed_runs`: judged by their medians.
    if (row.get("measured_over") == "http" and "untimed_runs" not in row and ttft is not None and latency
            and arrived_in_one_burst(latency - ttft, latency)):
        return None, (f"time to first token ({ttft:.3f} s) is nearly all its latency ({latency:.3f} s): the answers "
                      "arrived in one burst over HTTP, so their arrival times are no decode rate")
    return float(rate), None


@dataclass
class _Group:
    """Rows measured the same way: each model's newest, with the experiment it came from."""

    rows: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)

    def add(self, row: dict[str, Any], exp: dict[str, Any]) -> None:
        self.rows.setdefault(row["model"], (row, exp))  # experiments come newest first

    def span(self) -> str:
        """When the group's figures were measured, in words."""
        days = sorted({_when(exp.get("finished_at")) for _, exp in self.rows.values()})
        return f"on {days[0]}" if len(days) == 1 else f"between {days[0]} and {days[-1]}"


def _when(ts: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts)) if ts else "an unknown date"


def _speed(store, present: Optional[Collection[str]], out: dict[str, Any],
           among: Optional[Collection[str]] = None) -> Optional[str]:
    groups: dict[str, tuple[Workload, _Group]] = {}
    order: list[str] = []  # workload keys, the newest experiment's first
    newest: dict[str, tuple[dict[str, Any], dict[str, Any], Workload]] = {}
    gone: set[str] = set()
    for exp in store.experiments(kind=SPEED_KINDS, status="done", limit=HISTORY_LIMIT):
        work = workload_of(exp)
        for row in (exp.get("summary") or {}).get("models", []):
            if not isinstance(row, dict) or "runs" not in row:  # a row without speed figures
                continue
            if among is not None and row["model"] not in among:
                continue
            if present is not None and row["model"] not in present:
                gone.add(row["model"])
                continue
            newest.setdefault(row["model"], (row, exp, work))
            if work.key not in groups:
                groups[work.key] = (work, _Group())
                order.append(work.key)
            groups[work.key][1].add(row, exp)
    out["speed_by_model"] = {}
    for name, (row, exp, work) in sorted(newest.items()):
        rate, why = decode_rate(row)
        out["speed_by_model"][name] = {
            "gen_tps": rate, "ttft_p50_s": row.get("ttft_p50_s"), "format": row.get("format"),
            "measured_over": row.get("measured_over", "local"), "experiment_id": exp["id"],
            "measured_on": work.describe(), **({"no_rate": why} if why else {}),
        }
    # The newest workload with a rate to rank: its models, each at its newest figures on it.
    for key in order:
        work, group = groups[key]
        rated = {name: decode_rate(row) for name, (row, _) in group.rows.items()}
        ranked = sorted((name for name, (rate, _) in rated.items() if rate), key=lambda n: -rated[n][0])
        if not ranked:
            continue
        best, exp = group.rows[ranked[0]]
        compared = {"models": ranked, "measured_on": work.describe(), "max_tokens": work.max_tokens,
                    "when": group.span(), "experiment_ids": sorted({e["id"] for _, e in group.rows.values()}),
                    "not_ranked": {n: why for n, (rate, why) in sorted(rated.items()) if not rate},
                    "left_out": sorted(gone)}
        out["fastest_model"] = {
            "model": best["model"], "gen_tps": rated[best["model"]][0], "prompt_tps": best.get("prompt_tps"),
            "ttft_p50_s": best.get("ttft_p50_s"), "latency_p50_s": best.get("latency_p50_s"),
            "latency_p95_s": best.get("latency_p95_s"), "format": best.get("format"),
            "measured_over": best.get("measured_over", "local"), "experiment_id": exp["id"],
            "kind": exp["kind"], "measured_at": exp["finished_at"], "compared": compared,
        }
        among = f"the fastest of the {len(ranked)} models" if len(ranked) > 1 else "the only model"
        return (f"speed: {best['model']} ({rated[best['model']][0]:.1f} tok/s), {among} measured on "
                f"{work.describe()} {group.span()}")
    return None


def _fidelity(store, present: Optional[Collection[str]], out: dict[str, Any],
              among: Optional[Collection[str]] = None) -> Optional[str]:
    groups: dict[tuple[str, str], _Group] = {}
    gone: set[str] = set()
    for exp in store.experiments(kind=FIDELITY_KINDS, status="done", limit=HISTORY_LIMIT):
        summary = exp.get("summary") or {}
        reference = summary.get("reference")
        if not reference:
            continue
        if present is not None and reference not in present:
            gone.add(reference)
            continue
        for row in summary.get("models", []):
            if not isinstance(row, dict) or row.get("kld_mean") is None or row["model"] == reference:
                continue
            if among is not None and row["model"] not in among:
                continue
            if present is not None and row["model"] not in present:
                gone.add(row["model"])
                continue
            # The same reference on the same scored text (source, windows, tokens): nothing else compares.
            text = row.get("ppl_text") or summary.get("text") or "a text the record does not name"
            groups.setdefault((reference, text), _Group()).add(row, exp)
    if not groups:
        return None
    # dicts keep insertion order: the first group is the one the newest fidelity figures belong to.
    (reference, text), group = next(iter(groups.items()))
    best, exp = min(group.rows.values(), key=lambda pair: pair[0]["kld_mean"])
    ordered = sorted(group.rows, key=lambda n: group.rows[n][0]["kld_mean"])
    out["most_faithful_model"] = {
        "model": best["model"], "reference": reference, "kld_mean": best["kld_mean"],
        "top1_agreement": best.get("top1_agreement"), "ppl": best.get("ppl_test"),
        "experiment_id": exp["id"], "measured_at": exp["finished_at"],
        "compared": {"models": ordered, "reference": reference, "text": text, "when": group.span(),
                     "experiment_ids": sorted({e["id"] for _, e in group.rows.values()}), "left_out": sorted(gone)},
    }
    among = (f"the most faithful of the {len(ordered)} models" if len(ordered) > 1 else "the only model")
    return (f"fidelity: {best['model']} (KLD {best['kld_mean']:.5f} vs {reference}), {among} measured against "
            f"{reference} on the same text {group.span()}")


def benchmark_summary(store, present: Optional[Collection[str]] = None,
                      among: Optional[Collection[str]] = None) -> dict[str, Any]:
    """The fastest model and the most faithful one, each among figures measured the same way.

    `present` names the models that exist now (on disk and registered endpoints); the others are left out.
    `among` narrows the choice to those models ("is A or B the better pick?"); a reference may be any model.
    Speed: the newest prompt set and length with a decode rate, each model's newest figures on it.
    Fidelity: the newest reference and scored text, each variant's newest figures against it; lowest KLD.
    """
    out: dict[str, Any] = {"fastest_model": None, "most_faithful_model": None, "recommendation": None}
    parts = [part for part in (_speed(store, present, out, among), _fidelity(store, present, out, among)) if part]
    out["recommendation"] = " | ".join(parts) or None
    if not parts:
        out["note"] = ("nothing measured yet: benchmarks run every LQMF_AUTO_BENCHMARK_EVERY requests, "
                       "or run one from the shell")
    return out
