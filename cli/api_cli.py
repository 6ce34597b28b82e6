"""`lqmf` (or `python cli/api_cli.py`): the LQMF shell. Also --parse, -c, --script and --json for programs.

`lqmf serve ...` is `python -m server ...`; `lqmf demo` is `python -m agents.demo`. The packages are
importable because the project is installed (`make install`: `pip install -e .`), not by path patching.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from lqmf.base.environment import apply_environment_quirks
from lqmf.base.log import configure_logging
from lqmf.base.settings import load_settings

log = logging.getLogger("cli")


def parse_only(texts, settings) -> int:
    """--parse: print {"intent", "slots"} per line (model references resolved against the models dir)."""
    from agents.classifiers.artifact import classifier_names
    from agents.decision_agent import DecisionAgent
    from server.runtime.discovery import discover

    understanding = _understanding(settings, wait=True)
    agent = DecisionAgent(lambda: [rec.name for rec in discover(settings.models_dir)], meaning=understanding,
                          classifier_names=lambda: classifier_names(settings))
    try:
        for text in texts:
            print(json.dumps(agent.parse(text).to_dict()), flush=True)
    finally:
        if understanding is not None:
            understanding.close()
    return 0


def _understanding(settings, *, wait: bool):
    """The intent classifier (None with LQMF_INTENT_CLASSIFIER=0); with wait, loaded.

    A terminal's prompt never waits for it: the shell starts loading it once its first screen is drawn, and its
    first lines may be read by the rules alone. Piped lines and --parse wait, so the same input is always read
    the same way.
    """
    if not settings.intent_classifier:
        return None
    from agents.understanding.runtime import Understanding

    understanding = Understanding(settings)
    if wait:
        understanding.wait()
    return understanding


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = Path(sys.argv[0]).name or "lqmf"  # `lqmf` from the console script, `api_cli.py` as a script
    if argv[:1] == ["serve"]:
        from server.__main__ import main as serve

        return serve(argv[1:], prog=f"{prog} serve")
    if argv[:1] == ["demo"]:
        from agents.demo.__main__ import main as build_demo

        return build_demo(argv[1:], prog=f"{prog} demo")
    parser = argparse.ArgumentParser(
        prog=prog, description="LQMF: the Local Quantized Model Factory shell",
        epilog=f"{prog} serve [--host H] [--port P] [--allow-insecure-bind]: the API server in the foreground "
               f"(python -m server); {prog} demo [--real]: build the demo models (python -m agents.demo)",
    )
    parser.add_argument("--parse", metavar="TEXT", help='print the intent of TEXT as JSON; "-" reads lines from stdin')
    parser.add_argument("-c", dest="command", metavar="CMD", help="run one command and exit (non-zero on failure)")
    parser.add_argument("--script", metavar="FILE",
                        help="run the commands in FILE, one per line, in order; stop at the first that fails")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="answer yes to every confirmation (plans, removals, guessed commands), for -c, --script "
                             "and the shell alike: as if each line ended in --yes")
    args = parser.parse_args(argv)
    apply_environment_quirks()
    settings = load_settings()
    configure_logging(settings)
    if args.parse is not None:
        return parse_only(sys.stdin if args.parse == "-" else [args.parse], settings)

    from rich.console import Console

    from agents.classifiers.artifact import classifier_names
    from agents.decision_agent import DecisionAgent
    from agents.executor_agent import Executor, endpoint_names, make_assist, model_names
    from cli.shell import Shell
    from lqmf.api import Library
    from server.http.runner import BackgroundServer
    from server.runtime.manager import ModelManager

    manager = ModelManager(settings)
    # One library: the shell's commands and the API server it starts share its manager and history store.
    server = BackgroundServer(settings, Library(settings, manager))
    # Scripts (-c, --script) are read by the word rules alone: exactly, and without loading a model.
    understanding = None if args.command or args.script else _understanding(settings, wait=not sys.stdin.isatty())
    executor = Executor(settings, manager, server, understanding=understanding)
    agent = DecisionAgent(model_names(executor.library), assist=make_assist(settings, manager), meaning=understanding,
                          classifier_names=lambda: classifier_names(settings),
                          endpoint_names=endpoint_names(executor.library))
    console = Console(highlight=False)
    try:
        if args.command or args.script:
            lines = [args.command] if args.command else Path(args.script).read_text(encoding="utf-8").splitlines()
            shell = Shell(executor, agent, console, as_json=args.json, session=_NoSession(), interactive=False,
                          yes=args.yes)
            return run_lines(shell, lines, settings.logs_dir / "lqmf.log")
        # A pipe is read line by line; prompt_toolkit is for terminals (it would swallow piped lines).
        session = None if sys.stdin.isatty() else _NoSession()
        if sys.stdin.isatty():
            # Ctrl-C must stop a generation even when a parent started us with SIGINT ignored.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        # Piped lines are typed lines: plans are confirmed and login reads the token from the next line.
        Shell(executor, agent, console, as_json=args.json, session=session, interactive=True, yes=args.yes).loop()
        return 0
    finally:
        server.stop()
        executor.close()
        manager.close()
        if understanding is not None:
            understanding.close()


def run_lines(shell, lines: list[str], log_path: Path) -> int:
    """-c and --script: run the lines in order and stop at the first that fails; 0, 1 (a failure) or 130 (Ctrl-C).

    A failure is a result that is not ok (an LQMF error, a question, an unknown command) or an
    unexpected exception; the lines after it would run against a state the script did not expect.
    An unexpected exception is reported with its line, and its traceback goes to the log file.
    """
    from rich.markup import escape

    from lqmf.base.units import plural

    console = shell.console
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]
    for index, (number, line) in enumerate(numbered):
        try:
            ok = shell.run_line(line).ok
        except KeyboardInterrupt:
            # Runs record themselves incomplete and remove their partial outputs on the way out.
            if shell.as_json:
                console.print_json(json.dumps({"line_number": number, "line": line, "cancelled": True}))
            else:
                console.print(f"[yellow]cancelled:[/yellow] {escape(line)}")
            return 130
        except Exception as exc:
            if shell.executor.settings.debug:
                raise
            log.exception("line %d (%r) failed unexpectedly", number, line)
            error = {"type": type(exc).__name__, "message": str(exc), "unexpected": True, "log": str(log_path)}
            if shell.as_json:
                console.print_json(json.dumps({"line_number": number, "line": line, "error": error}))
            else:
                console.print(f"[red]unexpected error on line {number}[/red] ({escape(line.strip())}): "
                              f"{escape(error['type'])}: {escape(error['message'])}\n  → the traceback is in "
                              f"{escape(str(log_path))}")
            ok = False
        if not ok:
            not_run = len(numbered) - index - 1
            if not_run:
                if shell.as_json:
                    console.print_json(json.dumps({"stopped": {"line_number": number, "line": line,
                                                               "not_run": not_run}}))
                else:
                    console.print(f"[yellow]stopped at line {number}:[/yellow] the "
                                  f"{plural(not_run, 'command line')} after it did not run")
            return 1
    return 0


class _NoSession:
    """Non-interactive runs never prompt (chat with a prompt answers once; chat mode reads stdin)."""

    def prompt(self, message: str, **_: object) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")


if __name__ == "__main__":
    sys.exit(main())
