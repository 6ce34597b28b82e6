"""One declaration per intent: what the parser asks, how the executor runs it, and how help and the shell show it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, NamedTuple, Optional, Union

from agents import model_sets as ms
from agents import results as r
from agents.intents import Command, Intent, Slots

if TYPE_CHECKING:
    from lqmf.base.progress import Progress

# handler(x, c, p): x the Executor, c the Command, p the progress callback (or None); one Library call each.
Handler = Callable[[Any, Command, Optional["Progress"]], r.Result]
Guard = Literal["confirm", "never", "reads"]
ProgressKind = Literal["bar", "spinner"]
# What a two-step intent stops to ask, when its face can answer: a yes to a plan, a model, a secret.
Asks = Literal["plan", "model", "secret"]

EXAMPLES_DIR = Path(__file__).parent / "understanding" / "examples"
# Where a missing slot's answer is picked from (the parser offers the models on disk; the executor narrows
# LOADED_MODELS to what is in memory, which only it knows).
MODELS_ON_DISK = "models on disk"
LOADED_MODELS = "loaded models"
CONFIRM: Guard = "confirm"  # costs minutes or loses something: a guessed parse (any corrected word) asks first
NEVER: Guard = "never"  # asking "did you mean help?" helps nobody: never asks, however unsure the parse
# Only reads (a listing, a figure): a corrected word both readers agree on runs at once, saying what it understood;
# asking "Did you mean: list models?" costs more than a wrong listing would.
READS: Guard = "reads"
PAIR = "pair"  # help's `fits` for two models worth comparing (two variants of one source when there are)
# Topics that name a whole task: "help models" lists every Models row, not only the rows that say "models".
WHOLE_TASK_TOPICS = frozenset({"models", "list", "status", "server"})


class HelpRow(NamedTuple):
    """One help line: the form, what it does, one example, more forms (shown by `help TOPIC`)."""

    form: str
    does: str
    example: str
    more: tuple[str, ...] = ()


@dataclass(frozen=True)
class Need:
    """Slots a command cannot run without, and the question asked when one is missing."""

    slots: tuple[str, ...]
    question: str  # may name slots: {model}
    choices: Optional[str] = None  # MODELS_ON_DISK | LOADED_MODELS; None: a free answer
    at_least: int = 1  # how many a list slot ("models") must hold
    none: str = ""  # said instead of the question when there is nothing to choose from

    def missing(self, slots: Slots) -> bool:
        """Whether any of its slots is unset (or a list slot holds too few); "all models" fills the model slots."""
        if slots.every and set(self.slots) <= {"model", "models"}:
            return False
        values = [getattr(slots, name) for name in self.slots]
        return any(len(v) < self.at_least if isinstance(v, list) else not v for v in values)

    def ask(self, slots: Slots) -> str:
        """The question, with the slots it names filled in."""
        return self.question.format(**vars(slots))


@dataclass(frozen=True)
class TwoStep:
    """An intent that stops halfway when its face can answer (Executor.execute(..., answers=...) names the kinds it
    can): `first` runs up to the question and returns it as a typed result (a runnable QuantizePlan, a ChooseModel,
    a NeedsSecret); Executor.answer goes on with the reply. Elsewhere the intent's handler runs it whole."""

    asks: Asks
    first: Handler


