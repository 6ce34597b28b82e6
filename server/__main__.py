"""`python -m server --host H --port P`: the API server in the foreground (models from LQMF_MODELS_DIR).

`lqmf serve ...` (the console script, cli/api_cli.py) is the same.
"""

from __future__ import annotations

import argparse
import sys

from lqmf.base.environment import apply_environment_quirks
from lqmf.base.errors import LQMFError
from lqmf.base.log import configure_logging
from lqmf.base.processes import recorded_server
from lqmf.base.settings import load_settings

INTERRUPTED = 128 + 2  # a shell's code for "ended by SIGINT", as `lqmf -c` returns for a cancelled line


def main(argv: list[str] | None = None, prog: str = "python -m server") -> int:
    """Also `lqmf serve` (cli/api_cli.py passes its own name as `prog`)."""
    settings = load_settings()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=settings.host, help=f"address to bind (default {settings.host})")
    parser.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    parser.add_argument("--allow-insecure-bind", action="store_true",
                        help="bind a non-loopback address without an API key")
    args = parser.parse_args(argv)
    try:
        return _serve(args, settings)
    except KeyboardInterrupt:
        # Ctrl-C while starting, or uvicorn re-raising the one it handled after shutting down: a traceback says
        # nothing the person does not know.
        sys.stderr.write("stopped\n")
        return INTERRUPTED


def _serve(args: argparse.Namespace, settings) -> int:
    apply_environment_quirks()
    # The Host check allows the bound name, so the app must see the --host actually used.
    settings = settings.model_copy(update={"host": args.host})
    if args.allow_insecure_bind:
        settings = settings.model_copy(update={"allow_insecure_bind": True})
    configure_logging(settings)
    from server.http.app import create_app
    from server.http.runner import make_server
    from server.http.security import check_bind

    try:
        check_bind(args.host, settings.api_key.get_secret_value() if settings.api_key else None,
                   settings.allow_insecure_bind)
    except LQMFError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stderr.write(f"LQMF API on http://{args.host}:{args.port} (models from {settings.models_dir})\n")
    # SIGTERM or Ctrl-C: streams in flight end with an error event, the port is freed within seconds.
    with recorded_server(settings.servers_dir, args.host, args.port):
        make_server(create_app(settings), args.host, args.port).run()
    sys.stderr.write("stopped\n")  # told to stop by a signal it was not to die of (SIGINT ignored by a parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
