"""What asking about the models on disk returns: the listing, one model's details, changes and disk usage.

The library (lqmf.api) returns these, the shell draws them (cli/render.py, cli/render_models.py) and --json
prints their to_dict().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Optional

from lqmf.results import Result

if TYPE_CHECKING:  # typing only
    from agents.models.admin import Change
    from server.discovery import ModelRecord


@dataclass
class ModelList(Result):
    """Every model on disk (usable or not), then every remote endpoint; iterate it for the records."""

    models_dir: str = ""
    models: list["ModelRecord"] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)  # the names loaded in memory now

    def __iter__(self) -> Iterator["ModelRecord"]:
        return iter(self.models)

    @property
    def names(self) -> list[str]:
        """The models' names, in the listing's order."""
        return [record.name for record in self.models]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each record's facts (without its manifest) and whether it is loaded."""
        models = [{**record.to_dict(), "loaded": record.name in self.loaded} for record in self.models]
        return {"ok": self.ok, "models_dir": self.models_dir, "models": models, "type": type(self).__name__}


@dataclass
class ModelDetails(Result):
    """`show NAME`: the manifest's facts, the lineage tree, the latest figures, chat template and context."""

    model: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelChanged(Result):
    """A model removed, renamed or copied: what changed on disk (and was recorded in the history)."""

    change: Optional["Change"] = None


@dataclass
class DiskUsage(Result):
    """Per model: bytes on disk and what removing it frees; the total and the disk's free space."""

    usage: dict[str, Any] = field(default_factory=dict)
