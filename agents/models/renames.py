"""Names in the history followed through later renames and removals (the `model_changes` table).

The history keeps what was true when a run was recorded; listings show what is true now, so a run whose output
was renamed names the new model and says what it was called.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

CHANGES_FOLLOWED = 10_000  # model changes read to follow names: far more than any history holds


@dataclass(frozen=True)
class NameNow:
    """What became of a name recorded at some time: its name now, or removed."""

    name: str
    renamed_from: Optional[str] = None
    removed: bool = False


def name_now(name: str, since: float, changes: list[dict[str, Any]], *, artefact: bool = False) -> NameNow:
    """`name` as recorded at `since`, through every change after it (oldest first); `artefact`: a file or folder
    name (demo-q4_k_m.gguf) rather than a model name (demo-q4_k_m)."""
    current = name
    for change in sorted(changes, key=lambda c: (c["created_at"], c["id"])):
        if change["created_at"] <= since:  # before the run: it cannot be about what the run made
            continue
        old = Path(change["path"]).name if artefact else change["name"]
        if old != current:
            continue
        if change["action"] == "removed":
            return NameNow(current, renamed_from=name if current != name else None, removed=True)
        if change["action"] == "renamed":
            current = Path(change["new_path"]).name if artefact else change["new_name"]
    return NameNow(current, renamed_from=name if current != name else None)


def runs_with_names_now(runs: list[dict[str, Any]], changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Quantization runs with their source and output as named now; `renamed_from` / `removed` say what changed."""
    out = []
    for run in runs:
        since = run.get("started_at") or 0.0
        output = name_now(run["output"], since, changes, artefact=True)
        source = name_now(run["source"], since, changes)
        row = {**run, "output": output.name, "source": source.name}
        if output.renamed_from:
            row["output_renamed_from"] = output.renamed_from
        if output.removed:
            row["output_removed"] = True
        if source.renamed_from:
            row["source_renamed_from"] = source.renamed_from
        out.append(row)
    return out
