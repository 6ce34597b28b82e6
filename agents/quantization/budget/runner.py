"""A budget request as a factory plan (what it will measure, how long, what it expects) and its run."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from agents.quantization.budget.search import (
    HELDOUT_WINDOWS,
    LEVELS,
    Measurements,
    SearchContext,
    cache_key,
    measure_source,
    search_and_write,
    solve,
)
from agents.quantization.budget.space import MixSpace, read_space, space_of
from agents.quantization.budget.target import KLD, RAM, Budget, BudgetError, decimal_mb
from lqmf.base.units import format_bytes

log = logging.getLogger(__name__)

METHOD = "budget"
FLOAT_LEVELS = ("f16", "bf16", "f32")
# Rough first-run costs on 2 cores for SmolLM2-135M (measured), scaled by parameters where no earlier search ran.
FIRST_SEARCH_S_PER_M = 8.7  # 1,176 s for SmolLM2-135M (benchmarks/budget_bench.py)
CACHED_SEARCH_S_PER_M = 0.7
LOGITS_WINDOW_BYTES = 256 * 4  # per vocabulary entry: one window's scored positions, float32


def fingerprint(path: Path) -> str:
    """A cheap identity of a source (file names, sizes, modification times): hashing gigabytes at plan time
    would cost more than the solve the cache saves."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        if f.name.endswith(".lqmf.json") or f.name == "lqmf.json":
            continue
        stat = f.stat()
        digest.update(f"{f.relative_to(path.parent)}:{stat.st_size}:{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:32]


def context_overhead(space: MixSpace, shapes: Any, context: int) -> int:
    """RAM beyond the file for serving at `context` tokens: the f16 KV cache and one batch of logits (an estimate:
    llama.cpp's compute buffers add a little more)."""
    embd = next((s for s in space.slots if s.role == "token_embd"), None)
    width = embd.shape[-1] if embd else 0
    vocab = embd.shape[0] if embd else 0
    head_dim = width // shapes.n_head if shapes.n_head else 0
    kv = 2 * shapes.n_layer * context * shapes.n_head_kv * head_dim * 2
    return kv + vocab * 512 * 4


def plan_space(facts, converter_dir: Optional[Path], imatrix: bool) -> tuple[Optional[MixSpace], Any, list[str]]:
    """The search space as the f16 GGUF will hold it, the source's shapes, and why there is none."""
    from agents.quantization.gguf_mix import float_gguf
    from agents.quantization.shapes import read_shapes

    fmt = facts.format
    if fmt == "gguf" and (facts.level or "").lower() not in FLOAT_LEVELS:
        return None, None, [f"{facts.name} is already quantized ({facts.level}): a budget search starts from the "
                            "float model (its HF folder or an f16 GGUF)"]
    if fmt not in ("hf", "gguf"):
        return None, None, [f"a budget search makes a GGUF from an HF folder or a float GGUF; {facts.name} is {fmt}"]
    shapes = read_shapes(Path(facts.path), fmt)
    if shapes is None:
        return None, None, [f"cannot read the tensor shapes of {facts.name}"]
    source = float_gguf(shapes, Path(facts.path), "f16", converter_dir)
    return space_of(source, Path(facts.path), imatrix=imatrix), shapes, []


def make_budget_plan(request, facts, models_dir: Path, machine, store, settings, converter_dir: Optional[Path]):
    """The QuantPlan of a budget request: problems when the budget cannot be met, with the nearest point."""
    from agents.quantization.plan import MIB, QuantPlan, default_output_name

    budget: Budget = request.budget
    problems: list[str] = []
    notes: list[str] = []
    if request.method not in (None, "gguf"):
        problems.append(f"a budget search makes GGUF mixes, not {request.method}: drop the method")
    if request.level or request.bits:
        problems.append("a budget search picks every tensor's type itself: drop the level (or bits)")
    space, shapes, why = plan_space(facts, converter_dir, request.imatrix)
    problems += why
    output_name = request.name or default_output_name(facts.name, "gguf", budget.slug())
    if not output_name.endswith(".gguf"):
        output_name += ".gguf"
    output_path = Path(models_dir) / output_name
    if output_path.exists() and not request.overwrite:
        problems.append(f"{output_name} already exists: name the output (as NAME) or remove it first")
    cached = None
    overhead = 0
    expected_size, predicted = 0, None
    if space is not None:
        key = cache_key(fingerprint(Path(facts.path)), request.imatrix)
        data = store.sensitivity(key)
        cached = Measurements.from_dict(data) if data else None
        if budget.kind == RAM:
            overhead = context_overhead(space, shapes, settings.context_length)
            notes.append(f"RAM counted as the file plus {decimal_mb(overhead)} for a {settings.context_length:,}-token "
                         "context (f16 KV cache and one batch of logits; LQMF_CONTEXT_LENGTH sets it)")
        smallest, largest = space.file_bytes(space.smallest()), space.file_bytes(space.largest())
        if budget.kind != KLD and budget.value - overhead < smallest:
            problems.append(f"no mix fits {decimal_mb(budget.value)}: the smallest this search makes is "
                            f"{decimal_mb(smallest + overhead)} (every tensor at its fewest bits) — ask for at "
                            f"least {-(-(smallest + overhead) // 100_000) / 10:g} MB")
        elif budget.kind != KLD and budget.value - overhead >= largest:
            notes.append(f"{decimal_mb(budget.value)} holds even Q8_0 everywhere ({decimal_mb(largest + overhead)}): "
                         "the result is that mix, the most faithful this search makes")
        if cached is not None and not problems:
            try:
                _, allocation = solve(space, cached, budget, overhead)
                expected_size, predicted = allocation.file_bytes, allocation.predicted_kld
            except BudgetError as exc:
                problems.append(f"{exc.message} — {exc.hint}" if exc.hint else exc.message)
        elif budget.kind != KLD:
            expected_size = int(min(budget.value - overhead, largest))
    steps = _steps(facts, budget, cached, request.imatrix)
    seconds, basis = _estimate(facts.parameter_count, cached, store)
    if cached is not None:
        notes.append(f"measurements kept from an earlier search ({cached.seconds:.0f} s then): this run solves, "
                     f"writes the mix and measures it")
        if predicted is not None:
            notes.append(f"expected: {decimal_mb(expected_size)}, KLD ≈ {predicted:.4f} (predicted; the run measures "
                         f"it on {cached.heldout})")
    else:
        notes.append(f"measures first: each tensor's output error at every type it can take, the KLD of "
                     f"{_probe_count(space)} groups quantized alone, and the standard levels "
                     f"{', '.join(LEVELS)} on the held-out text (kept, so the next budget on this model is quick)")
        notes.append("expected: " + (f"a file of at most {decimal_mb(expected_size)} with the least KLD the "
                                     "measurements predict" if budget.kind != KLD else
                                     f"the smallest mix whose measured KLD is at most {budget.value:g}"))
    f16_bytes = space.file_bytes({s.name: "Q8_0" for s in space.slots}) * 2 if space else 0
    vocab = next((s.shape[0] for s in space.slots if s.role == "token_embd"), 0) if space else 0
    ram = machine.process_rss + 2 * f16_bytes + HELDOUT_WINDOWS * vocab * LOGITS_WINDOW_BYTES + 600 * MIB
    if ram > machine.available_ram:
        problems.append(f"the search needs about {format_bytes(ram)} of RAM, {format_bytes(machine.available_ram)} "
                        "is available")
    disk = 2 * f16_bytes + expected_size
    if disk > machine.free_disk:
        problems.append(f"the search needs about {format_bytes(disk)} of disk, {format_bytes(machine.free_disk)} free")
    return QuantPlan(
        source=facts.name, source_path=str(facts.path), source_format=facts.format, method=METHOD,
        level=budget.slug(), bits=0.0, output_name=output_name, output_path=str(output_path),
        parameter_count=facts.parameter_count, steps=steps, calibration="LQMF's calibration text",
        imatrix=request.imatrix, fidelity=False, expected_size_bytes=expected_size,
        expected_peak_ram_bytes=ram, disk_needed_bytes=disk, available_ram_bytes=machine.available_ram,
        free_disk_bytes=machine.free_disk, estimated_seconds=seconds, estimate_basis=basis,
        recommendation=f"{budget.describe()}: every tensor's type chosen from measurements (an exact knapsack "
                       "over the measured costs), then the mix measured",
        overwrite=request.overwrite, problems=problems, notes=notes,
        alternative=None, budget=budget.to_dict(),
    )


def _probe_count(space: Optional[MixSpace]) -> int:
    from agents.quantization.budget.sensitivity import groups

    if space is None:
        return 0
    return sum(len(slots[0].options) if slots[0].role == "token_embd" else 1 for slots in groups(space).values())


def _steps(facts, budget: Budget, cached: Optional[Measurements], imatrix: bool) -> list[str]:
    steps = []
    if facts.format == "hf":
        steps.append(f"convert {facts.name} to an f16 GGUF (the reference every KLD is measured against)")
    steps.append("use the measurements kept from an earlier search" if cached is not None else
                 "measure: importance matrix, output errors per tensor and type, KLD per group, the standard levels")
    steps.append(f"solve for {budget.describe()}, write the mix with llama-quantize"
                 f"{' (with the importance matrix)' if imatrix else ''} and measure its KLD")
    return steps


def _estimate(params: int, cached: Optional[Measurements], store) -> tuple[float, str]:
    per_m = CACHED_SEARCH_S_PER_M if cached is not None else FIRST_SEARCH_S_PER_M
    earlier = [r for r in store.quantization_runs(method=METHOD, status="done", limit=20) if r.get("wall_time_s")]
    if earlier and cached is None and earlier[0].get("plan", {}).get("parameter_count"):
        run = earlier[0]
        scale = params / max(run["plan"]["parameter_count"], 1)
        return run["wall_time_s"] * scale, "scaled from the last budget search here"
    return params / 1e6 * per_m, "rough: measured on SmolLM2-135M on 2 cores, scaled by parameters"


def run_budget(agent, plan, steps) -> dict:
    """Convert, measure (or reuse), solve, write and measure the mix, verify it, record the manifest."""
    from agents.quantization.gguf_quant import convert_to_gguf, file_output, gguf_manifest, write_manifest_beside
    from agents.quantization.llama_tools import ensure_llama_tools
    from agents.quantization.shapes import read_shapes
    from lqmf.base.atomic import temp_sibling
    from lqmf.base.manifest import measure_run, read_manifest, tree_sha256

    settings, store = agent.settings, agent.store
    src, out = Path(plan.source_path), Path(plan.output_path)
    budget = Budget(**plan.budget)
    tools = ensure_llama_tools(settings)
    threads = settings.threads or os.cpu_count() or 1
    workdir = temp_sibling(out.with_name(out.stem + ".budget"))
    workdir.mkdir(parents=True)
    try:
        if plan.source_format == "hf":
            steps.next()
            f16 = workdir / "reference-f16.gguf"
            convert_to_gguf(src, f16, settings, "f16", on_tensor=steps.within)
            origin = {"path": str(src), "format": "hf", "sha256": tree_sha256(src), "via": "f16 GGUF (temporary)"}
        else:
            f16, origin = src, None
        space = read_space(f16, imatrix=plan.imatrix)
        ctx = SearchContext(f16, tools, workdir, threads, settings, tick=steps.within)
        steps.next()
        key = cache_key(fingerprint(src), plan.imatrix)
        data = store.sensitivity(key)
        measurements = Measurements.from_dict(data) if data else None
        imatrix_file = workdir / "search.imatrix.gguf"
        if measurements is None or plan.imatrix:
            _imatrix(f16, imatrix_file, settings, threads)
        if measurements is None:
            measurements = measure_source(space, ctx, imatrix_file=imatrix_file, quant_imatrix=plan.imatrix)
            store.save_sensitivity(key, plan.source, measurements.to_dict())
        overhead = 0
        if budget.kind == RAM:
            overhead = context_overhead(space, read_shapes(f16, "gguf"), settings.context_length)
        steps.next()
        with file_output(out, plan.overwrite) as tmp:
            with measure_run() as measure:
                found = search_and_write(space, ctx, measurements, budget, tmp, overhead_bytes=overhead,
                                         imatrix=imatrix_file if plan.imatrix else None)
            verified = agent._verifier(steps, "gguf", out, plan)(tmp)
            details = _details(plan, budget, found, measurements, out, overhead, verified)
            manifest = gguf_manifest(out, tmp, method="lqmf budget search", level=plan.level,
                                     bits=round(found["allocation"].file_bytes * 8 / max(plan.parameter_count, 1), 2),
                                     source=origin or {"path": str(src), "format": "gguf"}, measure=measure,
                                     details=details)
            write_manifest_beside(out, manifest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = _record_experiment(agent, plan, details)
    manifest = read_manifest(out) or {}
    manifest.setdefault("details", {}).setdefault("budget", {})["report"] = str(report)
    return manifest  # the factory writes it back with the whole run's figures


def _imatrix(f16: Path, out: Path, settings, threads: int) -> None:
    from agents.quantization.calibration import default_calibration
    from agents.quantization.imatrix import compute_imatrix

    compute_imatrix(f16, default_calibration(), out, settings, threads=threads,
                    calibration="LQMF's calibration text (Python standard library docstrings)", overwrite=True)


def _details(plan, budget: Budget, found: dict, measurements: Measurements, out: Path, overhead: int,
             verified: Any) -> dict[str, Any]:
    allocation = found["allocation"]
    kind = "budget+imatrix" if plan.imatrix else "budget"
    frontier = [{"label": p.label, "size_bytes": p.size_bytes, "kld": p.kld, "kind": p.kind}
                for p in measurements.levels]
    frontier.append({"label": out.stem, "size_bytes": found["measured"]["size_bytes"],
                     "kld": found["measured"]["kld"], "kind": kind})
    validation = measurements.validation()
    return {"budget": {
        "budget": budget.to_dict(), "overhead_bytes": overhead,
        "predicted": {"kld": allocation.predicted_kld, "size_bytes": allocation.file_bytes},
        "measured": found["measured"], "tensor_types": allocation.types, "tries": found["tries"],
        "frontier": frontier, "validation": validation, "correction": measurements.correction,
        "levels": [p.__dict__ for p in measurements.levels],
        "measurement": {"seconds": measurements.sensitivity.seconds, "calibration": measurements.sensitivity.text,
                        "heldout": measurements.heldout, "probes": len(measurements.sensitivity.probes)},
        "predicted_curve": [{"size_bytes": b, "kld": k} for b, k in found["curve"]],
    }, "verified": verified}


def _record_experiment(agent, plan, details: dict) -> Path:
    """The run as a `budget` experiment in the history, with its HTML report (the frontier drawn)."""
    from agents.measure.report_html import write_report

    budget = details["budget"]
    store = agent.store
    name = Path(plan.output_name).stem
    exp_id = store.start_experiment("budget", [plan.source, name], {"budget": budget["budget"]})
    summary = {"frontier": budget["frontier"], "validation": budget["validation"], "measured": budget["measured"],
               "predicted": budget["predicted"], "model": name}
    path = agent.settings.reports_dir / f"experiment-{exp_id}-budget.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    val = budget["validation"]
    notes = [f"measured on {budget['measured']['text']}",
             f"predicted KLD of the standard levels against measured: Spearman {val['spearman']:.3f}, median error "
             f"{100 * val['median_abs_rel_error']:.0f}% over {val['mixes']} mixes" if val.get("spearman") is not None
             else "too few levels measured to check the predictions"]
    summary["report_path"] = str(write_report(path, f"LQMF budget #{exp_id}: {name} from {plan.source}", [],
                                              frontier=budget["frontier"], notes=notes))
    store.finish_experiment(exp_id, summary)
    return path
