"""A model's engine settings as `tune NAME` measured them on this machine: speculation, threads, slots, batches.

The choice is stored with its measurements in the history (an experiment of kind "tune", agents.measure.tuning)
and applied when the model's llama-server child starts. It holds only for the file and the machine it was
measured on: a model replaced by another file of the same name, or a history carried to another CPU, is served
with the defaults until it is tuned again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

TUNE_KIND = "tune"  # the experiments' kind a tuning is stored under


@dataclass(frozen=True)
class Speculation:
    """One way llama-server may speculate: its `--spec-type` and the arguments that shape it ("none": it does not)."""

    name: str
    args: tuple[str, ...] = ()
    draft: Optional[str] = None  # a draft model's path (draft-simple)

    def server_args(self) -> tuple[str, ...]:
        """The llama-server arguments that select it."""
        if self.name == "none":
            return ()
        draft = ("-md", self.draft) if self.draft else ()
        return ("--spec-type", self.name, *self.args, *draft)

    @property
    def label(self) -> str:
        """How the shell and reports name it: the type, its shaping arguments, the draft's file name."""
        draft = f" with draft {Path(self.draft).name}" if self.draft else ""
        flags = [flag.removeprefix(f"--spec-{self.name}-").removeprefix("--spec-") for flag in self.args[::2]]
        shape = ", ".join(f"{flag} {value}" for flag, value in zip(flags, self.args[1::2], strict=True))
        return self.name + (f" ({shape})" if shape else "") + draft


NO_SPECULATION = Speculation("none")


@dataclass(frozen=True)
class EngineTuning:
    """What a model's child is started with instead of the defaults (None: the default is kept)."""

    speculation: Speculation = NO_SPECULATION
    threads: Optional[int] = None
    slots: Optional[int] = None
    batch: Optional[int] = None
    ubatch: Optional[int] = None
    machine: str = ""  # machine_fingerprint() where it was measured
    model_bytes: int = 0  # the model file's size when it was measured
    gains: dict[str, Any] = field(default_factory=dict)  # measured: {"single": {kind: x}, "aggregate": {n: x}}

    def server_args(self) -> tuple[str, ...]:
        """The llama-server arguments beyond LQMF's own (threads and slots are ChildSpec's)."""
        batches = (("-b", str(self.batch)) if self.batch else ()) + (("-ub", str(self.ubatch)) if self.ubatch else ())
        return (*self.speculation.server_args(), *batches)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineTuning":
        spec = data.get("speculation") or {}
        return cls(speculation=Speculation(spec.get("name", "none"), tuple(spec.get("args") or ()), spec.get("draft")),
                   threads=data.get("threads"), slots=data.get("slots"), batch=data.get("batch"),
                   ubatch=data.get("ubatch"), machine=data.get("machine", ""),
                   model_bytes=int(data.get("model_bytes") or 0), gains=dict(data.get("gains") or {}))

    def applies_to(self, path: Path) -> Optional[str]:
        """Why this tuning does not hold for the model file at `path` here (None: it holds)."""
        if self.machine != machine_fingerprint():
            return f"it was measured on another machine ({self.machine})"
        try:
            size = path.stat().st_size
        except OSError as exc:
            return f"its file cannot be read ({exc})"
        if size != self.model_bytes:
            return "the model's file changed since"
        if self.speculation.draft and not Path(self.speculation.draft).is_file():
            return f"its draft model {self.speculation.draft} is gone"
        return None


def machine_fingerprint() -> str:
    """The CPU model and core counts: what engine settings measured on one machine depend on."""
    import psutil

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {psutil.cpu_count(logical=False) or os.cpu_count()} cores, {os.cpu_count()} threads"
