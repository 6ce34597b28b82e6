"""The shell's model-management commands over agents/models/admin.py (merged into the executor's table).

    remove NAME [--yes]      asks first; refused while NAME is loaded (unload model NAME first)
    show NAME                manifest, lineage tree, latest speed and fidelity, chat template, context
    rename NAME to NEW       files, manifest, importance matrix and the lineage of its children follow
    copy NAME to NEW         an independent copy (the original keeps its children)
    disk usage               per model and in total, with what removing each frees, and the free space

`load model NAME` is handled here too, to say when NAME was loaded already (its keep_alive starts over)
instead of reporting a load that did not happen.
"""

from __future__ import annotations

from typing import Callable

from agents import results as r
from agents.intents import Command, Intent


class ModelCommands:
    """Handlers over the executor's manager and history store (the same ones the API server uses)."""

    def __init__(self, executor) -> None:
        self.executor = executor

    def handlers(self) -> dict[Intent, Callable[[Command], r.Result]]:
        return {Intent.REMOVE_MODEL: self.remove, Intent.SHOW_MODEL: self.show, Intent.RENAME_MODEL: self.rename,
                Intent.COPY_MODEL: self.copy, Intent.DISK_USAGE: self.disk_usage, Intent.LOAD_MODEL_API: self.load}

    @property
    def admin(self):
        """agents.models.admin, imported on first use (the shell starts without it)."""
        from agents.models import admin as model_admin

        return model_admin

    @property
    def manager(self):
        return self.executor.manager

    @property
    def store(self):
        return self.executor.experiments.store

    def load(self, command: Command) -> r.Result:
        """The executor's load; a model that was loaded already says so (manager.load refreshed its last use)."""
        name = command.slots.model
        was_loaded = bool(name) and self.manager.is_loaded(name)
        result = self.executor.load(command)
        if was_loaded and type(result) is r.Loaded:
            return r.AlreadyLoaded(model=result.model, note=result.note)
        return result

    def remove(self, command: Command) -> r.Result:
        name = self.admin.require_model(self.manager, command.slots.model, "remove")
        self.admin.check_removable(self.manager, name)  # refused before the question, not after a yes
        if not command.slots.yes:
            return r.Confirm(question=self.admin.removal_question(self.admin.plan_removal(self.manager, name)))
        change = self.admin.remove_model(self.manager, name, store=self.store)
        return r.ModelChanged(change=change.to_dict())

    def show(self, command: Command) -> r.Result:
        name = self.admin.require_model(self.manager, command.slots.model, "show")
        return r.ModelDetails(model=self.admin.show_model(self.manager, name, store=self.store))

    def _new_name(self, command: Command, verb: str) -> r.Result | None:
        if not command.slots.name:
            model = command.slots.model or "NAME"
            return r.Question(text=f"{verb.capitalize()} {model} to what? {verb} {model} to NEW")
        return None

    def rename(self, command: Command) -> r.Result:
        name = self.admin.require_model(self.manager, command.slots.model, "rename")
        if (question := self._new_name(command, "rename")) is not None:
            return question
        change = self.admin.rename_model(self.manager, name, command.slots.name, store=self.store)
        return r.ModelChanged(change=change.to_dict())

    def copy(self, command: Command) -> r.Result:
        name = self.admin.require_model(self.manager, command.slots.model, "copy")
        if (question := self._new_name(command, "copy")) is not None:
            return question
        change = self.admin.copy_model(self.manager, name, command.slots.name, store=self.store)
        return r.ModelChanged(change=change.to_dict())

    def disk_usage(self, command: Command) -> r.Result:
        return r.DiskUsage(usage=self.admin.disk_usage(self.manager))
