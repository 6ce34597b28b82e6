"""python -m agents.understanding [--force]: build the shell's sentence model and intent classifier."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.understanding", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when nothing changed")
    args = parser.parse_args(argv)
    from agents.understanding.build import build
    from lqmf.errors import LQMFError
    from lqmf.log import configure_logging
    from lqmf.settings import load_settings

    settings = load_settings()
    configure_logging(settings)
    try:
        report = build(settings, force=args.force)
    except LQMFError as exc:
        print(f"the shell's understanding could not be built: {exc.message}\n  {exc.hint}", file=sys.stderr)
        return 1
    what = "built" if report.built else "up to date"
    print(f"intent classifier {what}: {report.rows} example rows, {report.intents} intents, {report.seconds:.1f} s "
          f"({report.folder})")
    print(json.dumps({k: v for k, v in asdict(report).items() if k not in ("folder", "built", "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
