"""Logging set-up: one rotating file under the logs folder."""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler

from lqmf.settings import Settings

_HANDLER_NAME = "lqmf-file"


def configure_logging(settings: Settings) -> logging.Handler:
    """Attach a rotating handler writing logs/lqmf.log to the root logger (idempotent)."""
    root = logging.getLogger()
    log_path = settings.logs_dir / "lqmf.log"
    for handler in root.handlers:
        if handler.get_name() == _HANDLER_NAME:
            if getattr(handler, "baseFilename", None) == str(log_path):
                return handler
            root.removeHandler(handler)
            handler.close()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(log_path, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8")
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    level = logging.getLevelName(settings.log_level.upper())
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    return handler


def console_handler(tag: str) -> logging.Handler:
    """INFO and above from LQMF's own loggers on stderr, as `[tag] message`: what a setup step tells the person."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(f"[{tag}] %(message)s"))
    handler.addFilter(lambda record: record.name.startswith(("lqmf", "agents")))
    return handler
