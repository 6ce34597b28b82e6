"""How a model record is listed over HTTP: the extras OpenAI's and Ollama's model listings share."""

from __future__ import annotations

from typing import Any


def remote_facts(record: Any) -> dict[str, Any]:
    """A listing entry's extra for a remote model: host, health, probe latency (clients ignore unknown keys)."""
    if getattr(record, "remote", None) is None:
        return {}
    return {"remote": {"host": record.display.get("host"), "health": record.remote["health"],
                       "latency_ms": record.remote["latency_ms"]}}
