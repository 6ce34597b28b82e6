"""Typed results -> rich tables and panels (a dispatch table by result type)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from agents import results as r
from agents.budget_words import decimal_mb, describe_budget, describe_level
from agents.measure.embedding_fidelity import format_cosine
from agents.measure.fidelity import format_dp, format_kld, format_ppl, format_share
from cli.render_classifiers import RENDERERS as CLASSIFIER_RENDERERS
from cli.render_models import RENDERERS as MODEL_RENDERERS
from lqmf.base.manifest import bits_per_weight_words
from lqmf.base.units import format_bytes, plural

EMBED_SHOWN = 5  # values of each embedding drawn; --json prints them all
BUDGET_METHOD = "budget"  # a plan searched to a budget: its level is the budget's slug (fit-100mb, kld-0.02)


def _params(n: Any) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def model_list(res: r.ModelList, console: Console) -> None:
    if not res.models:
        console.print(f"No models in {res.models_dir}. Run `make setup` to build the demo models.")
        return
    table = Table(title=f"Models in {res.models_dir}")
    for column in ("name", "format", "level", "bits/weight", "size", "params", "context", "loaded", "usable"):
        table.add_column(column)
    nominal = False
    for m in res.models:
        if m.remote:  # a remote endpoint: where it is and how it answered, instead of file facts
            level = m.display.get("host", "-")
            size = f"{m.remote['health']}, {m.display.get('latency', '-')}"
        else:
            level, size = m.level or "-", format_bytes(m.size_bytes)
        kind = m.format + (" (embedding)" if m.role == "embedding" else "")  # an encoder: vectors, not text
        measured = res.measured_bits(m)
        nominal = nominal or (measured is None and bool(m.bits))
        table.add_row(
            m.name, kind, level, f"{measured:.2f}" if measured else f"~{m.bits:g}" if m.bits else "-",
            size, _params(m.parameter_count), str(m.context_length or "-"),
            "yes" if m.name in res.loaded else "", "yes" if m.usable else f"no: {m.reason}",
        )
    console.print(table)
    console.print("bits/weight: measured from the weight bytes (the manifest's weight bytes × 8 / parameters), over "
                  "all weights: GPTQ and bitsandbytes keep embeddings and output head in float (show MODEL splits it)"
                  + ("; ~N: the level's nominal bits (no manifest)" if nominal else ""))
    if any(m.remote for m in res.models):
        console.print("Remote models show their host in the level column and health, probe latency in the size "
                      "column (list endpoints: every member).")


def endpoint_list(res: r.EndpointList, console: Console) -> None:
    if res.changed:
        e = res.endpoints[0]
        console.print(f"Endpoint [bold]{e['name']}[/bold] {res.changed}: {e['health']}"
                      + ("" if e["health"] == "up" else " (it is saved; requests go to it once it answers)"))
    if not res.endpoints:
        console.print("No remote endpoints. Add one: add endpoint NAME at http://HOST:PORT/v1 [model M] "
                      "[key from ENV_VAR]")
        if res.problem:
            console.print(f"[red]{escape(res.problem)}[/red]")
        return
    table = Table(title="Remote endpoints")
    for column in ("name", "member", "model", "key from", "health", "latency", "in flight", "served", "error"):
        table.add_column(column)
    for e in res.endpoints:
        if e.get("broken"):  # no members: its entry in the file cannot be used
            table.add_row(escape(e["name"]), escape(", ".join(e["urls"])) or "-", escape(e.get("model") or ""), "",
                          "broken", "-", "", "", escape(e["broken"]))
        for i, m in enumerate(e["members"]):
            table.add_row(e["name"] if i == 0 else "", m["url"], (e.get("model") or "(the one it lists)") if i == 0
                          else "", (f"${e['key_env']}" if e.get("key_env") else "-") if i == 0 else "", m["health"],
                          f"{m['latency_ms']} ms" if m["latency_ms"] is not None else "-", str(m["outstanding"]),
                          str(m["served"]), m["error"] or "")
    console.print(table)


def export_result(res: r.ExportResult, console: Console) -> None:
    title = f"{res.model} on {res.target}" + (" (experimental)" if res.experimental else "")
    console.print(Panel(res.command, title=title))
    for note in res.notes:
        console.print(f"- {note}")


def loaded_table(models: list[dict], console: Console) -> None:
    if not models:
        console.print("No model is loaded.")
        return
    table = Table(title="Loaded models")
    for column in ("name", "format", "level", "memory", "load time", "last used", "queue", "keep alive"):
        table.add_column(column)
    for m in models:
        keep = "forever" if m["keep_alive_s"] < 0 else f"{m['keep_alive_s']:g} s"
        # A remote model holds no memory here: its 0 reads as "-".
        table.add_row(m["name"], m["format"], m.get("level") or "-", format_bytes(m["memory_bytes"] or None),
                      f"{m['load_time_s']:.2f} s", f"{time.time() - m['last_used']:.0f} s ago",
                      str(m["queue_depth"]), keep)
    console.print(table)


def server_info(res: r.ServerInfo, console: Console) -> None:
    if res.running:
        text = (f"API server running at [bold]{res.url}[/bold] "
                f"(host {res.host}, port {res.port}, up {res.uptime_s:.0f} s)")
        text += f"\nOpenAI: {res.url}/v1   Ollama: {res.url}/api   docs: {res.url}/docs"
    else:
        text = "API server not running (start it with: start server)"
    if res.note:
        text = f"{res.note}. {text}"
    if res.gguf:
        text += f"\nGGUF engine: [bold]{res.gguf['engine']}[/bold]: {escape(res.gguf['reason'])}"
    console.print(Panel(text, title="server"))
    loaded_table(res.loaded, console)


def loaded(res: r.Loaded, console: Console) -> None:
    m = res.model
    engine = f", on llama-server with {m['slots']} parallel slots" if m.get("engine") == "llama-server" else ""
    console.print(f"[green]loaded[/green] {m['name']} ({m['format']} {m.get('level') or ''}) in "
                  f"{m['load_time_s']:.2f} s, {format_bytes(m['memory_bytes'] or None)}, "
                  f"context {m['context_length']}{engine}")
    if res.note:
        console.print(f"[yellow]note:[/yellow] {res.note}")


def config(res: r.Config, console: Console) -> None:
    table = Table(title="Configuration (LQMF_* environment variables)")
    table.add_column("setting")
    table.add_column("value")
    for key, value in res.values.items():
        table.add_row(key, str(value))
    console.print(table)


def help_table(res: r.Help, console: Console) -> None:
    """Commands grouped by task (a row per command: form, what it does, an example); `help TOPIC` adds forms."""
    table = Table(title="Commands (plain words work too: typos, any order, 'please'; help TOPIC for more forms)")
    for column in ("task", "say", "does", "e.g."):
        table.add_column(column)
    previous = None
    for row in res.commands:
        task, say, does, example = row if len(row) == 4 else ("", *row, "")
        table.add_row(escape(task) if task != previous else "", escape(say), escape(does), escape(example))
        previous = task
    console.print(table)


def question(res: r.Question, console: Console) -> None:
    console.print(f"[yellow]?[/yellow] {escape(res.text)}")
    for number, choice in enumerate(res.choices, 1):
        console.print(f"  {number}. {escape(choice)}")
    if res.choices:
        console.print("  answer with a number or a name")


def unknown(res: r.Unknown, console: Console) -> None:
    console.print(f"I did not understand '{escape(res.text)}'. Did you mean: [bold]{escape(res.suggestion)}[/bold]? "
                  "(help lists every command)")


def confirm(res: r.Confirm, console: Console) -> None:
    """Drawn where nobody can answer (-c, --script): the question is the error."""
    console.print(f"[yellow]?[/yellow] {escape(res.question)}\n  → not run: add --yes to run it")


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


# Row columns of benchmark / compare / fidelity tables: (header, key, how to show it). Shown when any row has it.
Column = tuple[str, str, Callable[[Any], str]]
SPEED_COLUMNS: list[Column] = [  # rows come ranked, fastest first
    ("size", "size_bytes", lambda v: format_bytes(v or None)),  # 0: a remote model, no file here
    ("gen tok/s", "gen_tps", lambda v: _num(v, ".1f")),
    ("prompt tok/s", "prompt_tps", lambda v: _num(v, ".1f")),
    ("TTFT p50", "ttft_p50_s", lambda v: _num(v, ".3f")),
    ("latency p50", "latency_p50_s", lambda v: _num(v, ".3f")),
    ("latency p95", "latency_p95_s", lambda v: _num(v, ".3f")),
    ("load s", "load_time_s", lambda v: _num(v, ".2f")),
    ("peak RSS +", "peak_rss_attributable_bytes", format_bytes),
]
# No "quality (heuristic)" column: the word heuristic gives a fluent non-answer full marks (agents/measure/quality.py).
# Fidelity is the quality measure; the heuristic stays in the history and in --json.
# The HTML report formats these with the same functions (agents.measure.fidelity), so both read alike.
FIDELITY_COLUMNS: list[Column] = [
    ("level", "level", lambda v: v or "-"),
    ("size", "size_bytes", lambda v: format_bytes(v or None)),
    ("PPL", "ppl_test", format_ppl),
    ("KLD mean", "kld_mean", format_kld),
    ("KLD p99", "kld_p99", format_kld),
    ("top-1 agree", "top1_agreement", format_share),
    ("Δp RMS", "dp_rms", format_dp),
]

# An embedding model's card (agents.measure.embedding_fidelity): small against large, one row per variant.
EMBEDDING_COLUMNS: list[Column] = [
    ("level", "level", lambda v: v or "-"),
    ("size", "size_bytes", lambda v: format_bytes(v or None)),
    ("bits/weight", "bits_per_weight", lambda v: _num(v, ".2f")),
    ("cosine mean", "cosine_mean", format_cosine),
    ("cosine min", "cosine_min", format_cosine),
    ("neighbours kept", "neighbour_overlap", format_share),
    ("rank ρ", "rank_spearman", lambda v: _num(v, ".4f")),
    ("embed s", "embed_s", lambda v: _num(v, ".2f")),
]


def experiment_result(res: r.ExperimentResult, console: Console) -> None:
    console.print(f"[green]{res.kind}[/green] #{res.id} on {', '.join(res.models)} — recorded in the history")
    if res.kind in ("single", "batch", "conversation"):
        table = Table(title="Responses (full text is also in the history)")
        for column in ("#", "prompt", "response", "tokens in/out", "TTFT s", "gen tok/s"):
            table.add_column(column)
        for i, run in enumerate(res.runs, 1):
            table.add_row(str(i), run.prompt, run.response, f"{run.prompt_tokens}/{run.completion_tokens}",
                          f"{run.ttft_s:.3f}", _num(run.gen_tps, ".1f"))
        console.print(table)
        console.print("  Judge the answers yourself: no score here tells a right answer from a fluent wrong one "
                      "(a word heuristic is in --json). For quality, run: fidelity of MODEL")
    tables = (("Speed (ranked by generation tok/s)" if res.kind in ("compare", "benchmark") else "Per model",
               SPEED_COLUMNS, "latency_p50_s"),
              (f"Fidelity against {res.reference}", FIDELITY_COLUMNS, "kld_mean"),
              (f"Embedding fidelity against {res.reference}", EMBEDDING_COLUMNS, "cosine_mean"))
    for title, columns, measured in tables:
        if not any(row.value(measured) is not None for row in res.rows):
            continue
        shown = [(h, k, f) for h, k, f in columns if any(row.value(k) is not None for row in res.rows)]
        table = Table(title=title)
        table.add_column("model")
        for header, _, _ in shown:
            table.add_column(header, justify="right")
        for row in res.rows:
            table.add_row(row.model, *(fmt(row.value(key)) for _, key, fmt in shown))
        console.print(table)
    for note in res.notes:
        console.print(f"  {note}")
    if res.recommendation:
        console.print(f"[bold]→ {res.recommendation}[/bold]")
    if res.report_path:
        console.print(f"report: {res.report_path}")


def agreement(res: r.AgreementResult, console: Console) -> None:
    rep = res.report
    table = Table(title=f"Agreement of {rep.variant_a} and {rep.variant_b} on {plural(rep.examples, 'example')}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for label, key in (("agreement (unparsed = disagree)", "agreement_rate"),
                       ("agreement where both parsed", "agreement_rate_parsed"),
                       (f"parse success {rep.variant_a}", "parse_success_a"),
                       (f"parse success {rep.variant_b}", "parse_success_b"),
                       (f"accuracy {rep.variant_a}", "accuracy_a"), (f"accuracy {rep.variant_b}", "accuracy_b"),
                       ("text similarity (mean)", "text_similarity_mean"), ("identical answers", "exact_match_rate")):
        table.add_row(label, pct(getattr(rep, key)))
    console.print(table)
    console.print(f"per-example report: {rep.csv_path}")


def experiment_list(res: r.ExperimentList, console: Console) -> None:
    if not res.experiments:
        console.print("No experiments yet. Try: benchmark NAME, compare A and B, fidelity of NAME")
        return
    table = Table(title="Experiments (newest first)")
    for column in ("id", "kind", "models", "status", "started", "took", "result"):
        table.add_column(column)
    for e in res.experiments:
        took = f"{e['finished_at'] - e['started_at']:.1f} s" if e.get("finished_at") else "-"
        summary = e.get("summary") or {}
        table.add_row(str(e["id"]), e["kind"], ", ".join(e["models"]), e["status"],
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(e["started_at"])), took,
                      summary.get("recommendation") or summary.get("error") or "")
    console.print(table)


def statistics(res: r.Statistics, console: Console) -> None:
    v = res.values
    table = Table(title=f"History of {v['model']}" if v.get("model") else "History")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("models_seen", "experiments", "experiments_incomplete", "results", "quantization_runs", "requests"):
        table.add_row(key.replace("_", " "), str(v[key]))
    console.print(table)
    if v["per_model"]:
        table = Table(title="Served requests per model")
        for column in ("model", "requests", "prompt tokens", "completion tokens", "mean latency s"):
            table.add_column(column)
        for m in v["per_model"]:
            table.add_row(m["model"], str(m["requests"]), str(m["prompt_tokens"]), str(m["completion_tokens"]),
                          f"{m['mean_latency_s']:.3f}")
        console.print(table)


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _plan_lines(p) -> list[str]:
    """A plan's lines, each only when it has something to say (a refused plan may have no level or output)."""
    params = f", {_params(p.parameter_count)} parameters" if p.parameter_count else ""
    target = f" → [bold]{escape(p.output_name)}[/bold]" if p.output_name else ""
    detail = [f"{p.bits:g} bits per weight nominal"] if p.bits else []
    detail += [f"group size {p.group_size}"] if p.group_size else []
    lines = [
        f"[bold]{escape(p.source)}[/bold] ({p.source_format}{params}){target}",
        f"method {p.method}" + (f", level {p.level}" if p.level else "")
        + (f" ({', '.join(detail)})" if detail else ""),
        *([f"budget: {escape(describe_level(p.level))}"] if p.method == BUDGET_METHOD and p.level else []),
        *([f"why: {escape(p.recommendation)}"] if p.recommendation else []),
        *(f"  {i}. {escape(step)}" for i, step in enumerate(p.steps, 1)),
        *([f"calibration: {escape(p.calibration)}"] if p.calibration else []),
        *([f"then: fidelity report card against {escape(p.source)}"] if p.fidelity and p.output_name else []),
    ]
    if p.expected_size_bytes:
        lines.append(
            f"expected: output ≈ {format_bytes(p.expected_size_bytes)}"
            + (f" ({p.expected_bits_per_weight:.2f} bits per weight over all weights)"
               if p.expected_bits_per_weight else "") + ", "
            f"peak RAM ≈ {format_bytes(p.expected_peak_ram_bytes)} "
            f"(available {format_bytes(p.available_ram_bytes)}), disk ≈ {format_bytes(p.disk_needed_bytes)} "
            f"(free {format_bytes(p.free_disk_bytes)})")
    if p.tensor_types:
        lines.append(f"tensor types: {', '.join(f'{t} ×{n}' for t, n in p.tensor_types.items())}")
    if p.estimate_basis:
        lines.append(f"time: about {_duration(p.estimated_seconds)} ({escape(p.estimate_basis)})")
    lines += [f"RAM: {escape(p.ram_basis)}"] if p.ram_basis else []
    lines += [f"note: {escape(note)}" for note in p.notes]
    return lines + [f"[red]refused:[/red] {escape(problem)}" for problem in p.problems]


