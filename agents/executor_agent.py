"""Command -> result: a dispatch table from intent to handler; each handler maps slots to a Library call."""

from __future__ import annotations

import logging
from typing import Callable, Optional

from agents import results as r
from agents.classifier_commands import HELP as CLASSIFIER_HELP
from agents.classifier_commands import ClassifierCommands
from agents.endpoint_commands import HELP as ENDPOINT_HELP
from agents.endpoint_commands import EndpointCommands
from agents.intents import Command, Intent
from agents.model_commands import ModelCommands
from lqmf.errors import FeatureUnsupported, LQMFError
from lqmf.progress import Progress
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
    ("Models", "rename NAME to NEW / copy NAME to NEW", "rename or copy a model, manifests kept",
     "copy NAME to NAME-copy", ("mv NAME NEW", "cp NAME NEW", "duplicate NAME as NEW")),
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
     ("quantize NAME to q8_0", "quantize NAME to 4-bit gptq with calib.txt",
      "quantize NAME to 4-bit gptq with group size 64", "quantize NAME to nf4",
      "quantize NAME to iq4_xs with imatrix and fidelity as OUT --yes", "list quantizations")),
    ("Factory", "download ORG/NAME [LEVEL] [as NAME] / import PATH",
     "fetch from the Hugging Face Hub / copy a local one", "download Qwen/Qwen2.5-0.5B-Instruct",
     ("pull ORG/NAME q4_k_m as short", "import ~/models/x.gguf", "login")),
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
# Experiments that read a file, and what to say when none was named.
FILE_NEEDED = {
    Intent.BATCH_EXPERIMENT: ("a batch needs a file of prompts",
                              "batch {model} prompts.txt (one prompt per line, or .jsonl)"),
    Intent.CONVERSATION_EXPERIMENT: ("a conversation needs a script file",
                                     "conversation with {model} on script.txt (one user turn per line)"),
}


Handler = Callable[[Command, Optional[Progress]], r.Result]