@dataclass(frozen=True)
class IntentSpec:
    """Everything about one intent that is not parsing: its questions, handler, help, guard and shell feedback."""

    intent: Intent
    task: str  # help's group ("Models", "Serving", ...)
    handler: Handler
    examples: str = ""  # its example sentences under EXAMPLES_DIR; "" -> f"{intent.value.lower()}.txt"
    needs: tuple[Need, ...] = ()  # checked in order: the first missing one is asked
    describe: Union[str, Callable[[Slots], str], None] = None  # the shortest line asking for it ({model} {models})
    help: tuple[HelpRow, ...] = ()  # rows that document it (and maybe its siblings: "load NAME / unload NAME")
    topics: tuple[str, ...] = ()  # `help WORD` words that open its task
    guard: Optional[Guard] = None  # None: asks only below the executor's confidence floor
    file_needed: Optional[tuple[str, str]] = None  # reads a file: (what to say, what to type) when none was named
    progress: Optional[ProgressKind] = None  # the shell's feedback while it runs
    many_models: bool = False  # its answer is a list of models: a chosen one is added, not put in place
    every: bool = False  # "all models", "all of them": every model it can run on (unload: the loaded)
    fits: Optional[str] = None  # what its help examples' NAME / A / B must be (agents/model_sets.py); None: no model
    completion: tuple[str, ...] = ()  # the shell's completions at the start of a line
    two_step: Optional[TwoStep] = None  # it stops to ask when its face can answer (a plan, a model, a secret)
    canonical: str = ""  # the line suggest() offers for it (NAME: the user's model)
    rank: int = 0  # suggest()'s order among equally close lines: commonest (lowest) first

    def __post_init__(self) -> None:
        if not self.examples:  # frozen: the default is derived once, here
            object.__setattr__(self, "examples", f"{self.intent.value.lower()}.txt")


def _describe_quantize(slots: Slots) -> str:
    """quantize NAME [to LEVEL|N-bit|fit SIZE|kld X] [METHOD] [with imatrix] [with group size N] [as OUT]."""
    target = slots.level or (f"{slots.bits}-bit" if slots.bits else "") or slots.budget or ""
    parts = [f"quantize {slots.model}", f"to {target}" if target else "", slots.method or "",
             "with imatrix" if slots.imatrix else "",
             f"with group size {slots.group_size}" if slots.group_size else "",
             f"as {slots.name}" if slots.name else ""]
    return " ".join(p for p in parts if p)


def _login(x: Any, c: Command, p: Optional[Progress]) -> r.Result:
    """The token is asked at a hidden prompt, which only the interactive shell has (its first step asks it)."""
    return r.ErrorResult(message="login asks for the token at a prompt, so it needs the interactive shell",
                         hint="run `python cli/api_cli.py` and type login, or set HF_TOKEN in the environment")


def models_of(x: Any, c: Command) -> list[str]:
    """The command's models; for "all models", every usable one on disk that generates text, quickest first."""
    if c.slots.every:
        return ms.Pool.of(x.library.models().models).fitting(ms.GENERATES)
    return c.slots.models or [c.slots.model]


# RECOMMEND_MODEL's kind: what "best" means in the question ("" both).
FOCUS_LINES = {"speed": "which model is fastest", "fidelity": "which model is most faithful",
               "": "which model should I use"}


def _model(verb: str, choices: str = MODELS_ON_DISK, none: str = "") -> Need:
    return Need(("model",), f"Which model do you want to {verb}?", choices, none=none)


def _runs_on(word: str) -> Need:
    return Need(("model",), f"Which model should the {word} run on?", MODELS_ON_DISK)


def _new_name(verb: str) -> Need:
    return Need(("name",), f"What should the new name be? e.g. {verb} {{model}} to NEW-NAME")


# In help's order: grouped by task, each task's rows as `help` prints them.

def _train_line(s: Slots) -> str:
    return f"train classifier {s.classifier or 'NAME'} on {s.file or 'data.csv'} with {s.model or 'MODEL'}"


def _classify_line(s: Slots) -> str:
    return f'classify "{s.prompt or "text"}" with {s.classifier or "NAME"}'


def _check_line(s: Slots) -> str:
    variants = " and ".join(s.models) or "VARIANT"
    return f"check classifier {s.classifier or 'NAME'} on {variants}" + (f" with {s.file}" if s.file else "")


def _add_endpoint_line(s: Slots) -> str:
    extra = (f" model {s.remote_model}" if s.remote_model else "") + (f" key from {s.key_env}" if s.key_env else "")
    return f"add endpoint {s.name or 'NAME'} at {', '.join(s.urls) or 'URL'}{extra}"