def plan_panel(res: r.QuantizePlan, console: Console) -> None:
    if res.acquired:
        acquired(r.AcquiredResult(action="downloaded", model=res.acquired), console)
    console.print(Panel("\n".join(_plan_lines(res.plan)), title="quantization plan"
                        + (" — refused" if res.refused else "")))


def quantized(res: r.Quantized, console: Console) -> None:
    m = res.manifest
    console.print(f"[green]quantized[/green] {res.plan.source} → [bold]{res.output}[/bold] "
                  f"({m.get('format')} {m.get('level')}, {format_bytes(m.get('size_bytes'))} "
                  f"(planned {format_bytes(res.plan.expected_size_bytes)}), "
                  f"{bits_per_weight_words(m.get('bits_per_weight', 0), m.get('weights'))}) "
                  f"in {_duration(res.wall_time_s)}, "
                  f"peak memory {format_bytes(res.peak_rss_bytes)} "
                  f"(planned {format_bytes(res.plan.expected_peak_ram_bytes)})"
                  f" — run #{res.run_id} in the history")
    for warning in m.get("warnings") or []:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    budget = (m.get("details") or {}).get("budget")
    if budget:
        budget_result(budget, console)
    if res.fidelity is not None:
        experiment_result(res.fidelity, console)
    console.print(f"next: load model {res.model} · chat with {res.model} · compare {res.model} and {res.plan.source}")


