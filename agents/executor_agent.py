"""Command -> result: each intent's handler (agents/intent_table.py names it) maps slots to a Library call."""

from __future__ import annotations

import logging
from functools import partial
from typing import Callable, Collection, Optional

from agents import intent_table as table
from agents import results as r
from agents.classifier_commands import ClassifierCommands
from agents.endpoint_commands import EndpointCommands
from agents.intents import Command, Intent
from agents.model_commands import ModelCommands
from lqmf.base.errors import FeatureUnsupported, LQMFError
from lqmf.base.progress import Progress
from lqmf.base.settings import Settings
from server.runtime.routing import DEFAULT

log = logging.getLogger(__name__)

LOW_CONFIDENCE = 0.8  # below it any command asks; one corrected word alone is 0.85 (a guarded command asks anyway)
YES = frozenset({"y", "yes"})
TOKEN_PROMPT = "Hugging Face token (hidden; make one at https://huggingface.co/settings/tokens): "

Handler = Callable[[Command, Optional[Progress]], r.Result]


class Executor:
    """Commands -> Library calls: each handler maps a command's slots to one call and wraps its result.

    One Library over the shell's manager (shared with the API server the shell starts); progress is
    passed into execute() by whoever draws it, and on to the call.
    """

    def __init__(self, settings: Settings, manager, server, understanding=None) -> None:
        from lqmf.api import Library

        self.settings = settings
        self.manager = manager
        self.server = server
        self.understanding = understanding  # the shell's intent classifier, for `show config` (None: rules alone)
        # The server's library when there is a server: the shell and the API it starts share one Store.
        self.library = server.library if server is not None else Library(settings, manager)
        # The handlers live here and in these three; agents/intent_table.py says which one runs each intent.
        self.classifier_commands = ClassifierCommands(self)
        self.endpoint_commands = EndpointCommands(self)
        self.model_commands = ModelCommands(self)
        self.handlers: dict[Intent, Handler] = {intent: partial(s.handler, self) for intent, s in table.SPECS.items()}

    def execute(self, command: Command, progress: Optional[Progress] = None, *,
                answers: Collection[table.Asks] = ()) -> r.Result:
        """Run one command (progress, when given, hears how long work advances); core errors become ErrorResult
        (LQMF_DEBUG=1 re-raises).

        `answers`: what the caller can ask its person (agents/intent_table.py's TwoStep kinds). A two-step intent
        whose kind is among them stops halfway and returns the question as a typed result: a runnable
        QuantizePlan ("plan"), a ChooseModel ("model"), a NeedsSecret ("secret"); answer() goes on with the reply.
        A guessed command returns a Confirm whatever the caller can answer; answer() runs it confirmed.
        """
        if command.intent is Intent.CHAT_WITH_MODEL and not command.slots.model and self._has_default():
            command.slots.model, command.question = DEFAULT, None  # `chat` alone talks to the default model
        if command.question:
            need = table.missing(command)
            if need is not None and need.choices == table.LOADED_MODELS:  # e.g. only what is loaded can be unloaded
                command.choices = [m["name"] for m in self.library.loaded()]
                if not command.choices:
                    return r.Message(text=need.none)
            return r.Question(text=command.question, choices=command.choices)
        step = table.two_step(command.intent)
        step = step if step is not None and step.asks in answers else None
        # A hidden prompt is its own question (an empty answer stores nothing): no "Did you mean: login?" first.
        confirm = None if step is not None and step.asks == "secret" else self.confirmation(command)
        if confirm is not None:
            return confirm
        try:
            if step is not None:
                return step.first(self, command, progress)
            return self.handlers[command.intent](command, progress)
        except LQMFError as exc:
            return self.failed(command, exc)

    def answer(self, command: Command, pending: r.Result, reply: str, progress: Optional[Progress] = None, *,
               answers: Collection[table.Asks] = ()) -> r.Result:
        """Go on with what execute() asked, given the person's reply: a yes to a Confirm runs the command confirmed
        (which may stop at its own question: `answers` as for execute), a yes to a runnable QuantizePlan runs it, a
        number or name from ChooseModel's models adds the endpoint with it, a NeedsSecret's secret logs in.

        An empty reply to ChooseModel or NeedsSecret does nothing and says so; any other reply to a y/N question
        is a no."""
        if isinstance(pending, r.NeedsSecret):
            return self._login(reply.strip())
        if isinstance(pending, r.ChooseModel):
            chosen = self._chosen(pending, reply.strip())
            if not isinstance(chosen, str):
                return chosen
            command.slots.remote_model = chosen
            return self.execute(command, progress, answers=answers)
        if reply.strip().lower() not in YES:
            return r.Message(text="Not done.")
        if isinstance(pending, r.QuantizePlan):
            try:
                return pending.run(progress)
            except LQMFError as exc:
                return self.failed(command, exc)
        command.slots.yes = True
        return self.execute(command, progress, answers=answers)

    @staticmethod
    def _chosen(pending: r.ChooseModel, answer: str):
        """The model an answer picks (a number or a name, however cased), or what to say instead."""
        if not answer:
            return r.Message(text=pending.cancelled)
        models = pending.models
        if answer.isdigit() and 1 <= int(answer) <= len(models):
            return models[int(answer) - 1]
        named = [m for m in models if m.lower() == answer.lower()]
        return named[0] if named else r.ErrorResult(message=f"{answer!r} is none of the {len(models)} models listed",
                                                    hint=pending.hint)

    def _login(self, token: str) -> r.Result:
        """Validate and store a Hugging Face token in the hub's own store."""
        if not token:
            return r.Message(text="No token given; nothing stored.")
        try:
            return self.library.login(token)
        except LQMFError as exc:
            return r.ErrorResult(message=exc.message, hint=exc.hint)

    @staticmethod
    def token_prompt() -> r.NeedsSecret:
        """login's first step: the hidden prompt for the token."""
        return r.NeedsSecret(prompt=TOKEN_PROMPT)

    def failed(self, command: Command, exc: LQMFError) -> r.ErrorResult:
        """A core error as the result the shell draws (LQMF_DEBUG=1 re-raises it instead)."""
        if self.settings.debug:
            raise exc
        log.info("command %r failed: %s", command.text, exc)
        return r.ErrorResult(message=exc.message, hint=exc.hint)

    @staticmethod
    def confirmation(command: Command) -> Optional[r.Confirm]:
        """A Confirm for a command not yet confirmed that was guessed: any command below LOW_CONFIDENCE, and a
        guarded (expensive or destructive) one with any corrected word, or that the word rules and the intent
        classifier read differently (it would rest on one word, or on the classifier alone)."""
        from agents.decision_agent import describe

        if command.slots.yes or table.never_asks(command.intent) or table.runs_as_understood(command):
            return None
        guessed = command.confidence < LOW_CONFIDENCE or \
            (table.guarded(command.intent) and (command.corrections or not command.agreed))
        if not guessed:
            return None
        return r.Confirm(question=f"Did you mean: {describe(command)}? [y/N]")

    def close(self) -> None:
        """Close the library's history store (and what it made); the manager belongs to the shell."""
        self.library.close()

    # -- handlers that do more than one call --------------------------------------------------------------
    def load(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        model = self.library.load(command.slots.model)
        return r.Loaded(model=model.info, note=self.library.engine_notice() or "")

    def unload(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Unload the model, each of several ("unload A and B"), or every loaded one ("unload everything"); a name that
        is not loaded is said, not skipped."""
        if command.slots.every:
            names = [m["name"] for m in self.library.loaded()]
            if not names:
                return r.ErrorResult(message="nothing is loaded, so there is nothing to unload",
                                     hint="list models shows what can be loaded")
        else:
            names = command.slots.models if len(command.slots.models) > 1 else [command.slots.model]
        missing = [name for name in names if not self.library.unload(name)]
        if missing:
            loaded = [m["name"] for m in self.library.loaded()]
            done = [name for name in names if name not in missing]
            return r.ErrorResult(message=f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not loaded"
                                         + (f" (unloaded {', '.join(done)})" if done else ""),
                                 hint=f"loaded now: {', '.join(loaded)}" if loaded else "nothing is loaded")
        return r.Unloaded(name=", ".join(names))

    def server_info(self, note: str = "") -> r.ServerInfo:
        """The server and the loaded models."""
        status = self.server.status()
        return r.ServerInfo(running=status.running, url=status.url, host=status.host, port=status.port,
                            uptime_s=status.uptime_s, loaded=self.library.loaded(), note=note,
                            gguf=self.library.engine_status())

    def start_server(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        if self.server.running:
            return self.server_info(note="the server was already running")
        self.server.start(port=command.slots.port)
        return self.server_info(note="started")

    def stop_server(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        if not self.server.running:
            return self.server_info(note="the server was not running")
        self.server.stop()
        return self.server_info(note="stopped")

    def _has_default(self) -> bool:
        try:
            return bool(self.library.default_chain())
        except LQMFError:
            return False

    def chat(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Chat mode with its session ready: the model is loaded first (errors come before chat mode starts);
        `default` takes the first model of the default chain that loads."""
        from agents.chat_session import ChatSession

        try:
            role = self.library.find(command.slots.model).role if command.slots.model else None
        except LQMFError:
            role = None  # `default`, or a name library.load explains
        if role == "embedding":
            raise FeatureUnsupported(f"{command.slots.model} is an embedding model: it makes vectors, not text",
                                     f"embed with it, or measure it: fidelity of {command.slots.model}")
        model = self.library.load(command.slots.model)
        return r.ChatStart(model=model.name, prompt=command.slots.prompt,
                           session=ChatSession(self.library, model.name, asked=command.slots.model))

    def config(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        s = self.settings
        values = {
            "home": str(s.root), "models_dir": str(s.models_dir), "database": str(s.db_path),
            "logs": str(s.logs_dir / "lqmf.log"), "history": str(s.history_path),
            "max_models": s.max_models, "max_memory_mb": s.max_memory_mb, "context_length": s.context_length,
            "keep_alive_s": s.keep_alive_s, "queue_size": s.queue_size, "host": s.host, "port": s.port,
            "api_key": "set" if s.api_key else "not set", "autoload": s.autoload,
            "understanding": self.understanding.status() if self.understanding is not None else "word rules only",
        }
        return r.Config(values={**values, **self._running_server()})

    def _running_server(self) -> dict[str, object]:
        """Where the shell's server listens now (`start server on port P` overrides LQMF_PORT), the configured host
        and port beside it when they differ, and the `lqmf serve` processes running over the same LQMF_HOME."""
        from lqmf.base.processes import running_servers

        s, status = self.settings, self.server.status()
        elsewhere = [f"{entry['url']} (lqmf serve, pid {entry['pid']})" for entry in running_servers(s.servers_dir)]
        values: dict[str, object] = {"server": f"running at {status.url}" if status.running else "not running here"}
        if elsewhere:
            values["other_servers"] = ", ".join(elsewhere)
        if status.running:
            values.update(host=status.host, port=status.port)
            if status.host != s.host:
                values["configured_host"] = s.host
            if status.port != s.port:
                values["configured_port"] = s.port
        return values

    @staticmethod
    def with_file(run: Callable[..., r.Result], command: Command, progress: Optional[Progress] = None) -> r.Result:
        """run(model, file) for an experiment that reads a file, or what to type when no file was named."""
        if not command.slots.file:
            message, hint = table.file_needed(command.intent)
            return r.ErrorResult(message=message, hint=hint.format(model=command.slots.model))
        return run(command.slots.model, command.slots.file, progress=progress)

    def fidelity(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """`fidelity of A [against B] [on FILE]`: B is the reference (default: what A was made from)."""
        slots = command.slots
        if len(slots.models) > 2:  # one report measures one model: never drop the others silently
            *models, reference = slots.models
            return r.ErrorResult(
                message=f"fidelity measures one model against one reference; {len(slots.models)} were named",
                hint=f"one at a time: fidelity of {models[0]} against {reference}; or all at once, ranked: compare "
                     f"{' and '.join(models)}")
        reference = slots.models[1] if len(slots.models) > 1 else None
        return self.library.fidelity(slots.model, reference, text_file=slots.file, progress=progress)

    # -- the factory -------------------------------------------------------------------------------------------
    def plan_quantization(self, command: Command, progress: Optional[Progress] = None) -> r.QuantizePlan:
        """The plan for a quantize command (a repo id not on disk is downloaded first, with progress)."""
        from agents.quantization.budget.target import budget_or_none

        s = command.slots
        budget = budget_or_none(s.budget)  # an unreadable budget is a BudgetError before any download starts
        return self.library.quantize(s.model, s.method, s.level, bits=s.bits, name=s.name, calibration=s.file,
                                     imatrix=s.imatrix, fidelity=s.fidelity, group_size=s.group_size,
                                     budget=budget, progress=progress)

    def quantize(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Plan and run without asking (a caller that answers "plan" gets the plan first, to ask between the two)."""
        planned = self.plan_quantization(command, progress)
        return planned.run(progress) if planned.runnable else planned

    # -- words -------------------------------------------------------------------------------------------------
    def unknown(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """What was not understood, and the two closest commands (with the user's model name in them)."""
        closest = command.choices[:2] or [command.suggestion or "help"]
        return r.Unknown(text=command.text.strip(), suggestion=" or ".join(closest))

    def help(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """`help`: one line per command, grouped by task, each with an example; `help TOPIC`: its forms."""
        from agents.help_examples import help_result

        return help_result(self, command)

    def recommend(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """"Which model is fastest?", "which should I use?": answered from the recorded measurements."""
        from agents.recommend import recommendation

        return recommendation(self.library, command.slots.kind, command.slots.models or
                              ([command.slots.model] if command.slots.model else []))


def model_names(library) -> Callable[[], list[str]]:
    """What the decision agent resolves references against: the models on disk (and remote endpoints)."""
    return lambda: [rec.name for rec in library.models().models]


def endpoint_names(library) -> Callable[[], list[str]]:
    """Which of those names are remote endpoints (no files: "remove NAME" forgets one)."""
    return lambda: [rec.name for rec in library.models().models if rec.format == "remote"]


def make_assist(settings: Settings, manager) -> Optional[Callable]:
    """The optional LLM assist: an OpenAI-compatible endpoint (LQMF_ASSIST_URL) or a local model (LQMF_ASSIST_MODEL)."""
    from agents.decision_agent import llm_classifier
    from lqmf.base.sampling import GREEDY

    if settings.assist_url:
        import httpx

        headers = ({"Authorization": f"Bearer {settings.assist_api_key.get_secret_value()}"}
                   if settings.assist_api_key else {})

        def complete_remote(prompt: str) -> str:
            response = httpx.post(
                f"{settings.assist_url.rstrip('/')}/chat/completions", headers=headers, timeout=30,
                json={"model": settings.assist_remote_model, **GREEDY, "max_tokens": 128,
                      "messages": [{"role": "user", "content": prompt}]},
            )
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

        return llm_classifier(complete_remote)
    if settings.assist_model:
        from lqmf.base.generation import GenerationParams

        def complete_local(prompt: str) -> str:
            params = GenerationParams(**GREEDY, max_tokens=96)
            return manager.generate(settings.assist_model, prompt, params).text

        return llm_classifier(complete_local)
    return None