class Executor:
    """Commands -> Library calls: each handler maps a command's slots to one call and wraps its result.

    One Library over the shell's manager (shared with the API server the shell starts); progress is
    passed into execute() by whoever draws it, and on to the call.
    """

    def __init__(self, settings: Settings, manager, server) -> None:
        from lqmf.api import Library

        self.settings = settings
        self.manager = manager
        self.server = server
        self.library = Library(settings, manager)
        self.handlers: dict[Intent, Handler] = {
            Intent.LIST_MODELS: lambda c, p: self.library.models(probe=True),
            Intent.LOAD_MODEL_API: self.load,
            Intent.UNLOAD_MODEL_API: self.unload,
            Intent.START_API_SERVER: self.start_server,
            Intent.STOP_API_SERVER: self.stop_server,
            Intent.SHOW_API_STATUS: lambda c, p: self._server_info(),
            Intent.CHAT_WITH_MODEL: self.chat,
            Intent.EMBED_TEXT: lambda c, p: self.library.embed(c.slots.model, c.slots.texts or [c.slots.prompt],
                                                               progress=p),
            Intent.SHOW_CONFIG: self.config,
            Intent.SHOW_HELP: self.help,
            Intent.EXIT: lambda c, p: r.Exit(),
            Intent.UNKNOWN: self.unknown,
            # Experiments, one intent each.
            Intent.EXPERIMENT_WITH_MODEL: lambda c, p: self.library.experiment(c.slots.model, c.slots.prompt,
                                                                               progress=p),
            Intent.BATCH_EXPERIMENT: self._from_file(self.library.batch),
            Intent.CONVERSATION_EXPERIMENT: self._from_file(self.library.conversation),
            Intent.BENCHMARK_MODELS: lambda c, p: self.library.benchmark(c.slots.models or [c.slots.model],
                                                                         progress=p),
            Intent.COMPARE_MODELS: lambda c, p: self.library.compare(c.slots.models, prompts_file=c.slots.file,
                                                                     progress=p),
            Intent.FIDELITY_REPORT: self.fidelity,
            Intent.AGREEMENT_REPORT: lambda c, p: self.library.agreement(*c.slots.models[:2], c.slots.file,
                                                                         progress=p),
            Intent.LIST_EXPERIMENTS: lambda c, p: self.library.experiments(model=c.slots.model),
            Intent.SHOW_STATISTICS: lambda c, p: self.library.statistics(),
            # The factory.
            Intent.QUANTIZE_MODEL: self.quantize,
            Intent.LIST_QUANTIZATIONS: lambda c, p: self.library.quantizations(),
            Intent.DOWNLOAD_MODEL: lambda c, p: self.library.download(c.slots.model, name=c.slots.name,
                                                                      level=c.slots.level, progress=p),
            Intent.IMPORT_MODEL: lambda c, p: self.library.import_model(c.slots.model, name=c.slots.name,
                                                                        progress=p),
            Intent.LOGIN: lambda c, p: r.ErrorResult(
                message="login asks for the token at a prompt, so it needs the interactive shell",
                hint="run `python cli/api_cli.py` and type login, or set HF_TOKEN in the environment"),
        }
        self.handlers.update(ClassifierCommands(self).handlers())
        self.handlers.update(EndpointCommands(self).handlers())
        self.handlers.update(ModelCommands(self).handlers())

    def execute(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Run one command (progress, when given, hears how long work advances); core errors become ErrorResult
        (LQMF_DEBUG=1 re-raises)."""
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
            return self.handlers[command.intent](command, progress)
        except LQMFError as exc:
            return self.failed(command, exc)

    def failed(self, command: Command, exc: LQMFError) -> r.ErrorResult:
        """A core error as the result the shell draws (LQMF_DEBUG=1 re-raises it instead)."""
        if self.settings.debug:
            raise exc
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

    def close(self) -> None:
        """Close what the library made; the manager (and its history store) belongs to the shell."""
        self.library.close()

    # -- handlers that do more than one call --------------------------------------------------------------
    def load(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        model = self.library.load(command.slots.model)
        return r.Loaded(model=model.info, note=self.manager.engine_notice() or "")

    def unload(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        name = command.slots.model
        if not self.library.unload(name):
            loaded = [m["name"] for m in self.manager.loaded()]
            return r.ErrorResult(message=f"{name} is not loaded",
                                 hint=f"loaded now: {', '.join(loaded)}" if loaded else "nothing is loaded")
        return r.Unloaded(name=name)

    def _server_info(self, note: str = "") -> r.ServerInfo:
        status = self.server.status()
        return r.ServerInfo(running=status.running, url=status.url, host=status.host, port=status.port,
                            uptime_s=status.uptime_s, loaded=self.manager.loaded(), note=note,
                            gguf=self.manager.engine_status())

    def start_server(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        if self.server.running:
            return self._server_info(note="the server was already running")
        self.server.start(port=command.slots.port)
        return self._server_info(note="started")

    def stop_server(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        if not self.server.running:
            return self._server_info(note="the server was not running")
        self.server.stop()
        return self._server_info(note="stopped")

    def _has_default(self) -> bool:
        try:
            return bool(self.manager.active.chain())
        except LQMFError:
            return False

    def chat(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Chat mode with its session ready: the model is loaded first (errors come before chat mode starts);
        `default` takes the first model of the default chain that loads."""
        from agents.chat_session import ChatSession

        try:
            role = self.manager.record(command.slots.model).role if command.slots.model else None
        except LQMFError:
            role = None  # `default`, or a name library.load explains
        if role == "embedding":
            raise FeatureUnsupported(f"{command.slots.model} is an embedding model: it makes vectors, not text",
                                     f"embed with it, or measure it: fidelity of {command.slots.model}")
        model = self.library.load(command.slots.model)
        return r.ChatStart(model=model.name, prompt=command.slots.prompt,
                           session=ChatSession(self.manager, model.name))

    def config(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        s = self.settings
        values = {
            "home": str(s.root), "models_dir": str(s.models_dir), "database": str(s.db_path),
            "logs": str(s.logs_dir / "lqmf.log"), "history": str(s.history_path),
            "max_models": s.max_models, "max_memory_mb": s.max_memory_mb, "context_length": s.context_length,
            "keep_alive_s": s.keep_alive_s, "queue_size": s.queue_size, "host": s.host, "port": s.port,
            "api_key": "set" if s.api_key else "not set", "autoload": s.autoload,
        }
        return r.Config(values=values)

    @staticmethod
    def _from_file(run: Callable[..., r.Result]) -> Handler:
        """The handler of an experiment that reads a file: run(model, file), or what to type when no file was named."""

        def handler(command: Command, progress: Optional[Progress] = None) -> r.Result:
            if not command.slots.file:
                message, hint = FILE_NEEDED[command.intent]
                return r.ErrorResult(message=message, hint=hint.format(model=command.slots.model))
            return run(command.slots.model, command.slots.file, progress=progress)

        return handler

    def fidelity(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """`fidelity of A [against B] [on FILE]`: B is the reference (default: what A was made from)."""
        slots = command.slots
        reference = slots.models[1] if len(slots.models) > 1 else None
        return self.library.fidelity(slots.model, reference, text_file=slots.file, progress=progress)

    # -- the factory -------------------------------------------------------------------------------------------
    def plan_quantization(self, command: Command, progress: Optional[Progress] = None) -> r.QuantizePlan:
        """The plan for a quantize command (a repo id not on disk is downloaded first, with progress)."""
        s = command.slots
        return self.library.quantize(s.model, s.method, s.level, bits=s.bits, name=s.name, calibration=s.file,
                                     imatrix=s.imatrix, fidelity=s.fidelity, group_size=s.group_size,
                                     progress=progress)

    def quantize(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """Plan and run without asking (scripts, -c, --json); the interactive shell asks between the two itself."""
        planned = self.plan_quantization(command, progress)
        return planned.run(progress) if planned.runnable else planned

    def login(self, token: str) -> r.Result:
        """Validate and store a Hugging Face token in the hub's own store (the shell prompts for it)."""
        return self.library.login(token)

    # -- words -------------------------------------------------------------------------------------------------
    def unknown(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
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

    def help(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
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


def model_names(manager) -> Callable[[], list[str]]:
    """What the decision agent resolves references against: the models on disk."""
    return lambda: [rec.name for rec in manager.available()]


def make_assist(settings: Settings, manager) -> Optional[Callable]:
    """The optional LLM assist: an OpenAI-compatible endpoint (LQMF_ASSIST_URL) or a local model (LQMF_ASSIST_MODEL)."""
    from agents.decision_agent import llm_classifier
    from lqmf.sampling import GREEDY

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
        from server.backends.base import GenerationParams

        def complete_local(prompt: str) -> str:
            params = GenerationParams(**GREEDY, max_tokens=96)
            return manager.generate(settings.assist_model, prompt, params).text

        return llm_classifier(complete_local)
    return None