_SPECS = (
    # -- Models ---------------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.LIST_MODELS, "Models", lambda x, c, p: x.library.models(probe=True), describe="list models",
        help=(HelpRow("list models", "models on disk: format, level, size, whether they load", "list models",
                      ("show models", "what models do I have")),),
        topics=("list", "models"), guard=READS, completion=("list models",), canonical="list models", rank=4),
    IntentSpec(
        Intent.SHOW_MODEL, "Models", lambda x, c, p: x.model_commands.show(c, p), needs=(_model("show"),),
        describe="show {model}",
        help=(HelpRow("show NAME", "one model: manifest, lineage, latest speed and fidelity", "show NAME",
                      ("info about NAME", "details of NAME")),),
        topics=("inspect",), guard=READS, fits=ms.ANY, completion=("show",), canonical="show model NAME", rank=27),
    IntentSpec(
        Intent.REMOVE_MODEL, "Models", lambda x, c, p: x.model_commands.remove(c, p), needs=(_model("remove"),),
        describe="remove {models}",
        help=(HelpRow("remove NAME [and NAME2] [--yes]", "delete models from disk (asks first)", "remove NAME",
                      ("delete model NAME", "rm NAME --yes")),),
        topics=("remove",), guard=CONFIRM, fits=ms.ANY, completion=("remove",), canonical="remove model NAME",
        rank=26),
    IntentSpec(
        Intent.RENAME_MODEL, "Models", lambda x, c, p: x.model_commands.rename(c, p),
        needs=(_model("rename"), _new_name("rename")), describe="rename {model} to {name}",
        help=(HelpRow("rename NAME to NEW / copy NAME to NEW", "rename or copy a model, manifests kept",
                      "copy NAME to NAME-copy", ("mv NAME NEW", "cp NAME NEW", "duplicate NAME as NEW")),),
        topics=("rename",), guard=CONFIRM, fits=ms.ANY, completion=("rename",), canonical="rename NAME to NEW",
        rank=28),
    IntentSpec(
        Intent.COPY_MODEL, "Models", lambda x, c, p: x.model_commands.copy(c, p),
        needs=(_model("copy"), _new_name("copy")), describe="copy {model} to {name}",
        topics=("copy",), fits=ms.ANY, completion=("copy",), canonical="copy NAME to NEW", rank=29),
    IntentSpec(
        Intent.DISK_USAGE, "Models", lambda x, c, p: x.library.disk_usage(), describe="disk usage",
        help=(HelpRow("disk usage", "space per model and in total, what removing would free", "disk usage",
                      ("how much space do my models use",)),),
        topics=("disk",), guard=READS, completion=("disk usage",), canonical="disk usage", rank=30),
    # -- Serving --------------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.LOAD_MODEL_API, "Serving", lambda x, c, p: x.model_commands.load(c, p), needs=(_model("load"),),
        describe="load {model}",
        help=(HelpRow("load NAME / unload NAME", "put a model in memory / free it", "load NAME",
                      ("load model NAME", "serve NAME", "fire up NAME", "get NAME running", "unload NAME",
                       "evict NAME", "stop serving NAME")),),
        topics=("load", "serve"), fits=ms.GENERATES, progress="spinner", completion=("load model", "serve model"),
        canonical="load model NAME", rank=5),
    IntentSpec(
        Intent.UNLOAD_MODEL_API, "Serving", lambda x, c, p: x.unload(c, p),
        needs=(_model("unload", LOADED_MODELS, "Nothing is loaded, so there is nothing to unload."),),
        describe="unload {models}", topics=("unload",), guard=CONFIRM, progress="spinner", every=True,
        completion=("unload model",), canonical="unload model NAME", rank=6),
    IntentSpec(
        Intent.START_API_SERVER, "Serving", lambda x, c, p: x.start_server(c, p), describe="start server",
        help=(HelpRow("start server [on port N] / stop server", "the background API (OpenAI- and Ollama-compatible)",
                      "start server on port 8000",
                      ("launch the api", "boot the server", "shut down the api", "kill the server")),),
        topics=("start", "server"), progress="spinner", completion=("start server",), canonical="start server",
        rank=1),
    IntentSpec(
        Intent.STOP_API_SERVER, "Serving", lambda x, c, p: x.stop_server(c, p), describe="stop server",
        topics=("stop",), guard=CONFIRM, progress="spinner", completion=("stop server",), canonical="stop server",
        rank=2),
    IntentSpec(
        Intent.SHOW_API_STATUS, "Serving", lambda x, c, p: x.server_info(), describe="show api status",
        help=(HelpRow("show api status", "the server and the loaded models", "show api status",
                      ("show loaded models", "what's being served right now", "is the server running?")),),
        topics=("status",), guard=READS, completion=("show api status", "show loaded models"),
        canonical="show api status",
        rank=3),
    # -- Chat -----------------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.CHAT_WITH_MODEL, "Chat", lambda x, c, p: x.chat(c, p), needs=(_model("chat"),),
        describe="chat with {model}",
        help=(HelpRow("chat with NAME", "talk to a model; /exit /clear /system TEXT /set temperature 0.2 /stats",
                      "chat with NAME",
                      ('ask NAME "What does shuffle do?"', "talk to NAME", "run NAME", "exit (leaves chat)")),),
        topics=("chat",), fits=ms.GENERATES, progress="spinner", completion=("chat with", "talk to"),
        canonical="chat with model NAME", rank=7),
    IntentSpec(
        Intent.EMBED_TEXT, "Chat",
        lambda x, c, p: x.library.embed_side_by_side(c.slots.models, c.slots.texts or [c.slots.prompt], progress=p)
        if len(c.slots.models) > 1 else x.library.embed(c.slots.model, c.slots.texts or [c.slots.prompt], progress=p),
        # One question for both slots; the models are offered only while the model is what is missing.
        needs=(Need(("model",), 'Embed what, with which model? e.g. embed NAME "def f(x):"', MODELS_ON_DISK),
               Need(("prompt",), 'Embed what, with which model? e.g. embed NAME "def f(x):"')),
        help=(HelpRow('embed NAME [and NAME2] "text" ["text" ...]',
                      "a text's embedding: dimensions, norm and first values (several models: their cosines)",
                      'embed NAME "def f(x):"'),),
        topics=("embed",), fits=ms.EMBEDS, progress="bar", completion=("embed",), canonical='embed NAME "text"',
        rank=19),
    # -- Experiments ----------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.BENCHMARK_MODELS, "Experiments",
        lambda x, c, p: x.library.benchmark(models_of(x, c), progress=p),
        needs=(_runs_on("benchmark"),), describe="benchmark {models}",
        help=(HelpRow("benchmark NAME [and NAME2]", "TTFT, tokens/s, latency p50/p95, load time, memory",
                      "benchmark NAME",
                      ("how fast is NAME", "NAME's speed", "bench A and B", "benchmark all models")),),
        topics=("benchmark",), every=True, fits=ms.GENERATES, progress="bar", completion=("benchmark",),
        canonical="benchmark model NAME", rank=8),
    IntentSpec(
        Intent.TUNE_MODEL, "Experiments", lambda x, c, p: x.library.tune(c.slots.model, progress=p),
        needs=(_model("tune"),), describe="tune {model}",
        help=(HelpRow("tune NAME", "measure speculation, slots, threads and batches for a GGUF model on this "
                      "machine (at most 3 min), then serve it with the winner", "tune NAME",
                      ("find the fastest engine settings for NAME", "autotune NAME")),),
        topics=("tune", "speculation"), fits=ms.SERVED_GGUF, progress="bar", completion=("tune",),
        canonical="tune NAME", rank=33),
    IntentSpec(
        Intent.COMPARE_MODELS, "Experiments",
        lambda x, c, p: x.library.compare(models_of(x, c), prompts_file=c.slots.file, progress=p),
        needs=(Need(("models",), "Which models should I compare? Name two or more.", MODELS_ON_DISK, at_least=2),),
        describe="compare {models}",
        help=(HelpRow("compare A and B [and C]", "the same prompts on each, fidelity against their source, ranked",
                      "compare A and B", ("A vs B", "is A or B better", "compare all models")),),
        topics=("compare",), every=True, fits=PAIR, progress="bar", many_models=True, completion=("compare",),
        canonical="compare models NAME and B", rank=9),
    IntentSpec(
        Intent.FIDELITY_REPORT, "Experiments", lambda x, c, p: x.fidelity(c, p), needs=(_runs_on("fidelity"),),
        describe="fidelity of {models}",
        help=(HelpRow("fidelity of NAME [against REF]", "perplexity, KL divergence, top-1 agreement, Δp",
                      "fidelity of NAME",
                      ("how faithful is NAME", "kld NAME vs REF", "perplexity of NAME on notes.txt")),),
        topics=("fidelity",), fits=ms.VARIANT, progress="bar", canonical="fidelity of NAME", rank=20),
    IntentSpec(
        Intent.EXPERIMENT_WITH_MODEL, "Experiments",
        lambda x, c, p: x.library.experiment(c.slots.model, c.slots.prompt, progress=p),
        needs=(_runs_on("experiment"),), describe="experiment with {models}",
        help=(HelpRow('experiment with NAME ["prompt"] / batch NAME prompts.txt', "one prompt, or a file of prompts",
                      'experiment with NAME "hello"',
                      ("conversation with NAME on script.txt", "agreement of A and B on data.jsonl")),),
        topics=("experiment",), fits=ms.GENERATES, progress="bar", completion=("experiment with",),
        canonical="experiment with model NAME", rank=10),
    IntentSpec(
        Intent.BATCH_EXPERIMENT, "Experiments", lambda x, c, p: x.with_file(x.library.batch, c, p),
        needs=(_runs_on("batch"),), describe="batch of {models}",
        file_needed=("a batch needs a file of prompts", "batch {model} prompts.txt (one prompt per line, or .jsonl)"),
        progress="bar"),
    IntentSpec(
        Intent.CONVERSATION_EXPERIMENT, "Experiments", lambda x, c, p: x.with_file(x.library.conversation, c, p),
        needs=(_runs_on("conversation"),), describe="conversation of {models}",
        file_needed=("a conversation needs a script file",
                     "conversation with {model} on script.txt (one user turn per line)"),
        progress="bar"),
    IntentSpec(
        Intent.AGREEMENT_REPORT, "Experiments",
        lambda x, c, p: x.library.agreement(*c.slots.models[:2], c.slots.file, progress=p),
        needs=(Need(("models", "file"), "Agreement needs two models (or URL#MODEL of an OpenAI-compatible server) "
                    "and a labelled .jsonl file: agreement of A and B on data.jsonl", MODELS_ON_DISK, at_least=2),),
        describe="agreement of {models}", topics=("agreement",), progress="bar", many_models=True),
    IntentSpec(
        Intent.LIST_EXPERIMENTS, "Experiments", lambda x, c, p: x.library.experiments(model=c.slots.model),
        help=(HelpRow("list experiments [on NAME] / show statistics [for NAME]",
                      "the recorded history / counts per model (of one model)",
                      "list experiments", ("history", "stats")),),
        topics=("experiments",), guard=READS, completion=("list experiments",), canonical="list experiments",
        rank=16),
    IntentSpec(
        Intent.SHOW_STATISTICS, "Experiments", lambda x, c, p: x.library.statistics(model=c.slots.model),
        guard=READS, completion=("show statistics",), canonical="show statistics", rank=17),
    IntentSpec(
        Intent.RECOMMEND_MODEL, "Experiments", lambda x, c, p: x.recommend(c, p),
        describe=lambda s: FOCUS_LINES.get(s.kind or "", FOCUS_LINES[""]) + (
            f": {' or '.join(s.models)}" if s.models else ""),
        help=(HelpRow("which model is fastest? / which should I use?",
                      "answered from the newest benchmark and fidelity figures (or what to measure first)",
                      "which model should I use?", ("which model is fastest?", "which model is most faithful?")),),
        topics=("recommend",), guard=READS),
    # -- Factory --------------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.QUANTIZE_MODEL, "Factory", lambda x, c, p: x.quantize(c, p), needs=(_model("quantize"),),
        describe=_describe_quantize,
        help=(HelpRow("quantize NAME to 4-bit gguf [with imatrix] [and fidelity] [as OUT] [--yes]",
                      "plan, confirm and run a quantization", "quantize NAME to q4_k_m",
                      ("quantize NAME to q8_0", "quantize NAME to 4-bit gptq with calib.txt",
                       "quantize NAME to 4-bit gptq with group size 64", "quantize NAME to nf4",
                       "quantize NAME to iq4_xs with imatrix and fidelity as OUT --yes", "list quantizations")),
              HelpRow("quantize NAME to fit SIZE | to kld X [with imatrix]",
                      "a GGUF whose per-tensor types are searched to meet a size, RAM or KL-divergence budget, "
                      "then measured", "quantize NAME to fit 100 MB",
                      ("quantize NAME to kld 0.02", "quantize NAME to fit 4 GB of RAM",
                       "quantize NAME to fit 100 MB with imatrix"))),
        topics=("quantize",), guard=CONFIRM, fits=ms.SOURCE, completion=("quantize",),
        two_step=TwoStep("plan", lambda x, c, p: x.plan_quantization(c, p)), canonical="quantize NAME to 4-bit gguf",
        rank=11),
    IntentSpec(
        Intent.LIST_QUANTIZATIONS, "Factory", lambda x, c, p: x.library.quantizations(), guard=READS,
        completion=("list quantizations",), canonical="list quantizations", rank=15),
    IntentSpec(
        Intent.DOWNLOAD_MODEL, "Factory",
        lambda x, c, p: x.library.download(c.slots.model, name=c.slots.name, level=c.slots.level, progress=p),
        needs=(Need(("model",), "Which Hugging Face repository? e.g. download Qwen/Qwen2.5-0.5B-Instruct"),),
        describe="download {model}",
        help=(HelpRow("download ORG/NAME [LEVEL] [as NAME] / import PATH",
                      "fetch from the Hugging Face Hub / copy a local one", "download Qwen/Qwen2.5-0.5B-Instruct",
                      ("pull ORG/NAME q4_k_m as short", "import ~/models/x.gguf", "login")),),
        topics=("download",), guard=CONFIRM, progress="bar", completion=("download",),
        canonical="download model ORG/NAME", rank=12),
    IntentSpec(
        Intent.IMPORT_MODEL, "Factory",
        lambda x, c, p: x.library.import_model(c.slots.model, name=c.slots.name, progress=p),
        needs=(Need(("model",), "Which folder or .gguf file? e.g. import ~/models/my-model"),),
        topics=("import",), progress="bar", completion=("import",), canonical="import PATH", rank=13),
    IntentSpec(Intent.LOGIN, "Factory", _login, topics=("login",), completion=("login",),
               two_step=TwoStep("secret", lambda x, c, p: x.token_prompt()), canonical="login", rank=14),
    # -- Classifiers ----------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.TRAIN_CLASSIFIER, "Classifiers", lambda x, c, p: x.classifier_commands.train(c, p),
        describe=_train_line,
        help=(HelpRow("train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] "
                      "[pca 0.95]",
                      "an embedding classifier: cross-validated, saved safely under LQMF_HOME/classifiers",
                      "train classifier sentiment on data.csv with MODEL"),),
        fits=ms.EMBEDS, progress="bar", completion=("train classifier",)),
    IntentSpec(
        Intent.CLASSIFY_TEXT, "Classifiers", lambda x, c, p: x.classifier_commands.classify(c, p),
        describe=_classify_line,
        help=(HelpRow('classify "text" with NAME',
                      "a classifier's label and probabilities for a text (also POST /classifiers/NAME/predict)",
                      'classify "this was a lovely gift" with CLASSIFIER'),),
        fits=ms.EMBEDS, completion=("classify",)),
    IntentSpec(
        Intent.CHECK_CLASSIFIER, "Classifiers", lambda x, c, p: x.classifier_commands.check(c, p),
        describe=_check_line,
        help=(HelpRow("check classifier NAME on VARIANT [and VARIANT] [with test.csv] [dropping unknown labels]",
                      "the classifier on quantized variants' embeddings of its held-out split, or of a labelled file "
                      "with its training columns: accuracy, agreement, cosine, texts/s",
                      "check classifier CLASSIFIER on VARIANT"),),
        fits=ms.EMBEDS, progress="bar", completion=("check classifier",)),
    IntentSpec(
        Intent.LIST_CLASSIFIERS, "Classifiers", lambda x, c, p: x.classifier_commands.list(c, p),
        describe="list classifiers",
        help=(HelpRow("list classifiers", "the saved classifiers with their model, labels and accuracy",
                      "list classifiers"),),
        guard=READS, completion=("list classifiers",)),
    # -- Endpoints ------------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.ADD_ENDPOINT, "Endpoints", lambda x, c, p: x.endpoint_commands.add(c, p),
        describe=_add_endpoint_line,
        help=(HelpRow("add endpoint NAME at URL [, URL2] [model M] [key from ENV_VAR]",
                      "a remote OpenAI-compatible server (vLLM, llama-server, Ollama, a cloud API) as a model; "
                      "several URLs: a fleet", "add endpoint NAME at URL [, URL2] [model M] [key from ENV_VAR]"),),
        guard=CONFIRM, two_step=TwoStep("model", lambda x, c, p: x.endpoint_commands.add_or_ask(c, p)),
        canonical="add endpoint NAME at URL", rank=21),
    IntentSpec(
        Intent.LIST_ENDPOINTS, "Endpoints", lambda x, c, p: x.library.endpoints(),
        describe="list endpoints",
        help=(HelpRow("list endpoints / remove endpoint NAME",
                      "registered endpoints with health and latency / forget one",
                      "list endpoints / remove endpoint NAME"),),
        guard=READS, canonical="list endpoints", rank=22),
    IntentSpec(
        Intent.REMOVE_ENDPOINT, "Endpoints", lambda x, c, p: x.endpoint_commands.remove(c, p), guard=CONFIRM,
        describe=lambda s: f"remove endpoint {s.name or 'NAME'}",
        canonical="remove endpoint NAME", rank=23),
    IntentSpec(
        Intent.USE_MODEL, "Endpoints", lambda x, c, p: x.endpoint_commands.use(c, p),
        describe=lambda s: "use " + " then ".join(s.models or [s.model or "NAME"]),
        help=(HelpRow("use NAME [then OTHER]",
                      "the default model (requests naming `default`), with fallbacks; persisted",
                      "use NAME then NAME2"),),
        guard=CONFIRM, fits=ms.GENERATES, canonical="use NAME", rank=24),
    IntentSpec(
        Intent.EXPORT_MODEL, "Endpoints", lambda x, c, p: x.library.export(c.slots.model, c.slots.kind),
        describe=lambda s: f"export {s.model or 'NAME'} for {s.kind or 'vllm'}",
        help=(HelpRow("export NAME for vllm|llama-server",
                      "check a model can be served there and print the exact command",
                      "export NAME for vllm|llama-server"),),
        guard=READS, canonical="export NAME for vllm", rank=25),
    # -- Shell ----------------------------------------------------------------------------------------------------
    IntentSpec(
        Intent.SHOW_CONFIG, "Shell", lambda x, c, p: x.config(c, p),
        help=(HelpRow("show config / help [TOPIC] / exit", "settings / this list or one topic's forms / leave",
                      "help quantize", ("help models", "help serving", "what can you do")),),
        topics=("config",), guard=READS, completion=("show config",), canonical="show config", rank=18),
    IntentSpec(Intent.SHOW_HELP, "Shell", lambda x, c, p: x.help(c, p), describe="help", guard=NEVER,
               completion=("help",), canonical="help", rank=31),
    IntentSpec(Intent.EXIT, "Shell", lambda x, c, p: r.Exit(), describe="exit", topics=("exit",), guard=NEVER,
               completion=("exit",), canonical="exit", rank=32),
    IntentSpec(Intent.UNKNOWN, "Shell", lambda x, c, p: x.unknown(c, p), guard=NEVER),
)
SPECS: dict[Intent, IntentSpec] = {s.intent: s for s in _SPECS}