def budget_lines(budget: dict[str, Any]) -> list[str]:
    """A budget run's measured result against its prediction, its tensor types and its check of the predictions."""
    measured, predicted = budget.get("measured") or {}, budget.get("predicted") or {}
    size = measured.get("size_bytes")
    lines = [f"budget: {describe_budget(budget.get('budget') or {})} → measured "
             f"{decimal_mb(size) if size is not None else '-'}, KLD {format_kld(measured.get('kld'))} "
             f"(predicted {format_kld(predicted.get('kld'))}), PPL {format_ppl(measured.get('ppl'))} vs "
             f"{format_ppl(measured.get('ppl_ref'))}, same top token {format_share(measured.get('top1'))}"]
    if measured.get("text"):
        lines.append(f"measured on: {measured['text']}")
    counts = Counter(str(t).upper() for t in (budget.get("tensor_types") or {}).values())
    if counts:
        lines.append("types: " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))))
    check = budget.get("validation") or {}
    if check:
        mixes = check.get("mixes")
        corrected = check.get("corrected_median_abs_rel_error")
        lines.append(f"predictions checked on {len(mixes) if isinstance(mixes, list) else mixes or '-'} standard "
                     f"levels: Spearman {_figure(check.get('spearman'), '{:.3f}')}, median error "
                     f"{_figure(check.get('median_abs_rel_error'), '{:.0%}')} of the measured KLD"
                     + (f" ({_figure(corrected, '{:.0%}')} once scaled by the other levels' measured/predicted)"
                        if corrected is not None else ""))
    if budget.get("report"):
        lines.append(f"report (the frontier drawn): {budget['report']}")
    return lines


