"""Model-management results -> rich output (merged into cli/render.py's dispatch table)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from agents import results as r
from lqmf.base.manifest import bits_per_weight_words
from lqmf.base.units import format_bytes


def _ago(ts: Optional[float]) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def already_loaded(res: r.AlreadyLoaded, console: Console) -> None:
    m = res.model
    console.print(f"{escape(m['name'])} was already loaded ({m['format']} {m.get('level') or ''}, "
                  f"{format_bytes(m.get('memory_bytes'))}, context {m.get('context_length')}); "
                  "its keep_alive starts over now")


def models_removed(res: r.ModelsRemoved, console: Console) -> None:
    for change in res.changes:
        model_changed(r.ModelChanged(change=change), console)
    console.print(f"{len(res.changes)} models removed, {format_bytes(sum(c.freed_bytes for c in res.changes))} freed")


def model_changed(res: r.ModelChanged, console: Console) -> None:
    c = res.change
    name = escape(c.name)
    if c.action == "removed":
        shared = ("" if c.freed_bytes >= c.size_bytes
                  else f" ({format_bytes(c.freed_bytes)} freed: the rest is hard-linked elsewhere)")
        console.print(f"[green]removed[/green] {name}: {format_bytes(c.size_bytes)}, {len(c.files)} "
                      f"path{'s' if len(c.files) != 1 else ''}{shared}"
                      + (" — it was unloaded first" if c.unloaded else ""))
    elif c.action == "renamed":
        follow = f"; lineage updated in {', '.join(map(escape, c.updated_children))}" if c.updated_children else ""
        console.print(f"[green]renamed[/green] {name} → [bold]{escape(c.new_name)}[/bold] "
                      f"({escape(c.new_path)}){follow}")
    else:
        console.print(f"[green]copied[/green] {name} → [bold]{escape(c.new_name)}[/bold] "
                      f"({format_bytes(c.size_bytes)}, {escape(c.new_path)})")


def _tree(node: dict[str, Any], name: str, branch: Optional[Tree] = None) -> Tree:
    label = f"[bold]{escape(node['name'])}[/bold] ◀" if node["name"] == name else escape(node["name"])
    here = Tree(label) if branch is None else branch.add(label)
    for child in node.get("children", []):
        _tree(child, name, here)
    return here


def _tuning_words(m: r.ModelDetails) -> str:
    """What `tune` chose for the model and the gains it measured (or how to tune it)."""
    tuning = m.figures.get("tuning")
    if not tuning:
        return f"not tuned: tune {escape(m.name)}" if m.format == "gguf" else "-"
    gains = tuning.get("gains") or {}
    single = ", ".join(f"{kind} {x:.2f}x" for kind, x in (gains.get("single") or {}).items())
    aggregate = ", ".join(f"{n} clients {x:.2f}x" for n, x in (gains.get("aggregate") or {}).items())
    words = escape(tuning["chosen"])
    words += f"; single stream {single}" if single else ""
    words += f"; aggregate {aggregate}" if aggregate else ""
    words += f" (tune #{tuning['experiment_id']}, {_ago(tuning.get('measured_at'))})"
    if tuning.get("not_applied"):
        words += f"; NOT applied: {escape(tuning['not_applied'])}"
    return words


def model_details(m: r.ModelDetails, console: Console) -> None:
    table = Table(title=f"{m.name}", show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    state = "loaded" if m.loaded else "on disk"
    if not m.usable:
        state += f", NOT usable: {m.reason}"
    table.add_row("format", f"{m.format} {m.level or ''} ({state})")
    table.add_row("path", escape(m.path))
    disk = m.disk
    if disk is not None:
        parts = [f"{format_bytes(disk.artefact_bytes)} weights and files"]
        if disk.manifest_bytes:
            parts.append(f"{format_bytes(disk.manifest_bytes)} manifest")
        if disk.children_bytes:
            parts.append(f"{format_bytes(disk.children_bytes)} importance matrix")
        table.add_row("size", f"{format_bytes(disk.total_bytes)} ({', '.join(parts)})")
    if m.parameter_count:
        table.add_row("parameters", f"{m.parameter_count:,}")
    table.add_row("architecture", escape(str(m.architecture or "-"))
                  + (" (embedding model: it makes vectors, not text)" if m.role == "embedding" else ""))
    context = str(m.context_length or "-")
    if m.loaded_context_length:
        context += f" (loaded with {m.loaded_context_length})"
    table.add_row("context length", context)
    if m.has_chat_template:
        table.add_row("chat template", "present: " + escape((m.chat_template_first_line or "")[:100]))
    else:
        table.add_row("chat template", "none (ChatML is used)")
    manifest = m.manifest
    if manifest:
        bpw = manifest.get("bits_per_weight")
        table.add_row("method", f"{manifest.get('method')} {manifest.get('level') or ''}")
        if isinstance(bpw, (int, float)) and bpw:
            # What the file really holds: llama.cpp's shape fallbacks and level mixes make it differ from the name.
            table.add_row("bits per weight", bits_per_weight_words(bpw, manifest.get("weights"), "measured")
                          + " (weight bytes × 8 / parameters)"
                          + (f"; the level's name says {m.bits:g}" if m.bits else ""))
        source = manifest.get("source") or {}
        if source:
            table.add_row("source", escape(", ".join(f"{k} {v}" for k, v in source.items() if k != "sha256" and v)))
        if manifest.get("imatrix"):
            mat = manifest["imatrix"]
            table.add_row("importance matrix", escape(f"{mat.get('path')} ({mat.get('chunks')} chunks)"))
        tools = manifest.get("tool_versions") or {}
        if tools:
            table.add_row("tool versions", escape(", ".join(f"{k} {v}" for k, v in tools.items())))
        if manifest.get("created_at"):
            table.add_row("made", f"{manifest['created_at']} in {manifest.get('wall_time_s') or 0:.1f} s, "
                                  f"peak memory {format_bytes(manifest.get('peak_rss_bytes'))}")
    else:
        table.add_row("manifest", "none (not made by LQMF, or imported without one)")
    speed, fidelity = m.figures.get("speed"), m.figures.get("fidelity")
    if speed:
        table.add_row("latest speed", f"{speed['gen_tps']:.1f} tokens/s generation"
                      + (f", TTFT p50 {speed['ttft_p50_s'] * 1000:.0f} ms" if speed.get("ttft_p50_s") else "")
                      + f" ({speed['kind']} #{speed['experiment_id']}, {_ago(speed.get('measured_at'))})")
    else:
        table.add_row("latest speed", f"not measured yet: benchmark {escape(m.name)}")
    if fidelity and fidelity.get("measure") == "embedding":
        table.add_row("latest fidelity", f"cosine {fidelity['cosine_mean']:.6f}, nearest neighbours kept "
                      f"{100 * (fidelity.get('neighbour_overlap') or 0):.1f}% vs {escape(str(fidelity['reference']))}"
                      f" ({fidelity['kind']} #{fidelity['experiment_id']}, {_ago(fidelity.get('measured_at'))})")
    elif fidelity:
        ppl = f", perplexity {fidelity['ppl']:.2f}" if fidelity.get("ppl") else ""
        table.add_row("latest fidelity", f"KLD {fidelity['kld_mean']:.5f}, top-1 agreement "
                      f"{100 * (fidelity.get('top1_agreement') or 0):.1f}%{ppl} vs {escape(str(fidelity['reference']))}"
                      f" ({fidelity['kind']} #{fidelity['experiment_id']}, {_ago(fidelity.get('measured_at'))})")
    else:
        table.add_row("latest fidelity", f"not measured yet: fidelity of {escape(m.name)}")
    table.add_row("engine tuning", _tuning_words(m))
    for change in m.changes[:3]:
        table.add_row("history", f"{change['action']} {escape(change['name'])}"
                      + (f" → {escape(change['new_name'])}" if change.get("new_name") else "")
                      + f" ({_ago(change.get('created_at'))})")
    console.print(table)
    if m.lineage.get("tree"):
        root = Tree("lineage (source → variants)")
        _tree(m.lineage["tree"], m.name, root)
        console.print(root)


def tune_result(t: r.TuneResult, console: Console) -> None:
    """What `tune` measured: speculation per kind, engine settings per number of clients, and the choice."""
    console.print(f"[green]tuned[/green] {escape(t.model)} in {t.seconds:.0f} s on {escape(t.machine)} "
                  f"— tune #{t.experiment_id} in the history")
    for line in t.plan[1:]:
        console.print(f"  {escape(line)}")
    kinds = list(t.speculation[0].rates) if t.speculation else []
    table = Table(title="Speculation, single stream (decode tokens/s, × against none; same text as none?)")
    for column in ("candidate", *kinds, "same text"):
        table.add_column(column)
    for row in t.speculation:
        cells = [f"{row.rates[k]:.1f} ({row.speedups.get(k, 0):.2f}×)" for k in kinds if k in row.rates]
        table.add_row(escape(row.label), *(cells if not row.error else [escape(row.error)] + [""] * (len(kinds) - 1)),
                      "yes" if row.identical and not row.error else "[red]no[/red]")
    console.print(table)
    clients = list(t.settings[0].aggregate) if t.settings else []
    table = Table(title="Engine settings (aggregate tokens/s; TTFT p50 ms)")
    for column in ("settings", *(f"{n} clients" for n in clients)):
        table.add_column(column)
    for row in t.settings:
        table.add_row(escape(row.label), *(f"{row.aggregate[n]:.1f} ({row.ttft_ms[n]:.0f} ms)" for n in clients
                                           if n in row.aggregate))
    console.print(table)
    for skipped in t.skipped:
        console.print(f"skipped: {escape(skipped)}")
    console.print(f"chosen: [bold]{escape(t.chosen)}[/bold] — the model is served with it from its next load")


def disk_usage(u: r.DiskUsage, console: Console) -> None:
    table = Table(title=f"Disk usage of {u.models_dir}")
    for column, justify in (("model", "left"), ("format", "left"), ("files", "right"), ("manifest", "right"),
                            ("imatrix", "right"), ("total", "right"), ("removing frees", "right")):
        table.add_column(column, justify=justify)
    for row in u.models:
        name = escape(row.name) + (" (loaded)" if row.loaded else "")
        table.add_row(name, f"{row.format} {row.level or ''}", format_bytes(row.artefact_bytes),
                      format_bytes(row.manifest_bytes) if row.manifest_bytes else "-",
                      format_bytes(row.children_bytes) if row.children_bytes else "-",
                      format_bytes(row.total_bytes), format_bytes(row.frees_bytes))
    table.add_section()
    table.add_row("[bold]total[/bold]", f"{len(u.models)} models", "", "", "", format_bytes(u.total_bytes),
                  format_bytes(u.frees_bytes))
    console.print(table)
    console.print(f"free on that disk: {format_bytes(u.disk_free_bytes)} of {format_bytes(u.disk_total_bytes)}"
                  + ("" if u.frees_bytes >= u.total_bytes else
                     " — hard-linked files free nothing until their last link goes"))


RENDERERS: dict[type, Callable[[Any, Console], None]] = {
    r.AlreadyLoaded: already_loaded,
    r.ModelChanged: model_changed,
    r.ModelsRemoved: models_removed,
    r.ModelDetails: model_details,
    r.TuneResult: tune_result,
    r.DiskUsage: disk_usage,
}
