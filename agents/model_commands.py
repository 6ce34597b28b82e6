"""The shell's model-management commands over agents/models/admin.py (agents/intent_table.py routes intents here).

    remove NAME [and NAME2] [--yes]   asks first; refused while one is loaded (unload model NAME first)
    show NAME                manifest, lineage tree, latest speed and fidelity, chat template, context
    rename NAME to NEW       files, manifest, importance matrix and the lineage of its children follow
    copy NAME to NEW         an independent copy (the original keeps its children)
    disk usage               per model and in total, with what removing each frees, and the free space

`load model NAME` is handled here too, to say when NAME was loaded already (its keep_alive starts over)
instead of reporting a load that did not happen.
"""

from __future__ import annotations

from typing import Optional

from agents import results as r
from agents.intents import Command, Intent, Slots
from lqmf.base.errors import LQMFError
from lqmf.base.progress import Progress


class ModelCommands:
    """Handlers over the executor's library (the same manager and history store the API server uses)."""

    def __init__(self, executor) -> None:
        self.executor = executor

    @property
    def library(self):
        return self.executor.library

    def load(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """The executor's load; a model that was loaded already says so (manager.load refreshed its last use).
        "load A and B" loads each, in order."""
        if len(command.slots.models) > 1:
            done = [self._load_one(name, progress) for name in command.slots.models]
            return r.Message(text="; ".join(_said(result) for result in done))
        return self._load_one(command.slots.model, progress)

    def _load_one(self, name: Optional[str], progress: Optional[Progress]) -> r.Loaded:
        was_loaded = bool(name) and self.library.is_loaded(name)
        result = self.executor.load(Command(Intent.LOAD_MODEL_API, Slots(model=name)), progress)
        if was_loaded and type(result) is r.Loaded:
            return r.AlreadyLoaded(model=result.model, note=result.note)
        return result

    def remove(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Asks first, one question naming every model ("remove A and B"), refused before it, not after a yes, while
        any of them is loaded; then removes each in order, and says which were removed if one fails."""
        names = command.slots.models if len(command.slots.models) > 1 else [command.slots.model]
        question = self.library.removal_question(names if len(names) > 1 else names[0])
        if not command.slots.yes:
            return r.Confirm(question=question)
        if len(names) == 1:
            return self.library.remove(names[0])
        changes = []
        for name in names:
            try:
                changes.append(self.library.remove(name).change)
            except LQMFError as exc:
                done = f" (removed {', '.join(c.name for c in changes)})" if changes else ""
                return r.ErrorResult(message=f"{name}: {exc.message}{done}", hint=exc.hint)
        return r.ModelsRemoved(changes=changes)

    def show(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        return self.library.show(command.slots.model)

    def _new_name(self, command: Command, verb: str) -> Optional[r.Result]:
        if not command.slots.name:
            model = command.slots.model or "NAME"
            return r.Question(text=f"{verb.capitalize()} {model} to what? {verb} {model} to NEW")
        return None

    def rename(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """With no model named, the library's error says which form to type; with no new name, the question."""
        asked = self._new_name(command, "rename") if command.slots.model else None
        return asked or self.library.rename(command.slots.model, command.slots.name)

    def copy(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        asked = self._new_name(command, "copy") if command.slots.model else None
        return asked or self.library.copy(command.slots.model, command.slots.name)


def _said(result: r.Loaded) -> str:
    """One loaded model in a line: its name, and whether it was loaded already."""
    name = result.model.get("name", "?")
    return f"{name} was loaded already" if isinstance(result, r.AlreadyLoaded) else f"loaded {name}"