def _figure(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def budget_result(budget: dict[str, Any], console: Console) -> None:
    """budget_lines, then the size-against-KLD frontier the search stood on (agents.measure.frontier)."""
    from agents.measure.frontier import frontier_text, points_from_dicts

    points, problems = points_from_dicts(budget.get("frontier") or [])
    for line in budget_lines(budget) + ([frontier_text(points)] if points else []) + problems:
        console.print(line, markup=False, highlight=False)


def acquired(res: r.AcquiredResult, console: Console) -> None:
    m = res.model
    if m.already_present:
        console.print(f"{m.name} is already here ({m.path}), from {m.source}")
        return
    console.print(f"[green]{res.action}[/green] {m.source} → [bold]{m.name}[/bold] ({m.format}, "
                  f"{plural(m.files, 'file')}, {format_bytes(m.size_bytes)}) in {_duration(m.wall_time_s)}")


def quantization_list(res: r.QuantizationList, console: Console) -> None:
    if not res.runs:
        console.print("No quantization runs yet. Try: quantize NAME to 4-bit gguf")
        return
    table = Table(title="Quantization runs (newest first)")
    for column in ("id", "source", "output", "method", "level", "status", "started", "took", "peak memory", "note"):
        table.add_column(column)
    for q in res.runs:
        table.add_row(str(q["id"]), q["source"], q["output"], q["method"], q.get("level") or "-", q["status"],
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(q["started_at"])), _duration(q.get("wall_time_s")),
                      format_bytes(q.get("peak_rss_bytes")), escape("; ".join(_run_notes(q))))
    console.print(table)


