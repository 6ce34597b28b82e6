"""Ollama's keep_alive durations: the form a body may send, and its value in seconds.

A module of its own because both the request schemas (which bound the form) and the error translation (which
says in words what a mismatch of the form means) read the pattern.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from lqmf.base.errors import InvalidRequest

MAX_KEEP_ALIVE_S = 10 * 365 * 86400.0  # ten years: far enough to mean "forever", near enough for dates
# Ollama's / Go's durations ("5m", "1h30m", "250ms", "24h0m0s") or a plain number of seconds.
DURATION_PATTERN = r"^-?([0-9]{1,9}(\.[0-9]{1,9})?|([0-9]{1,6}(\.[0-9]{1,6})?(ms|s|m|h)){1,4})$"
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Union[float, str, None]) -> Optional[float]:
    """Ollama's keep_alive in seconds: -1 forever, 0 now; the body's schema has already bounded its form."""
    if value is None:
        return None
    if isinstance(value, str):
        negative = value.startswith("-")
        text = value.lstrip("-")
        parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?", text)
        total = sum(float(n) * _UNIT_S[u or "s"] for n, u in parts)
        value = -total if negative else total
    if value > MAX_KEEP_ALIVE_S:
        raise InvalidRequest(f"keep_alive of {value:.0f} s is more than ten years",
                             "use a negative keep_alive (e.g. -1) to keep the model loaded for good")
    return float(value) if value >= 0 else -1.0
