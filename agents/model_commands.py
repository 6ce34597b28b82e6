"""The shell's model-management commands over agents/models/admin.py (agents/intent_table.py routes intents here).

    remove NAME [--yes]      asks first; refused while NAME is loaded (unload model NAME first)
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
from agents.intents import Command
from lqmf.base.progress import Progress


class ModelCommands:
    """Handlers over the executor's library (the same manager and history store the API server uses)."""

    def __init__(self, executor) -> None:
        self.executor = executor

    @property
    def library(self):
        return self.executor.library

    @property
    def admin(self):
        """agents.models.admin, imported on first use (the shell starts without it)."""
        from agents.models import admin as model_admin

        return model_admin

    def load(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """The executor's load; a model that was loaded already says so (manager.load refreshed its last use)."""
        name = command.slots.model
        was_loaded = bool(name) and self.library.manager.is_loaded(name)
        result = self.executor.load(command, progress)
        if was_loaded and type(result) is r.Loaded:
            return r.AlreadyLoaded(model=result.model, note=result.note)
        return result

    def remove(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Asks first (refused before the question, not after a yes, while the model is loaded)."""
        manager = self.library.manager
        name = self.admin.require_model(manager, command.slots.model, "remove")
        self.admin.check_removable(manager, name)
        if not command.slots.yes:
            return r.Confirm(question=self.admin.removal_question(self.admin.plan_removal(manager, name)))
        return self.library.remove(name)

    def show(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        return self.library.show(command.slots.model)

    def _new_name(self, command: Command, verb: str) -> Optional[r.Result]:
        if not command.slots.name:
            model = command.slots.model or "NAME"
            return r.Question(text=f"{verb.capitalize()} {model} to what? {verb} {model} to NEW")
        return None

    def rename(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        self.admin.require_model(self.library.manager, command.slots.model, "rename")
        return self._new_name(command, "rename") or self.library.rename(command.slots.model, command.slots.name)

    def copy(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        self.admin.require_model(self.library.manager, command.slots.model, "copy")
        return self._new_name(command, "copy") or self.library.copy(command.slots.model, command.slots.name)
