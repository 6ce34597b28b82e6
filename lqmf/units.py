"""Numbers for people: the one byte formatter every face uses."""

from __future__ import annotations

import math
from typing import Optional

_UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def format_bytes(n: Optional[float], *, empty: str = "-") -> str:
    """`n` bytes in the largest binary unit it fills (1.5 MiB, 3.0 GiB); `empty` for None."""
    if n is None:
        return empty
    if isinstance(n, float) and not math.isfinite(n):
        return "n/a"
    size = abs(n)
    for unit, scale in _UNITS:
        if size >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