def _run_notes(q: dict) -> list[str]:
    """What became of a run's models since (agents/models/renames.py), then its error."""
    notes = [f"renamed from {q['output_renamed_from']}"] if q.get("output_renamed_from") else []
    notes += ["output removed since"] if q.get("output_removed") else []
    notes += [f"source renamed from {q['source_renamed_from']}"] if q.get("source_renamed_from") else []
    return notes + ([q["error"]] if q.get("error") else [])


def embeddings(res: r.EmbeddingResult, console: Console) -> None:
    table = Table(title=f"{res.model}: {res.dim}-dimensional, {res.pooling} pooling, raw, {res.seconds:.2f} s")
    for column in ("text", "tokens", "norm", "first values"):
        table.add_column(column)
    for item in res.items:
        text = item.text if len(item.text) <= 40 else item.text[:39] + "…"
        first = " ".join(f"{v:+.4f}" for v in item.vector[:EMBED_SHOWN]) + (" …" if res.dim > EMBED_SHOWN else "")
        table.add_row(text, str(item.tokens), f"{item.norm:.4f}", first)
    console.print(table)


def embeddings_side_by_side(res: r.EmbeddingsSideBySide, console: Console) -> None:
    for result in res.results:
        embeddings(result, console)
    first = res.results[0].model
    table = Table(title=f"cosine similarity to {first}'s vector (1: the same direction)")
    table.add_column("text")
    for other in res.results[1:]:
        table.add_column(other.model)
    for item, row in zip(res.results[0].items, res.cosines, strict=True):
        text = item.text if len(item.text) <= 40 else item.text[:39] + "…"
        table.add_row(text, *("sizes differ" if c is None else f"{c:.4f}" for c in row))
    console.print(table)


