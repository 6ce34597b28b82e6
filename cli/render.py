"""Typed results -> rich tables and panels (a dispatch table by result type)."""

from __future__ import annotations

import time
from typing import Any, Callable

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from agents import results as r


def _size(n: Any) -> str:
    if not n:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _params(n: Any) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def model_list(res: r.ModelList, console: Console) -> None:
    if not res.models:
        console.print(f"No models in {res.models_dir}. Run `make setup` to build the demo models.")
        return
    table = Table(title=f"Models in {res.models_dir}")
    for column in ("name", "format", "level", "bits", "size", "params", "context", "loaded", "usable"):
        table.add_column(column)
    for m in res.models:
        table.add_row(
            m["name"], m["format"], m.get("level") or "-", f"{m['bits']:g}" if m.get("bits") else "-",
            _size(m["size_bytes"]), _params(m.get("parameter_count")), str(m.get("context_length") or "-"),
            "yes" if m.get("loaded") else "", "yes" if m["usable"] else f"no: {m['reason']}",
        )
    console.print(table)


def loaded_table(models: list[dict], console: Console) -> None:
    if not models:
        console.print("No model is loaded.")
        return
    table = Table(title="Loaded models")
    for column in ("name", "format", "level", "memory", "load time", "last used", "queue", "keep alive"):
        table.add_column(column)
    for m in models:
        keep = "forever" if m["keep_alive_s"] < 0 else f"{m['keep_alive_s']:g} s"
        table.add_row(m["name"], m["format"], m.get("level") or "-", _size(m["memory_bytes"]),
                      f"{m['load_time_s']:.2f} s", f"{time.time() - m['last_used']:.0f} s ago",
                      str(m["queue_depth"]), keep)
    console.print(table)


def server_info(res: r.ServerInfo, console: Console) -> None:
    if res.running:
        text = f"API server running at [bold]{res.url}[/bold] (host {res.host}, port {res.port}, up {res.uptime_s:.0f} s)"
        text += f"\nOpenAI: {res.url}/v1   Ollama: {res.url}/api   docs: {res.url}/docs"
    else:
        text = "API server not running (start it with: start server)"
    if res.note:
        text = f"{res.note}. {text}"
    console.print(Panel(text, title="server"))
    loaded_table(res.loaded, console)


def loaded(res: r.Loaded, console: Console) -> None:
    m = res.model
    console.print(f"[green]loaded[/green] {m['name']} ({m['format']} {m.get('level') or ''}) in "
                  f"{m['load_time_s']:.2f} s, {_size(m['memory_bytes'])}, context {m['context_length']}")


def config(res: r.Config, console: Console) -> None:
    table = Table(title="Configuration (LQMF_* environment variables)")
    table.add_column("setting")
    table.add_column("value")
    for key, value in res.values.items():
        table.add_row(key, str(value))
    console.print(table)


def help_table(res: r.Help, console: Console) -> None:
    table = Table(title="Commands (plain words work too: typos, any order, 'please')")
    table.add_column("say")
    table.add_column("does")
    for say, does in res.commands:
        table.add_row(say, does)
    console.print(table)


def question(res: r.Question, console: Console) -> None:
    choices = f"\n  choices: {', '.join(res.choices)}" if res.choices else ""
    console.print(f"[yellow]?[/yellow] {res.text}{choices}")


RENDERERS: dict[type, Callable[[Any, Console], None]] = {
    r.ModelList: model_list,
    r.ServerInfo: server_info,
    r.Loaded: loaded,
    r.Unloaded: lambda res, c: c.print(f"[green]unloaded[/green] {res.name}"),
    r.Config: config,
    r.Help: help_table,
    r.Question: question,
    r.Message: lambda res, c: c.print(res.text),
    r.ErrorResult: lambda res, c: c.print(f"[red]error:[/red] {res.message}" + (f"\n  → {res.hint}" if res.hint else "")),
    r.Unknown: lambda res, c: c.print(f"I did not understand '{res.text}'. Did you mean: [bold]{res.suggestion}[/bold]?"),
    r.NotBuilt: lambda res, c: c.print(f"[yellow]{res.feature[0].upper()}{res.feature[1:]}.[/yellow]"),
    r.Exit: lambda res, c: None,
    r.ChatStart: lambda res, c: None,
}


def render(result: r.Result, console: Console) -> None:
    """Draw a result."""
    RENDERERS[type(result)](result, console)
