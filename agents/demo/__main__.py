"""`python -m agents.demo`: build (or confirm) the demo models in the models folder."""

from __future__ import annotations

import logging
import sys
import time

from lqmf.environment import apply_environment_quirks
from lqmf.errors import LQMFError
from lqmf.log import configure_logging
from lqmf.settings import load_settings


def main() -> int:
    apply_environment_quirks()
    settings = load_settings()
    configure_logging(settings)
    logging.getLogger().addHandler(_console_handler())
    from agents.demo.build import build_demo

    start = time.perf_counter()
    try:
        report = build_demo(settings)
    except LQMFError as exc:
        logging.getLogger("agents.demo").error("%s", exc)
        return 1
    logging.getLogger("agents.demo").info(
        "demo models in %s: built %s, cached %s; held-out perplexity %.1f (vocabulary %d); %.0f s",
        settings.models_dir, report.built or "none", report.cached or "none",
        report.heldout_perplexity, report.vocab_size, time.perf_counter() - start,
    )
    return 0


def _console_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("[demo] %(message)s"))
    handler.addFilter(lambda record: record.name.startswith(("lqmf", "agents")))
    return handler


if __name__ == "__main__":
    sys.exit(main())