def spec(intent: Intent) -> IntentSpec:
    """The declaration of one intent."""
    return SPECS[intent]


def examples_file(intent: Intent) -> Path:
    """Where its example sentences live."""
    return EXAMPLES_DIR / SPECS[intent].examples


def missing(command: Command) -> Optional[Need]:
    """The first need of the command's intent that its slots leave open, if any."""
    return next((need for need in SPECS[command.intent].needs if need.missing(command.slots)), None)


def guarded(intent: Intent) -> bool:
    """Whether a guessed parse of it (any corrected word) must ask before it runs."""
    return SPECS[intent].guard == CONFIRM


def never_asks(intent: Intent) -> bool:
    """Whether it runs without "Did you mean ...?", however unsure the parse."""
    return SPECS[intent].guard == NEVER


def file_needed(intent: Intent) -> Optional[tuple[str, str]]:
    """(what to say, what to type) when it reads a file and none was named."""
    return SPECS[intent].file_needed


def progress_kind(intent: Intent) -> Optional[ProgressKind]:
    """The shell's feedback while it runs: "bar", "spinner" or None."""
    return SPECS[intent].progress


def two_step(intent: Intent) -> Optional[TwoStep]:
    """How the intent stops to ask when its face can answer (None: it never stops halfway)."""
    return SPECS[intent].two_step


