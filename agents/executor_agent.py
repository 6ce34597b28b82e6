"""Command -> action: a dispatch table from intent to handler; handlers call the core, return results."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

from agents import results as r
from agents.classifier_commands import HELP as CLASSIFIER_HELP, ClassifierCommands
from agents.endpoint_commands import HELP as ENDPOINT_HELP, EndpointCommands
from agents.intents import Command, Intent
from agents.model_commands import ModelCommands
from lqmf.errors import LQMFError
from lqmf.settings import Settings
from server.manager import DEFAULT

log = logging.getLogger(__name__)

# Help, grouped by task: (task, form, what it does, one example, more forms shown by `help TOPIC`).
# Examples name NAME / A / B; the executor fills them with models on disk so they run as printed.
HELP: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    ("Models", "list models", "models on disk: format, level, size, whether they load", "list models",
     ("show models", "what models do I have")),
    ("Models", "show NAME", "one model: manifest, lineage, latest speed and fidelity", "show NAME",
     ("info about NAME", "details of NAME")),
    ("Models", "remove NAME [--yes]", "delete a model from disk (asks first)", "remove NAME",
     ("delete model NAME", "rm NAME --yes")),
    ("Models", "rename NAME to NEW / copy NAME to NEW", "rename or copy a model, manifests kept", "copy NAME to NAME-copy",
     ("mv NAME NEW", "cp NAME NEW", "duplicate NAME as NEW")),
    ("Models", "disk usage", "space per model and in total, what removing would free", "disk usage",
     ("how much space do my models use",)),
    ("Serving", "load NAME / unload NAME", "put a model in memory / free it", "load NAME",
     ("load model NAME", "serve NAME", "fire up NAME", "get NAME running", "unload NAME", "evict NAME",
      "stop serving NAME")),
    ("Serving", "start server [on port N] / stop server", "the background API (OpenAI- and Ollama-compatible)",
     "start server on port 8000", ("launch the api", "boot the server", "shut down the api", "kill the server")),
    ("Serving", "show api status", "the server and the loaded models", "show api status",
     ("show loaded models", "what's being served right now", "is the server running?")),
    ("Chat", "chat with NAME", "talk to a model; /exit /clear /system TEXT /set temperature 0.2 /stats",
     "chat with NAME", ('ask NAME "What does shuffle do?"', "talk to NAME", "run NAME", "exit (leaves chat)")),
    ("Chat", 'embed NAME "text" ["text" ...]', "a text's embedding: dimensions, norm and first values",
     'embed NAME "def f(x):"', ()),
    ("Experiments", "benchmark NAME [and NAME2]", "TTFT, tokens/s, latency p50/p95, load time, memory",
     "benchmark NAME", ("how fast is NAME", "NAME's speed", "bench A and B")),
    ("Experiments", "compare A and B [and C]", "the same prompts on each, fidelity against their source, ranked",
     "compare A and B", ("A vs B", "is A or B better")),
    ("Experiments", "fidelity of NAME [against REF]", "perplexity, KL divergence, top-1 agreement, Δp",
     "fidelity of NAME", ("how faithful is NAME", "kld NAME vs REF", "perplexity of NAME on notes.txt")),
    ("Experiments", 'experiment with NAME ["prompt"] / batch NAME prompts.txt', "one prompt, or a file of prompts",
     'experiment with NAME "hello"', ("conversation with NAME on script.txt",
                                      "agreement of A and B on data.jsonl")),
    ("Experiments", "list experiments / show statistics", "the recorded history / counts per model",
     "list experiments", ("history", "stats")),
    ("Factory", "quantize NAME to 4-bit gguf [with imatrix] [and fidelity] [as OUT] [--yes]",
     "plan, confirm and run a quantization", "quantize NAME to q4_k_m",
     ("quantize NAME to q8_0", "quantize NAME to 4-bit gptq with calib.txt", "quantize NAME to nf4",
      "quantize NAME to iq4_xs with imatrix and fidelity as OUT --yes", "list quantizations")),
    ("Factory", "download ORG/NAME [LEVEL] [as NAME] / import PATH", "fetch from the Hugging Face Hub / copy a local one",
     "download Qwen/Qwen2.5-0.5B-Instruct", ("pull ORG/NAME q4_k_m as short", "import ~/models/x.gguf", "login")),
    *(("Classifiers", say, does, say, ()) for say, does in CLASSIFIER_HELP),
    *(("Endpoints", say, does, say, ()) for say, does in ENDPOINT_HELP),
    ("Shell", "show config / help [TOPIC] / exit", "settings / this list or one topic's forms / leave",
     "help quantize", ("help models", "help serving", "what can you do")),
]
# Parsed help topics ("help quantize" -> "quantize") that name a task under another word.
TOPIC_TASKS = {"load": "Serving", "unload": "Serving", "start": "Serving", "stop": "Serving", "server": "Serving",
               "status": "Serving", "serve": "Serving", "chat": "Chat", "embed": "Chat", "benchmark": "Experiments",
               "compare": "Experiments", "fidelity": "Experiments", "experiment": "Experiments",
               "experiments": "Experiments", "agreement": "Experiments", "quantize": "Factory",
               "download": "Factory", "import": "Factory", "login": "Factory", "remove": "Models",
               "rename": "Models", "copy": "Models", "inspect": "Models", "disk": "Models", "list": "Models",
               "models": "Models", "config": "Shell", "exit": "Shell"}
# Tasks whose NAME / A / B are model names (an endpoint's or classifier's NAME is not).
FILLED = {"Models", "Serving", "Chat", "Experiments", "Factory"}
# Intents that cost minutes or lose something: never run from a guessed parse without a yes.
GUARDED = {Intent.QUANTIZE_MODEL, Intent.DOWNLOAD_MODEL, Intent.REMOVE_MODEL, Intent.UNLOAD_MODEL_API,
           Intent.STOP_API_SERVER, Intent.RENAME_MODEL}
LOW_CONFIDENCE = 0.8  # below it any command asks; one corrected word alone is 0.85 (a guarded command asks anyway)


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
            Intent.SHOW_HELP: self.help,
            Intent.EXIT: lambda c: r.Exit(),
            Intent.UNKNOWN: self.unknown,
            Intent.EXPERIMENT_WITH_MODEL: self.experiment,
            Intent.LIST_EXPERIMENTS: self.list_experiments,
            Intent.SHOW_STATISTICS: self.statistics,
            Intent.QUANTIZE_MODEL: self.quantize,
            Intent.DOWNLOAD_MODEL: self.download,
            Intent.IMPORT_MODEL: self.import_model,
            Intent.LOGIN: lambda c: r.ErrorResult(
                message="login asks for the token at a prompt, so it needs the interactive shell",
                hint="run `python cli/api_cli.py` and type login, or set HF_TOKEN in the environment"),
            Intent.LIST_QUANTIZATIONS: self.list_quantizations,
            Intent.EMBED_TEXT: self.embed,
        }
        self.handlers.update(ClassifierCommands(self).handlers())
        self.handlers.update(EndpointCommands(self).handlers())
        self.handlers.update(ModelCommands(self).handlers())

    def execute(self, command: Command) -> r.Result:
        """Run one command; core errors become ErrorResult (LQMF_DEBUG=1 re-raises)."""
        if command.intent is Intent.CHAT_WITH_MODEL and not command.slots.model and self._has_default():
            command.slots.model, command.question = DEFAULT, None  # `chat` alone talks to the default model
        if command.question:
            if command.intent is Intent.UNLOAD_MODEL_API:  # only what is loaded can be unloaded
                command.choices = [m["name"] for m in self.manager.loaded()]
                if not command.choices:
                    return r.Message(text="Nothing is loaded, so there is nothing to unload.")
            return r.Question(text=command.question, choices=command.choices)
        confirm = self.confirmation(command)
        if confirm is not None:
            return confirm
        try:
            return self.handlers[command.intent](command)
        except LQMFError as exc:
            if self.settings.debug:
                raise
            log.info("command %r failed: %s", command.text, exc)
            return r.ErrorResult(message=exc.message, hint=exc.hint)

    @staticmethod
    def confirmation(command: Command) -> Optional[r.Confirm]:
        """A Confirm for a command not yet confirmed that was guessed: any command below LOW_CONFIDENCE, and a
        guarded (expensive or destructive) one with any corrected word too."""
        from agents.decision_agent import describe

        if command.slots.yes or command.intent in (Intent.UNKNOWN, Intent.EXIT, Intent.SHOW_HELP):
            return None
        guessed = command.confidence < LOW_CONFIDENCE or (command.intent in GUARDED and command.corrections)
        if not guessed:
            return None
        return r.Confirm(question=f"Did you mean: {describe(command)}? [y/N]")

    # -- handlers ---------------------------------------------------------------------------------------
    def list_models(self, command: Command) -> r.Result:
        loaded = {m["name"] for m in self.manager.loaded()}
        models = [{**rec.to_dict(), "loaded": rec.name in loaded} for rec in self.manager.available(probe=True)]
        return r.ModelList(models_dir=str(self.settings.models_dir), models=models)

    def load(self, command: Command) -> r.Result:
        model = self.manager.load(command.slots.model)
        return r.Loaded(model=model.info(), note=self.manager.engine_notice() or "")

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

    def _has_default(self) -> bool:
        try:
            return bool(self.manager.active.chain())
        except LQMFError:
            return False

    def chat(self, command: Command) -> r.Result:
        """Chat mode with a model loaded first (errors before chat mode starts); `default` takes the first
        model of the default chain that loads."""
        chain = self.manager.resolve(command.slots.model)
        for index, name in enumerate(chain):
            try:
                model = self.manager.load(name)
            except LQMFError as exc:
                if index + 1 == len(chain):
                    raise
                log.warning("default model %s cannot be used (%s); falling back to %s", name, exc, chain[index + 1])
                continue
            return r.ChatStart(model=model.name, prompt=command.slots.prompt)
        raise AssertionError("unreachable: the chain is never empty")

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

    def embed(self, command: Command) -> r.Result:
        """Raw embeddings of the quoted texts, batched on the model's worker (a bar for many)."""
        import numpy as np

        from server.embeddings import embed_texts

        texts = command.slots.texts or [command.slots.prompt]
        progress = (lambda done, total: self.progress("embedding", done, total)) if self.progress else None
        # Unnormalised, so the norm shown says something; cosine similarity normalises anyway.
        result = embed_texts(self.manager, command.slots.model, texts, normalize=False, progress=progress)
        norms = np.linalg.norm(result.vectors, axis=1)
        items = [{"text": text, "tokens": count, "norm": float(norm), "vector": row.tolist()}
                 for text, count, norm, row in zip(texts, result.token_counts, norms, result.vectors)]
        return r.EmbeddingResult(model=result.model, dim=result.dim, pooling=result.pooling, seconds=result.seconds,
                                 items=items)

    # -- experiments -------------------------------------------------------------------------------------
    @property
    def experiments(self):
        """The experiment agent and its store, opened on first use (the shell starts without SQLite)."""
        if self._experiments is None:
            from agents.measure.experiments import ExperimentAgent
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
        from agents.measure.experiments import STANDARD_PROMPTS

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

        from agents.measure.agreement import parse_variant, run_agreement

        a_spec, b_spec = command.slots.models[:2]
        keys = self.manager.endpoints.key_for_url  # URL#MODEL of a registered endpoint: its key goes along
        a, b = (parse_variant(spec, self.manager, api_key=keys(spec.partition("#")[0])) for spec in (a_spec, b_spec))
        csv_path = self.settings.reports_dir / f"agreement-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        progress = (lambda done, total: self.progress("agreement", done, total)) if self.progress else None
        try:
            report = run_agreement(Path(command.slots.file).expanduser(), a, b, csv_path=csv_path,
                                   store=self.experiments.store, progress=progress)
        finally:
            for variant in (a, b):
                getattr(variant, "close", lambda: None)()
        return r.AgreementResult(report=report.to_dict())

    # -- the factory -----------------------------------------------------------------------------------------
    @property
    def factory(self):
        """The quantization agent, sharing the experiment agent's store."""
        from agents.quantization.factory import QuantizationAgent

        return QuantizationAgent(self.settings, self.manager, self.experiments.store)

    def download(self, command: Command) -> r.Result:
        from agents.quantization.acquire import download_model

        got = download_model(command.slots.model, self.settings, name=command.slots.name,
                             level=command.slots.level, progress=self.progress)
        return r.AcquiredResult(action="downloaded", model=_acquired_dict(got))

    def import_model(self, command: Command) -> r.Result:
        from agents.quantization.acquire import import_model

        got = import_model(Path(command.slots.model).expanduser(), self.settings, name=command.slots.name,
                           progress=self.progress)
        return r.AcquiredResult(action="imported", model=_acquired_dict(got))

    def login(self, token: str) -> r.Result:
        """Validate and store a Hugging Face token in the hub's own store (the shell prompts for it)."""
        from huggingface_hub import constants

        from agents.quantization.acquire import login

        user = login(token, self.settings)
        return r.LoggedIn(user=user, token_path=str(constants.HF_TOKEN_PATH))

    def plan_quantization(self, command: Command) -> r.PlanResult:
        """The plan for a quantize command; a repo id not on disk is downloaded first (with progress)."""
        from agents.quantization.plan import QuantRequest

        slots = command.slots
        model, acquired = self._local_source(slots.model)
        request = QuantRequest(
            model=model, method=slots.method, bits=slots.bits, level=slots.level, name=slots.name,
            calibration_file=Path(slots.file).expanduser() if slots.file else None, imatrix=slots.imatrix,
            fidelity=slots.fidelity,
        )
        plan = self.factory.plan(request)
        return r.PlanResult(plan=plan.to_dict(), refused=not plan.runnable, ok=plan.runnable, acquired=acquired)

    def _local_source(self, ref: str) -> tuple[str, Optional[dict]]:
        """A model on disk by that name; a Hub repo id (ORG/NAME) that is not is downloaded first."""
        names = {rec.name for rec in self.manager.available()}
        if ref in names or "/" not in ref or Path(ref).expanduser().exists():
            return ref, None
        from agents.quantization.acquire import download_model

        got = download_model(ref, self.settings, progress=self.progress)
        return got.name, _acquired_dict(got)

    def run_quantization(self, planned: r.PlanResult) -> r.Result:
        """Run a shown plan; then, when asked, the fidelity report card against the source."""
        from agents.quantization.plan import QuantPlan

        if planned.refused:
            return planned
        plan = QuantPlan(**planned.plan)
        done = self.factory.run(plan, progress=self.progress)
        result = r.Quantized(run_id=done.run_id, output=Path(plan.output_path).name, plan=planned.plan,
                             manifest=done.manifest, wall_time_s=done.wall_time_s,
                             peak_rss_bytes=done.peak_rss_bytes, acquired=planned.acquired)
        if plan.fidelity:
            output = Path(plan.output_path)
            name = output.stem if output.suffix == ".gguf" else output.name  # as discovery names it
            result.fidelity = self.experiments.fidelity(name, plan.source, progress=self.progress)
        return result

    def quantize(self, command: Command) -> r.Result:
        """Plan and run without asking (scripts, -c, the API); the shell asks between the two itself."""
        planned = self.plan_quantization(command)
        return self.run_quantization(planned) if planned.ok else planned

    def list_quantizations(self, command: Command) -> r.Result:
        return r.QuantizationList(runs=self.experiments.store.quantization_runs(limit=30))

    def list_experiments(self, command: Command) -> r.Result:
        return r.ExperimentList(experiments=self.experiments.store.experiments(model=command.slots.model, limit=30))

    def statistics(self, command: Command) -> r.Result:
        return r.Statistics(values=self.experiments.store.statistics())

    def unknown(self, command: Command) -> r.Result:
        """What was not understood, and the two closest commands (with the user's model name in them)."""
        closest = command.choices[:2] or [command.suggestion or "help"]
        return r.Unknown(text=command.text.strip(), suggestion=" or ".join(closest))

    def _examples_filled(self, text: str) -> str:
        """An example with real model names in place of NAME / A / B, so it runs as printed."""
        import re

        records = [rec for rec in self.manager.available() if not getattr(rec, "remote", None)]
        names = [rec.name for rec in sorted(records, key=lambda rec: (not rec.usable, rec.name))]
        if not names:
            return text
        first, second = names[0], names[1] if len(names) > 1 else names[0]
        return re.sub(r"\bB\b", second, re.sub(r"\b(?:NAME|A)\b", first, text))

    def help(self, command: Command) -> r.Result:
        """`help`: one line per command, grouped by task, each with an example; `help TOPIC`: its forms."""
        topic = (command.slots.kind or "").lower()
        if not topic:
            rows = [(task, say, does, self._examples_filled(example) if task in FILLED else example)
                    for task, say, does, example, _ in HELP]
            return r.Help(commands=rows)
        task = TOPIC_TASKS.get(topic)
        chosen = [entry for entry in HELP if entry[0] == task] if task else \
            [entry for entry in HELP if topic in entry[0].lower() or topic in entry[1].lower()]
        if task and topic not in ("models", "list", "status", "server"):
            # "help quantize": the entries that name the topic, when some do; else the whole task.
            chosen = [entry for entry in chosen if topic in " ".join(entry[1:4] + entry[4]).lower()] or chosen
        if not chosen:
            return r.Help(commands=[("", f"no help topic '{topic}'", "every command:", "help")]
                          + [(t, say, does, self._examples_filled(ex) if t in FILLED else ex)
                             for t, say, does, ex, _ in HELP])
        rows = []
        for task, say, does, example, forms in chosen:
            fill = self._examples_filled if task in FILLED else str
            rows.append((task, say, does, fill(example)))
            rows += [(task, "", "", fill(form)) for form in forms]
        return r.Help(commands=rows)


def _acquired_dict(got) -> dict:
    from dataclasses import asdict

    data = asdict(got)
    data["path"] = str(data["path"])
    return data


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
