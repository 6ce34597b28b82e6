"""`python cli/api_cli.py`: the LQMF shell (for now it lists the models it sees)."""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts cli/ first on sys.path; the packages live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402

from lqmf.environment import apply_environment_quirks  # noqa: E402
from lqmf.log import configure_logging  # noqa: E402
from lqmf.settings import Settings, load_settings  # noqa: E402

log = logging.getLogger("cli")
NOT_BUILT = "is not built yet; for now the shell lists models (type 'list')."


def render_models(settings: Settings) -> None:
    """Print the discovered models as a table."""
    from rich.console import Console
    from rich.table import Table

    from server.discovery import discover

    records = discover(settings.models_dir)
    console = Console()
    if not records:
        console.print(f"No models in {settings.models_dir}. Run `make setup` to build the demo models.")
        return
    table = Table(title=f"Models in {settings.models_dir}")
    for column in ("name", "format", "level", "bits", "size", "params", "context", "usable"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.name, r.format, r.level or "-", f"{r.bits:g}" if r.bits else "-",
            f"{r.size_bytes / 2**20:.1f} MiB", f"{r.parameter_count / 1e6:.2f}M" if r.parameter_count else "-",
            str(r.context_length or "-"), "yes" if r.usable else f"no: {r.reason}",
        )
    console.print(table)


def run_command(text: str, settings: Settings) -> bool:
    """Run one command; return False when the shell should exit."""
    words = text.strip().lower().split()
    if not words:
        return True
    if words[0] in {"exit", "quit", "bye"}:
        return False
    if words[0] in {"list", "ls", "models"} or text.strip().lower() in {"list models", "show models"}:
        render_models(settings)
    elif words[0] in {"help", "?"}:
        print("Commands: list (models on disk), help, exit. Loading, chat and the server arrive next.")
    else:
        print(f"'{text.strip()}' {NOT_BUILT}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="api_cli.py", description="LQMF shell")
    parser.add_argument("-c", dest="command", help="run one command and exit")
    args = parser.parse_args(argv)
    apply_environment_quirks()
    settings = load_settings()
    configure_logging(settings)
    if args.command:
        run_command(args.command, settings)
        return 0
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    settings.history_path.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(history=FileHistory(str(settings.history_path)))
    print("LQMF shell. Type 'help' for commands, 'exit' to quit.")
    render_models(settings)
    while True:
        try:
            text = session.prompt("lqmf> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if not run_command(text, settings):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