def many_models(intent: Intent) -> bool:
    """Whether its answer is a list of models."""
    return SPECS[intent].many_models


def help_entries() -> list[tuple[IntentSpec, HelpRow]]:
    """(the intent's declaration, one of its help rows), in help's order."""
    return [(s, row) for s in SPECS.values() for row in s.help]


def runs_as_understood(command: Command) -> bool:
    """Whether a guessed line runs at once, saying what was understood: a read-only intent whose corrected words
    the word rules and the classifier read alike, with no other reading to offer and nothing to ask."""
    return SPECS[command.intent].guard == READS and bool(command.corrections) and command.agreed \
        and not command.question and not command.alternatives


def help_rows() -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """(task, form, what it does, example, more forms), in help's order."""
    return [(s.task, *row) for s in SPECS.values() for row in s.help]


def topic_tasks() -> dict[str, str]:
    """`help WORD` -> the task it opens."""
    return {word: s.task for s in SPECS.values() for word in s.topics}


def completion_words() -> list[str]:
    """The shell's completions at the start of a line."""
    return [word for s in SPECS.values() for word in s.completion]


def completion_fit(line: str) -> Optional[str]:
    """What the models completed after a line's command phrase must be (a model_sets fit); None: any name."""
    start = " ".join(line.lower().split())
    phrases = [(phrase, s.fits) for s in SPECS.values() for phrase in s.completion
               if start == phrase or start.startswith(phrase + " ")]
    fit = max(phrases, key=lambda entry: len(entry[0]))[1] if phrases else None
    return ms.GENERATES if fit == PAIR else fit  # each name of a pair is completed on its own


def canonical_lines() -> list[str]:
    """suggest()'s lines, commonest first."""
    return [s.canonical for s in sorted(SPECS.values(), key=lambda s: s.rank) if s.canonical]


def description(command: Command) -> Optional[str]:
    """The command as the shortest line asking for it, or None when its intent declares none."""
    template, slots = SPECS[command.intent].describe, command.slots
    if template is None or callable(template):
        return template(slots) if template else None
    models = "all models" if slots.every else " and ".join(slots.models or [slots.model or "NAME"])
    return template.format(model=slots.model or "NAME", name=slots.name or "NEW", models=models)
