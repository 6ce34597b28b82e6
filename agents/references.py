"""Which of the names a line gives it acts on: "load B, not A" acts on B (shared by every reader of a line)."""

from __future__ import annotations

import re

# Not "from" or "than": "drifted from A" and "faster than B" name the reference and the other side.
SET_ASIDE = r"(?:not|instead\s+of|keep|keeping|forget|except|leave|leaving)\s+(?:the\s+)?(?:model\s+)?"


def acted_on(line: str, refs: list[str]) -> list[str]:
    """The references a command acts on, when a line names others to set aside: "load B, not A", "unload A but
    keep B", "forget A, chat with B", "I meant B" (the one meant). Unchanged when that would leave none."""
    if len(refs) < 2:
        return refs
    meant = [ref for ref in refs if re.search(rf"\bmeant\s+(?:the\s+)?{re.escape(ref)}", line, re.I)]
    if meant:
        return meant
    moved = re.search(r"\bfrom\s+(\S+)\s+to\s+(\S+)", line, re.I)  # "switch the default from A to B": B
    if moved and {moved.group(1).rstrip(",."), moved.group(2).rstrip(",.?!")} <= set(refs):
        return [moved.group(2).rstrip(",.?!")]
    kept = [ref for ref in refs if not re.search(rf"\b{SET_ASIDE}{re.escape(ref)}(?![\w.-])", line, re.I)]
    return kept or refs
