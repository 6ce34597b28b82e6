"""Numbers for people: the one byte formatter every face uses, and counted words (1 file, 2 files)."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Optional

_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_SCALE = MappingProxyType({"B": 1, **dict(_UNITS)})


def plural(count: int, word: str, many: Optional[str] = None) -> str:
    """`count` and `word`, in the plural unless it is one: 1 file, 2 files; `many` for other plurals (replies)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def nonfinite_text(value: float) -> Optional[str]:
    """nan / ∞ / −∞ for a value that is not finite (the terminal and the reports print them so); else None."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return None


def format_bytes(n: Optional[float], *, empty: str = "-", unit: Optional[str] = None, small: bool = False) -> str:
    """`n` bytes in the largest binary unit it fills (1.5 MiB, 3.0 GiB); `empty` for None.

    `unit` ("MiB") fixes the unit and leaves its name out, for a column whose header names it;
    `small` keeps more decimals below 100 units, so that tiny demo models' sizes can be told apart.
    """
    if n is None:
        return empty
    special = nonfinite_text(float(n))
    if special:
        return special
    if unit is None:
        unit = next((name for name, scale in _UNITS if abs(n) >= scale), "B")
        suffix = f" {unit}"
    else:
        suffix = ""
    if unit == "B":
        return f"{int(n)}{suffix}"
    value = n / _SCALE[unit]
    decimals = 1 if not small or abs(value) >= 100 else 2 if abs(value) >= 1 else 3
    return f"{value:,.{decimals}f}{suffix}"
