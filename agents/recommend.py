""""Which model is fastest?", "which one should I use?": answered from the recorded measurements, never guessed.

The figures are the history's summary (agents/measure/experiments.py `benchmark_summary`, the one GET
/benchmark/summary serves); where nothing is measured the answer says what to type to measure it.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from agents import model_sets as ms
from agents import results as r

MEASURE_SPEED = "benchmark all models"
MEASURE_FIDELITY = "compare all models"


def _speed(summary: dict[str, Any]) -> Optional[str]:
    best = summary.get("fastest_model")
    if not best:
        return None
    where = f"{best.get('kind', 'benchmark')} #{best['experiment_id']}" if best.get("experiment_id") else "measured"
    return f"fastest: {best['model']} at {best['gen_tps']:.1f} tokens/s ({where})"


def _fidelity(summary: dict[str, Any]) -> Optional[str]:
    best = summary.get("most_faithful_model")
    if not best:
        return None
    top1 = f", same top token {100 * best['top1_agreement']:.1f}%" if best.get("top1_agreement") is not None else ""
    where = f", experiment #{best['experiment_id']}" if best.get("experiment_id") else ""
    return f"most faithful: {best['model']} (KLD {best['kld_mean']:.5f} against {best.get('reference')}{top1}{where})"


FOCUS = {"speed": ((_speed, MEASURE_SPEED),), "fidelity": ((_fidelity, MEASURE_FIDELITY),),
         "": ((_speed, MEASURE_SPEED), (_fidelity, MEASURE_FIDELITY))}


def recommendation(library: Any, focus: Optional[str] = None, among: Sequence[str] = ()) -> r.Result:
    """The measured answer for a focus ("speed", "fidelity", None: both), or what to measure first; with `among`
    ("is A or B the better pick?"), the answer among those models only."""
    summary = library.benchmark_summary(among=among or None)  # GET /benchmark/summary: what no longer exists is out
    speed_todo, fidelity_todo = (f"benchmark {' and '.join(among)}", f"compare {' and '.join(among)}") if among \
        else (MEASURE_SPEED, MEASURE_FIDELITY)
    measures = {MEASURE_SPEED: speed_todo, MEASURE_FIDELITY: fidelity_todo}
    lines, todo = [], []
    for answer, measure in FOCUS.get(focus or "", FOCUS[""]):
        line = answer(summary)
        if line:
            lines.append(line)
        else:
            todo.append(measures[measure])
    if not lines:
        return r.Message(text=f"nothing measured yet{_of(among)}; say `{'` or `'.join(todo)}`")
    measured = set(summary.get("speed_by_model") or {})
    candidates = list(among) or ms.Pool.of(library.models().models).fitting(ms.GENERATES)
    unmeasured = [name for name in candidates if name not in measured]
    if measured and unmeasured and focus != "fidelity":
        shown = ", ".join(unmeasured[:4]) + (f" and {len(unmeasured) - 4} more" if len(unmeasured) > 4 else "")
        lines.append(f"not benchmarked yet: {shown} (say `{speed_todo}`)")
    lines += [f"no fidelity measured yet{_of(among)}: say `{measure}`" for measure in todo if measure == fidelity_todo]
    lines += [f"no speed measured yet{_of(among)}: say `{measure}`" for measure in todo if measure == speed_todo]
    if among:
        lines.insert(0, f"among {' and '.join(among)}, from the recorded measurements:")
    return r.Message(text="\n".join(lines))


def _of(among: Sequence[str]) -> str:
    return f" for {' or '.join(among)}" if among else ""