RENDERERS: dict[type, Callable[[Any, Console], None]] = {
    r.EmbeddingResult: embeddings,
    r.EmbeddingsSideBySide: embeddings_side_by_side,
    r.ExperimentResult: experiment_result,
    r.AgreementResult: agreement,
    r.ExperimentList: experiment_list,
    r.Statistics: statistics,
    r.ModelList: model_list,
    r.EndpointList: endpoint_list,
    r.ExportResult: export_result,
    r.ServerInfo: server_info,
    r.Loaded: loaded,
    r.Unloaded: lambda res, c: c.print(f"[green]unloaded[/green] {res.name}"),
    r.Config: config,
    r.Help: help_table,
    r.Question: question,
    r.Message: lambda res, c: c.print(res.text),
    r.ErrorResult: lambda res, c: c.print(f"[red]error:[/red] {res.message}"
                                          + (f"\n  → {res.hint}" if res.hint else "")),
    r.Unknown: unknown,
    r.Confirm: confirm,
    r.QuantizePlan: plan_panel,
    r.Quantized: quantized,
    r.AcquiredResult: acquired,
    r.QuantizationList: quantization_list,
    r.LoggedIn: lambda res, c: c.print(f"[green]logged in[/green] as {res.user}; the token is in "
                                       f"huggingface_hub's store ({res.token_path}), not in the project"),
    r.Exit: lambda res, c: None,
    r.ChatStart: lambda res, c: None,
    **CLASSIFIER_RENDERERS,
    **MODEL_RENDERERS,
}


def render(result: r.Result, console: Console) -> None:
    """Draw a result."""
    RENDERERS[type(result)](result, console)
