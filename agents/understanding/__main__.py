"""python -m agents.understanding [--force]: build the shell's sentence model and intent classifier."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import Optional

log = logging.getLogger("agents.understanding")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.understanding", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when nothing changed")
    args = parser.parse_args(argv)
    from agents.understanding.build import build
    from lqmf.base.errors import LQMFError
    from lqmf.base.log import configure_logging, console_handler
    from lqmf.base.settings import load_settings

    settings = load_settings()
    configure_logging(settings)
    logging.getLogger().addHandler(console_handler("understanding"))
    try:
        report = build(settings, force=args.force)
    except LQMFError as exc:
        log.error("the shell's understanding could not be built: %s (%s)", exc.message, exc.hint)
        return 1
    measured = {k: v for k, v in asdict(report).items() if k not in ("folder", "built", "seconds")}
    log.info("intent classifier %s: %d example rows, %d intents, %.1f s (%s)\n%s",
             "built" if report.built else "up to date", report.rows, report.intents, report.seconds, report.folder,
             json.dumps(measured, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
