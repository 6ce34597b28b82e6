"""Command -> action: a dispatch table from intent to handler; handlers call the core, return results."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

from agents import results as r
from agents.intents import Command, Intent
from lqmf.errors import LQMFError
from lqmf.settings import Settings

log = logging.getLogger(__name__)

HELP = [
    ("list models", "models on disk, with format, level, size and whether they can load"),
    ("load model NAME / serve model NAME", "load a model into memory"),
    ("unload model NAME", "free a model's memory"),
    ("show api status / show loaded models", "the server and the loaded models"),
    ("start server [on port N] / stop server", "the background API server (OpenAI- and Ollama-compatible)"),
    ("chat with NAME", "talk to a model; /exit /clear /system TEXT /set temperature 0.2 /stats"),
    ("experiment with NAME [\"prompt\"] / batch NAME prompts.txt", "one prompt, or every prompt of a .txt/.jsonl file"),
    ("conversation with NAME on script.txt", "a multi-turn script, one user turn per line"),
    ("benchmark NAME [and NAME2]", "TTFT, prompt and generation tokens/s, latency p50/p95, load time, memory"),
    ("compare A and B [and C]", "the same prompts on each, fidelity against their shared source, ranked"),
    ("fidelity of NAME [against REF]", "perplexity, KL divergence, top-1 agreement, Δp against the reference"),
    ("agreement of A and B on data.jsonl", "classify a labelled set with both: agreement, accuracy, per-example CSV"),
    ("list experiments / show statistics", "the recorded history / counts and served requests per model"),
    ("quantize NAME to 4-bit gguf", "make a quantized variant (coming with the factory work)"),
    ("show config", "where models, logs and the database live, and the limits"),
    ("help / exit", "this list / leave (stops the server)"),
]


class Executor:
    """Runs commands against one manager and one background server (shared with the API)."""

    def __init__(self, settings: Settings, manager, server) -> None:
        self.settings = settings
        self.manager = manager
        self.server = server
        self.progress: Optional[Callable[[str, int, int], None]] = None  # the shell draws a bar with it
        self._experiments = None
        self.kinds: dict[str, Callable[[Command], r.Result]] = {
            "single": self.single, "batch": self.batch, "conversation": self.conversation,
            "benchmark": self.benchmark, "compare": self.compare, "fidelity": self.fidelity,
            "agreement": self.agreement,
        }
        self.handlers: dict[Intent, Callable[[Command], r.Result]] = {
            Intent.LIST_MODELS: self.list_models,
            Intent.LOAD_MODEL_API: self.load,
            Intent.UNLOAD_MODEL_API: self.unload,
            Intent.START_API_SERVER: self.start_server,
            Intent.STOP_API_SERVER: self.stop_server,
            Intent.SHOW_API_STATUS: self.status,
            Intent.CHAT_WITH_MODEL: self.chat,
            Intent.SHOW_CONFIG: self.config,
            Intent.SHOW_HELP: lambda c: r.Help(commands=HELP),
            Intent.EXIT: lambda c: r.Exit(),
            Intent.UNKNOWN: self.unknown,
            Intent.EXPERIMENT_WITH_MODEL: self.experiment,
            Intent.LIST_EXPERIMENTS: self.list_experiments,
            Intent.SHOW_STATISTICS: self.statistics,
            Intent.QUANTIZE_MODEL: self.not_built("quantizing from the shell is"),
            Intent.DOWNLOAD_MODEL: self.not_built("downloading models from the shell is"),
        }

    def execute(self, command: Command) -> r.Result:
        """Run one command; core errors become ErrorResult (LQMF_DEBUG=1 re-raises)."""
        if command.question:
            return r.Question(text=command.question, choices=command.choices)
        try:
            return self.handlers[command.intent](command)
        except LQMFError as exc:
            if self.settings.debug:
                raise
            log.info("command %r failed: %s", command.text, exc)
            return r.ErrorResult(message=exc.message, hint=exc.hint)

    # -- handlers ---------------------------------------------------------------------------------------
    def list_models(self, command: Command) -> r.Result:
        loaded = {m["name"] for m in self.manager.loaded()}
        models = [{**rec.to_dict(), "loaded": rec.name in loaded} for rec in self.manager.available()]
        return r.ModelList(models_dir=str(self.settings.models_dir), models=models)

    def load(self, command: Command) -> r.Result:
        model = self.manager.load(command.slots.model)
        return r.Loaded(model=model.info())

    def unload(self, command: Command) -> r.Result:
        name = command.slots.model
        if not self.manager.unload(name):
            self.manager.record(name)  # unknown -> ModelNotFound with suggestions
            loaded = [m["name"] for m in self.manager.loaded()]
            return r.ErrorResult(message=f"{name} is not loaded",
                                 hint=f"loaded now: {', '.join(loaded)}" if loaded else "nothing is loaded")
        return r.Unloaded(name=name)

    def _server_info(self, note: str = "") -> r.ServerInfo:
        status = self.server.status()
        return r.ServerInfo(running=status.running, url=status.url, host=status.host, port=status.port,
                            uptime_s=status.uptime_s, loaded=self.manager.loaded(), note=note)

    def start_server(self, command: Command) -> r.Result:
        if self.server.running:
            return self._server_info(note="the server was already running")
        self.server.start(port=command.slots.port)
        return self._server_info(note="started")

    def stop_server(self, command: Command) -> r.Result:
        if not self.server.running:
            return self._server_info(note="the server was not running")
        self.server.stop()
        return self._server_info(note="stopped")

    def status(self, command: Command) -> r.Result:
        return self._server_info()

    def chat(self, command: Command) -> r.Result:
        model = self.manager.load(command.slots.model)  # errors (unknown, broken) before chat mode starts
        return r.ChatStart(model=model.name, prompt=command.slots.prompt)

    def config(self, command: Command) -> r.Result:
        s = self.settings
        values = {
            "home": str(s.root), "models_dir": str(s.models_dir), "database": str(s.db_path),
            "logs": str(s.logs_dir / "lqmf.log"), "history": str(s.history_path),
            "max_models": s.max_models, "max_memory_mb": s.max_memory_mb, "context_length": s.context_length,
            "keep_alive_s": s.keep_alive_s, "queue_size": s.queue_size, "host": s.host, "port": s.port,
            "api_key": "set" if s.api_key else "not set", "autoload": s.autoload,
        }
        return r.Config(values=values)

    # -- experiments -------------------------------------------------------------------------------------
    @property
    def experiments(self):
        """The experiment agent and its store, opened on first use (the shell starts without SQLite)."""
        if self._experiments is None:
            from agents.experiment_agent import ExperimentAgent
            from memory.store import Store

            self._experiments = ExperimentAgent(self.settings, self.manager, Store(self.settings.db_path))
        return self._experiments

    def close(self) -> None:
        if self._experiments is not None:
            self._experiments.store.close()

    def experiment(self, command: Command) -> r.Result:
        return self.kinds[command.slots.kind or "single"](command)

    def _params(self):
        from server.backends.base import GenerationParams

        return GenerationParams(max_tokens=128, temperature=0)

    def single(self, command: Command) -> r.Result:
        slots = command.slots
        if slots.prompt:
            return self.experiments.single(slots.model, slots.prompt, self._params())
        from agents.experiment_agent import STANDARD_PROMPTS

        # No prompt given: the standard prompt set, so "experiment with NAME" always shows something.
        return self.experiments.prompts("batch", slots.model, list(STANDARD_PROMPTS), self._params(), self.progress,
                                        source="standard prompts")

    def batch(self, command: Command) -> r.Result:
        path = Path(command.slots.file).expanduser()
        return self.experiments.batch(command.slots.model, path, self._params(), self.progress)

    def conversation(self, command: Command) -> r.Result:
        if not command.slots.file:
            return r.ErrorResult(message="a conversation needs a script file",
                                 hint=f"conversation with {command.slots.model} on script.txt (one user turn per line)")
        path = Path(command.slots.file).expanduser()
        return self.experiments.conversation(command.slots.model, path, self._params(), self.progress)

    def benchmark(self, command: Command) -> r.Result:
        models = command.slots.models or [command.slots.model]
        return self.experiments.benchmark(models, progress=self.progress)

    def compare(self, command: Command) -> r.Result:
        path = Path(command.slots.file).expanduser() if command.slots.file else None
        return self.experiments.compare(command.slots.models, prompts_path=path, progress=self.progress)

    def fidelity(self, command: Command) -> r.Result:
        slots = command.slots
        reference = slots.models[1] if len(slots.models) > 1 else None
        path = Path(slots.file).expanduser() if slots.file else None
        return self.experiments.fidelity(slots.model, reference, text_path=path, progress=self.progress)

    def agreement(self, command: Command) -> r.Result:
        import time

        from agents.agreement import parse_variant, run_agreement

        a_spec, b_spec = command.slots.models[:2]
        a, b = parse_variant(a_spec, self.manager), parse_variant(b_spec, self.manager)
        csv_path = self.settings.reports_dir / f"agreement-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        progress = (lambda done, total: self.progress("agreement", done, total)) if self.progress else None
        try:
            report = run_agreement(Path(command.slots.file).expanduser(), a, b, csv_path=csv_path,
                                   store=self.experiments.store, progress=progress)
        finally:
            for variant in (a, b):
                getattr(variant, "close", lambda: None)()
        return r.AgreementResult(report=report.to_dict())

    def list_experiments(self, command: Command) -> r.Result:
        return r.ExperimentList(experiments=self.experiments.store.experiments(model=command.slots.model, limit=30))

    def statistics(self, command: Command) -> r.Result:
        return r.Statistics(values=self.experiments.store.statistics())

    def unknown(self, command: Command) -> r.Result:
        return r.Unknown(text=command.text.strip(), suggestion=command.suggestion or "help")

    @staticmethod
    def not_built(feature: str) -> Callable[[Command], r.Result]:
        return lambda command: r.NotBuilt(feature=f"{feature} not built yet")


def model_names(manager) -> Callable[[], list[str]]:
    """What the decision agent resolves references against: the models on disk."""
    return lambda: [rec.name for rec in manager.available()]


def make_assist(settings: Settings, manager) -> Optional[Callable]:
    """The optional LLM assist: an OpenAI-compatible endpoint (LQMF_ASSIST_URL) or a local model (LQMF_ASSIST_MODEL)."""
    from agents.decision_agent import llm_classifier

    if settings.assist_url:
        import httpx

        headers = {"Authorization": f"Bearer {settings.assist_api_key.get_secret_value()}"} if settings.assist_api_key else {}

        def complete_remote(prompt: str) -> str:
            response = httpx.post(
                f"{settings.assist_url.rstrip('/')}/chat/completions", headers=headers, timeout=30,
                json={"model": settings.assist_remote_model, "temperature": 0, "max_tokens": 128,
                      "messages": [{"role": "user", "content": prompt}]},
            )
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

        return llm_classifier(complete_remote)
    if settings.assist_model:
        from server.backends.base import GenerationParams

        def complete_local(prompt: str) -> str:
            params = GenerationParams(max_tokens=96, temperature=0)
            return manager.generate(settings.assist_model, prompt, params).text

        return llm_classifier(complete_local)
    return None
