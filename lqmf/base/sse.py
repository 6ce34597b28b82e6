"""Reading an OpenAI-style server-sent event stream as a client: the JSON events, up to `data: [DONE]`."""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from lqmf.base.errors import LQMFError


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Each `data:` line's JSON object until `[DONE]`; an error event raises LQMFError with its message."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        if not payload:
            continue
        event = json.loads(payload)
        if "error" in event:
            raise LQMFError(f"error event: {str(event['error'])[:200]}")
        yield event
