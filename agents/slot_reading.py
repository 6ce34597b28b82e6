"""How an intent's slots are read from a split line: model references, files, levels, names, ports, topics.

The word rules (agents/intent_rules.py) read the slots of the intent they chose with these; when the intent
classifier chose the intent instead, SLOT_READERS reads that intent's slots from the same line.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

from agents.budget_words import budget_phrase
from agents.classifier_parse import classifier_slots
from agents.command_words import GROUPS, VOCAB, group_of
from agents.endpoint_commands import endpoint_slots
from agents.intents import Command, Intent, Slots
from agents.line_words import BITS, BNB_LEVELS, FILE, GROUP_SIZE, PORT, Words
from agents.references import acted_on


def port_of(line: str) -> Optional[int]:
    match = PORT.search(line)
    if match:
        return int(match.group(1))
    numbers = re.findall(r"\b(\d{4,5})\b", line)
    return int(numbers[0]) if numbers else None


def _prompt(s: Words) -> Optional[str]:
    return s.quoted[-1] if s.quoted else None


PLAIN_NAME_VERBS = ("load", "unload", "chat", "serve", "remove", "inspect", "start", "stop")
NOT_A_NAME = frozenset({"memory", "ram", "gpu", "vram", "out", "offline", "online", "running", "going", "ready",
                        "default", "w/", "w", "u", "pls", "plz"})


def model_slots(s: Words, plain_names: bool = False, many: bool = False, **extra) -> Slots:
    """Model slots from the references; with plain_names, an unknown plain word ("load llama") names one;
    `many` (compare) lists the references even when there is one."""
    # Outside quantize, a bare level ("q4_k_m") is a partial model name.
    refs = s.in_order(s.models + s.levels)
    if plain_names and not refs:
        # A word typed as is that is no command word, after the verb: "load llama", "chat with mistral".
        verb = s.first(*PLAIN_NAME_VERBS)
        refs = [raw for i, (w, raw) in enumerate(zip(s.words, s.raw, strict=True))
                if i > verb and raw.lower() not in VOCAB and w not in VOCAB and raw.lower() not in NOT_A_NAME][:1]
    refs = acted_on(s.line, _beside_a_name(s, refs))
    many = len(refs) > 1 or many
    return Slots(model=refs[0] if refs else None, models=refs if many else [], prompt=_prompt(s), **extra)


def _beside_a_name(s: Words, refs: list[str]) -> list[str]:
    """Beside a model on disk, words joined by - or / that are no name on disk are English ("a back-and-forth
    with X", "threads/slots", "a/b"), not a second model. (Renames read their new name elsewhere.)"""
    if not any(ref not in s.guessed for ref in refs):
        return refs
    return [ref for ref in refs if ref not in s.guessed or not re.fullmatch(r"[a-z]+(?:[-/][a-z]+)+", ref.lower())]


# The output's name: "as NAME", "as a new model called NAME", "and call it NAME", "name it NAME", "under the name NAME".
# An article is no name ("as a local model"), but "my-q5" is one: the article must end at a space.
AS_NAME = re.compile(r"\b(?:as\s+(?:an?\s+(?:new\s+)?(?:model\s+|copy\s+)?(?:called|named)\s+)?|(?:call|name)\s+it\s+|"
                     r"(?:renamed|copied)\s+(?:to|as)\s+|(?:with|under)\s+(?:the\s+)?(?:new\s+)?name\s+)"
                     r"(?!(?:an?|the|my|our)\s)([A-Za-z0-9][A-Za-z0-9._\-]*)", re.I)
# A comparison names no output: "as good as possible", "as far as it goes", "the same as B".
AS_COMPARED = re.compile(r"\bas\s+\w+\s+as\b|\b(?:same|such|just)\s+as\b", re.I)
YES = re.compile(r"(?:^|\s)(?:--yes|-y)\b|\byes\b|\b(?:don'?t|do\s+not|never)\s+ask\b|\bwithout\s+(?:asking|"
                 r"(?:a\s+|any\s+)?confirm\w*)|\bno\s+(?:need\s+to\s+confirm|confirm\w*|questions\s+asked)\b", re.I)


def output_name(s: Words, line: str) -> tuple[Optional[str], list[str]]:
    """"... as NAME": the output's name, and the model references other than it."""
    match = AS_NAME.search(AS_COMPARED.sub(" ", line))
    name = match.group(1).rstrip(".,!?;") if match else None
    return name, [m for m in s.models if m != name]


def quantize_command(s: Words, line: str, known: Sequence[str] = ()) -> Command:
    """quantize NAME [to LEVEL | N-bit | to fit SIZE | to kld X] [METHOD] [with FILE] [with imatrix] [and fidelity]
    [as OUT] [--yes]."""
    name, refs = output_name(s, line)
    refs = acted_on(s.line, refs)  # "since A came out badly, quantize B": B
    bits = BITS.search(line)
    level = next((lv for lv in s.levels), None)
    # A level or a bit width names the recipe: a size beside it is a remark, not a budget.
    budget = None if level or bits else budget_phrase(line)
    method = s.methods[0] if s.methods else None
    if level in BNB_LEVELS:
        method = method or "bnb"
    elif level:
        method = method or "gguf"
    level_bits = BNB_LEVELS.get(level) if level in BNB_LEVELS else \
        int(re.search(r"\d", level).group()) if level and "q" in level[:2] else None
    group = GROUP_SIZE.search(line)
    slots = Slots(model=refs[0] if refs else None, method=method, level=level,
                  bits=int(bits.group(1)) if bits else level_bits, file=s.files[0] if s.files else None,
                  name=name, yes=bool(YES.search(line)), imatrix=s.has("imatrix"),
                  fidelity=_asks_fidelity(s, budget.said(line) if budget else ""),
                  group_size=int(group.group(1) or group.group(2)) if group else None,
                  budget=budget.text if budget else None)
    return Command(Intent.QUANTIZE_MODEL, slots)


def _asks_fidelity(s: Words, budget_words: str) -> bool:
    """A fidelity word beyond the budget's own ("to kld 0.02" is a budget; "... and fidelity" asks for a report)."""
    spent = sum(word in GROUPS["fidelity"] for word in re.findall(r"[\w-]+", budget_words.lower()))
    return sum(word in GROUPS["fidelity"] for word in s.words) > spent


def acquire_command(intent: Intent, s: Words, line: str) -> Command:
    """download ORG/NAME / import PATH, with [LEVEL] [as NAME]."""
    name, refs = output_name(s, line)
    refs = refs or [f for f in s.files if f != name]  # a file to import: x.gguf
    return Command(intent, Slots(model=refs[0] if refs else None, level=s.levels[0] if s.levels else None, name=name))


# Help topics named by a noun, and the verbs that name a topic only when no noun does ("how do I use export").
HELP_NOUNS = {"export": "export", "endpoint": "endpoints", "endpoints": "endpoints", "remote": "endpoints",
              "remotes": "endpoints", "classifier": "classifiers", "classifiers": "classifiers", "server": "server",
              "api": "server", "default": "use"}
WEAK_TOPICS = frozenset({"use", "list", "models", "start", "status"})


def _unsuffixed(word: str) -> str:
    """The verb of an -ing word ("removing" -> remove, "benchmarking" -> benchmark), for help topics."""
    if not word.endswith("ing") or len(word) < 6:
        return word
    stem = word[:-3]
    return stem if group_of(stem) else stem + "e"


def help_command(words: Sequence[str]) -> Command:
    """Help on the command the words name (a noun before a verb: "how do I start the server"), else the first word."""
    rest = [w for w in words if w not in GROUPS["help"]]
    named = [HELP_NOUNS.get(w) or group_of(w) or group_of(_unsuffixed(w)) for w in rest]
    strong = [t for t in named if t and t not in WEAK_TOPICS]
    if strong:
        return Command(Intent.SHOW_HELP, Slots(kind=strong[0]))
    topic = next((group_of(w) for w in rest if group_of(w) not in (None, "models", "list")), None)
    if topic is None and rest:
        topic = rest[0]
    return Command(Intent.SHOW_HELP, Slots(kind=topic))


FOCUS_WORDS = {"speed": frozenset({"fastest", "quickest", "speediest", "faster", "speed", "throughput"}),
               "fidelity": frozenset({"faithful", "accurate", "closest", "fidelity", "quality", "kld"})}


def recommend_command(s: Words, line: str, known: Sequence[str] = ()) -> Command:
    """What "best" means in the question: speed, fidelity, or (neither named) both; and the models to choose among,
    when it names them ("is A or B the better pick?")."""
    typed = set(re.findall(r"[a-z]+", line.lower()))
    focus = next((kind for kind, words in FOCUS_WORDS.items() if typed & words), None)
    among = acted_on(s.line, s.in_order([m for m in s.models if m not in s.guessed]))  # "latency-sensitive": none
    return Command(Intent.RECOMMEND_MODEL, Slots(kind=focus, model=among[0] if among else None,
                                                 models=among if len(among) > 1 else []))


def _models_reader(intent: Intent, **options) -> Callable[[Words, str, Sequence[str]], Command]:
    """A reader for an intent whose slots are model references (and the file and prompt, when typed)."""
    def read(s: Words, line: str, known: Sequence[str]) -> Command:
        return Command(intent, model_slots(s, file=s.files[0] if s.files else None, **options))
    return read


def _typed_reader(parse: Callable[[Intent, str, Sequence[str], Words], Command], intent: Intent):
    """A reader for the commands read from the line as typed (endpoints, classifiers), in any word order.

    Where the line names models on disk, only those are its models: a free-order reading may otherwise take a
    plain word ("make it the default", "compared to") for one; a data file read as the model swaps back.
    """
    def read(s: Words, line: str, known: Sequence[str]) -> Command:
        command = parse(intent, line, known, s)
        slots, on_disk = command.slots, set(known)
        named = [m for m in s.in_order(s.models) if m in on_disk]
        if named:
            slots.models = [m for m in slots.models if m in on_disk] or ([] if not slots.models else named)
            if slots.model is not None and slots.model not in on_disk:
                slots.model = slots.models[0] if slots.models else named[0]
        if slots.model and FILE.search(slots.model.rstrip("?.!,")) and slots.file in on_disk:
            slots.model, slots.file = slots.file, slots.model.rstrip("?.!,")
        return command
    return read


def _agreement_command(s: Words, line: str, known: Sequence[str]) -> Command:
    refs = s.in_order(s.models + s.levels) + s.urls
    return Command(Intent.AGREEMENT_REPORT, Slots(model=refs[0] if refs else None, models=refs,
                                                  file=s.files[0] if s.files else None))


def _renaming_reader(intent: Intent) -> Callable[[Words, str, Sequence[str]], Command]:
    def read(s: Words, line: str, known: Sequence[str]) -> Command:
        name, refs = output_name(s, line)
        new = name or (s.models[1] if len(s.models) > 1 else None)
        return Command(intent, Slots(model=refs[0] if refs else None, name=new))
    return read


def _one_model_or_none(intent: Intent) -> Callable[[Words, str, Sequence[str]], Command]:
    """A reader of the one model a history command narrows to (none, or several: the whole history)."""
    return lambda s, line, known: Command(intent, Slots(model=s.models[0] if len(s.models) == 1 else None))


# When the intent classifier chose the intent, how each intent's slots are read (any other: no slots).
SLOT_READERS: dict[Intent, Callable[[Words, str, Sequence[str]], Command]] = {
    **{intent: _models_reader(intent) for intent in (
        Intent.LOAD_MODEL_API, Intent.UNLOAD_MODEL_API, Intent.CHAT_WITH_MODEL, Intent.REMOVE_MODEL,
        Intent.SHOW_MODEL, Intent.BENCHMARK_MODELS, Intent.EXPERIMENT_WITH_MODEL, Intent.BATCH_EXPERIMENT,
        Intent.CONVERSATION_EXPERIMENT, Intent.FIDELITY_REPORT, Intent.TUNE_MODEL)},
    Intent.COMPARE_MODELS: _models_reader(Intent.COMPARE_MODELS, many=True),
    Intent.AGREEMENT_REPORT: _agreement_command,
    Intent.QUANTIZE_MODEL: quantize_command,
    Intent.DOWNLOAD_MODEL: lambda s, line, known: acquire_command(Intent.DOWNLOAD_MODEL, s, line),
    Intent.IMPORT_MODEL: lambda s, line, known: acquire_command(Intent.IMPORT_MODEL, s, line),
    Intent.START_API_SERVER: lambda s, line, known: Command(Intent.START_API_SERVER, Slots(port=port_of(line))),
    Intent.SHOW_API_STATUS: lambda s, line, known: Command(Intent.SHOW_API_STATUS,
                                                           Slots(model=s.models[0] if s.models else None)),
    Intent.DISK_USAGE: lambda s, line, known: Command(Intent.DISK_USAGE,
                                                      Slots(model=s.models[0] if len(s.models) == 1 else None)),
    Intent.RENAME_MODEL: _renaming_reader(Intent.RENAME_MODEL),
    Intent.COPY_MODEL: _renaming_reader(Intent.COPY_MODEL),
    Intent.EMBED_TEXT: lambda s, line, known: Command(Intent.EMBED_TEXT, model_slots(s, texts=list(s.quoted))),
    Intent.SHOW_HELP: lambda s, line, known: help_command(s.words),
    # "which experiments did I run on X?", "statistics for X": that model's history
    **{intent: _one_model_or_none(intent) for intent in (Intent.LIST_EXPERIMENTS, Intent.SHOW_STATISTICS)},
    Intent.RECOMMEND_MODEL: recommend_command,
    **{intent: _typed_reader(lambda i, line, known, s: endpoint_slots(i, line, known), intent) for intent in (
        Intent.ADD_ENDPOINT, Intent.REMOVE_ENDPOINT, Intent.LIST_ENDPOINTS, Intent.USE_MODEL, Intent.EXPORT_MODEL)},
    **{intent: _typed_reader(lambda i, line, known, s: classifier_slots(i, line, known, s.classifiers), intent)
       for intent in (
        Intent.TRAIN_CLASSIFIER, Intent.CLASSIFY_TEXT, Intent.CHECK_CLASSIFIER, Intent.LIST_CLASSIFIERS)},
}
