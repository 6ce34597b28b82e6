"""The base of every typed result: what the library returns, the shell draws and --json prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any


@dataclass
class Result:
    """Base of every result; `ok` False means the command failed (the shell's -c exits non-zero)."""

    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data, with its type's name under "type"."""
        data = asdict(self) if is_dataclass(self) else {}
        data["type"] = type(self).__name__
        return data
