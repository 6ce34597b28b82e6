"""Natural language -> Command, offline: word rules with fuzzy spelling, model names resolved on disk.

No API key and no model are needed. Optionally an LLM (a loaded local model or an
OpenAI-compatible endpoint) may classify what the rules cannot place; the rules always win
when they are confident.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

from agents.budget_words import SIZE_TOKEN, budget_phrase
from agents.classifier_parse import classifier_command, classifier_slots
from agents.endpoint_commands import endpoint_command, endpoint_slots
from agents.intent_table import canonical_lines, description, missing, spec
from agents.intents import Command, Intent, Slots
from agents.references import acted_on

if TYPE_CHECKING:
    from agents.understanding.runtime import Understanding

log = logging.getLogger(__name__)

# Word groups. A word typed slightly wrong ("laod", "strat", "sever") is corrected to the closest.
GROUPS: dict[str, frozenset[str]] = {
    "start": frozenset({"start", "launch", "boot", "begin", "fire", "spin", "open", "run", "restart"}),
    "stop": frozenset({"stop", "shutdown", "shut", "kill", "halt", "terminate", "close"}),
    "remove": frozenset({"remove", "delete", "rm", "erase", "uninstall", "trash", "wipe", "purge"}),
    "rename": frozenset({"rename", "mv", "move"}),
    "copy": frozenset({"copy", "cp", "duplicate", "clone"}),
    "inspect": frozenset({"info", "details", "detail", "describe", "inspect", "about", "manifest", "lineage"}),
    "disk": frozenset({"disk", "space", "storage", "du", "room"}),
    "server": frozenset({"server", "api", "service", "endpoint", "backend", "daemon"}),
    "status": frozenset({"status", "state", "health", "running", "loaded", "up", "served", "serving", "alive"}),
    "load": frozenset({"load", "mount", "preload"}),
    "unload": frozenset({"unload", "evict", "offload", "release", "free", "drop", "eject", "unmount"}),
    "serve": frozenset({"serve", "host", "deploy", "expose"}),
    "list": frozenset({"list", "show", "ls", "display", "see", "view", "available", "which", "what", "print", "get"}),
    "models": frozenset({"models", "model", "llms", "llm", "checkpoints"}),
    "chat": frozenset({"chat", "talk", "converse", "speak", "ask", "message", "chatting", "talking"}),
    "experiment": frozenset({"experiment", "test", "try", "evaluate", "eval", "probe"}),
    "benchmark": frozenset({"benchmark", "bench", "benchmarks", "speed", "perf", "performance", "throughput",
                            "faster", "fastest", "quicker", "slow", "slower", "latency", "tps"}),
    "compare": frozenset({"compare", "versus", "vs", "against", "side-by-side", "comparison", "better", "best",
                          "worse", "difference", "differ", "diff"}),
    "fidelity": frozenset({"fidelity", "kld", "divergence", "faithful", "faithfulness", "perplexity", "ppl",
                           "report-card"}),
    "agreement": frozenset({"agreement", "agree", "consistency", "consistent", "classification"}),
    "quantize": frozenset({"quantize", "quantise", "quant", "quantization", "convert", "compress", "shrink"}),
    "download": frozenset({"download", "pull", "fetch", "grab"}),
    "import": frozenset({"import", "adopt"}),
    "login": frozenset({"login", "authenticate", "signin", "token"}),
    "imatrix": frozenset({"imatrix", "importance"}),
    "embed": frozenset({"embed", "embedding", "embeddings", "vectorize", "vectorise"}),
    "experiments": frozenset({"experiments", "history", "runs", "results", "past"}),
    "stats": frozenset({"statistics", "stats", "metrics", "numbers", "usage"}),
    "config": frozenset({"config", "configuration", "settings", "setting", "env", "environment", "options"}),
    "help": frozenset({"help", "commands", "?", "manual", "howto"}),
    "exit": frozenset({"exit", "quit", "bye", "goodbye", "q", "leave"}),
    "batch": frozenset({"batch", "file", "prompts"}),
    "conversation": frozenset({"conversation", "dialog", "dialogue", "multi-turn", "script"}),
}
VOCAB = sorted(set().union(*GROUPS.values()) - {"?"})
VOCAB_SET = frozenset(VOCAB)
FILLER = frozenset({
    "please", "pls", "plz", "can", "could", "would", "will", "you", "kindly", "hey", "hi", "hello", "i", "want",
    "to", "like", "id", "i'd", "lets", "let's", "let", "us", "me", "for", "the", "a", "an", "now", "thanks",
    "thank", "my", "of", "on", "up", "do", "just", "go", "ahead", "and", "with", "using", "this", "that", "it",
    "some", "all", "is", "are", "be", "into", "in", "at", "from", "quickly", "currently", "again", "new",
    # Contractions are split ("what's" -> "what s") so a possessive never glues to a model name.
    "s", "re", "ll", "d", "ve", "m", "t", "yes", "y", "called", "named", "does", "did", "right", "being", "mine",
    "your", "our", "its", "there", "here", "real", "maybe", "ok", "okay", "yo",
})
METHODS = {"gguf": "gguf", "gptq": "gptq", "bnb": "bnb", "bitsandbytes": "bnb", "llama.cpp": "gguf"}
LEVEL = re.compile(r"^(?:i?q[1-8](?:_k)?(?:_(?:[sml]|[01]|xs|xxs|nl))?|f16|bf16|f32)$", re.I)
BNB_LEVELS = {"nf4": 4, "fp4": 4, "int8": 8, "int4": 4}
FILE = re.compile(r"\.(?:txt|jsonl|json|csv|md|yaml|yml)$", re.I)
URL = re.compile(r"https?://\S+")
TOKEN = re.compile(r"(?:~?/|\.{1,2}/)?[A-Za-z0-9][A-Za-z0-9._/:+\-]*|\?")  # paths may start with / ~/ ./
PORT = re.compile(r"(?:\bport\s*[:=]?\s*|\bon\s+|:)(\d{2,5})\b", re.I)
BITS = re.compile(r"\b(\d{1,2})\s*-?\s*bits?\b", re.I)
# GPTQ's group size: "with group size 64", "--group-size 64", "group_size=64", or GPTQ's own "g64".
GROUP_SIZE = re.compile(r"\bgroup[\s_-]*size\s*(?:of\s+|=\s*|:\s*)?(\d{1,4})\b|(?<![\w.-])g(\d{2,4})(?![\w.-])", re.I)
# Multi-word verbs and question forms, rewritten to one command word before the words are split.
# Each says what people type that no single word carries: "fire up X" is a load, "take down the api"
# a stop, "how quick is X" a benchmark. Applied outside quotes only (a prompt is never rewritten).
PHRASES: list[tuple[re.Pattern, str]] = [(re.compile(pattern, re.I), word) for pattern, word in [
    (r"(?<=[A-Za-z0-9])'(s|re|ll|d|ve|m|t)\b", r" \1"),  # what's -> what s; X's speed -> X s speed
    (r"\b(?:fire|bring|spin|boot|power|start|warm|gear|start)\s+up\b", "start"),
    (r"\b(?:turn|switch|power)\s+on\b", "start"),
    (r"\b(?:take|shut|bring|tear|power|wind|close)\s+down\b", "stop"),
    (r"\b(?:turn|switch|power)\s+off\b", "stop"),
    (r"\bstop\s+serving\b", "stop"),
    (r"\b(?:bring|get|fire|spin|boot)\b(?=\s+(?:\S+\s+){1,3}?(?:up|running|going|ready|online)\b)", "start"),
    (r"\b(?:bring|take)\b(?=\s+(?:\S+\s+){1,3}?(?:down|offline)\b)", "stop"),
    (r"\b(?:put|stick|pop)\b(?=.*\b(?:memory|ram|gpu|vram)\b)", "load"),
    (r"\b(?:take|get|kick|throw|pull)\b(?=.*\bout\s+of\s+(?:memory|ram|gpu|vram)\b)", "unload"),
    (r"\bget\s+rid\s+of\b", "remove"),
    # "make X fit in 90 MB", "squeeze X into 90 MB": a quantization to a budget (agents/budget_words.py reads it).
    (r"\b(?:make|get|squeeze|cram|squash)\b(?=\s+(?:\S+\s+){1,3}?(?:fits?\s+)?(?:in(?:to|side)?|within|under|below)"
     r"\s+(?:about\s+)?\d+(?:\.\d+)?\s*(?:[kmgt]i?b|gigs?|megs?)\b)", "quantize"),
    (r"\bhow\s+(?:fast|quick|quickly|speedy|slow|snappy|responsive)\b", "benchmark"),
    (r"\btok(?:en)?s?\s*(?:per|/|a)\s*(?:second|sec|s)\b", "benchmark"),
    (r"\bhow\s+(?:much|big)\b(?=.*\b(?:space|disk|storage|room|gb|gib|take|use|occupy)\b)", "disk usage"),
    (r"\bhow\s+big\s+(?:are|is)\b", "disk usage"),
    (r"\b(?:need|want|like)\s+(\S+)\s+loaded\b", r"load \1"),  # "i need X loaded" asks, "is X loaded" does not
    (r"\bkick\s+off\b", "start"),
    (r"\bhow\s+(?:do|can)\s+i\b", "help"),
    (r"\bsay\s+(?:hi|hello)\s+to\b", "chat"),
    (r"\bgood\s*bye\b", "bye"),
]]
# Words a person types that spelling correction must never turn into a command word, beyond the
# dictionary: short technical words, and words the phrase rewrites above may leave behind.
KEEP = frozenset({"memory", "ram", "gpu", "vram", "out", "offline", "online", "going", "ready", "much", "big",
                  "use", "used", "take", "takes", "anything", "everything", "right", "model's", "prompt", "text",
                  "vllm", "ollama"})


@dataclass
class _Words:
    """A line split into command words (lower-case, spelling fixed) and the model references in it."""

    words: list[str]
    raw: list[str]  # each word as typed, before spelling correction
    models: list[str]
    quoted: list[str]
    files: list[str]
    levels: list[str]
    methods: list[str]
    urls: list[str] = field(default_factory=list)  # remote OpenAI-compatible variants: URL#MODEL
    line: str = ""
    corrections: list[str] = field(default_factory=list)  # "laod -> load", as typed
    classifiers: list[str] = field(default_factory=list)  # the saved classifiers' names

    def in_order(self, refs: list[str]) -> list[str]:
        """References in the order they were typed ("A against B": B is the reference)."""
        low = self.line.lower()
        return sorted(refs, key=lambda ref: low.find(ref.lower()) % (len(low) + 1))

    def has(self, group: str) -> bool:
        return any(w in GROUPS[group] for w in self.words)

    def first(self, *groups: str) -> int:
        """Index of the first word in any of the groups (len(words) when none)."""
        return next((i for i, w in enumerate(self.words) if any(w in GROUPS[g] for g in groups)), len(self.words))


# Command words that go together: a dictionary word is corrected only when its correction completes
# such a pair with a neighbour ("start sever" -> "start server"), never on its own ("sings" stays).
PAIRS = frozenset({
    ("start", "server"), ("stop", "server"), ("server", "status"), ("list", "models"), ("load", "models"),
    ("unload", "models"), ("chat", "models"), ("benchmark", "models"), ("compare", "models"),
    ("list", "experiments"), ("list", "quantize"), ("list", "config"), ("list", "stats"), ("list", "status"),
})


def _outside_double_quotes(line: str, change: Callable[[str], str]) -> str:
    """Apply change to the parts of line that are not inside "double quotes" (prompts stay as typed)."""
    parts = re.split(r'("[^"]*")', line)
    return "".join(part if part.startswith('"') and part.endswith('"') and len(part) > 1 else change(part)
                   for part in parts)


def _distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count one: "laod"), cut off above limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _nearest(word: str) -> Optional[str]:
    """The command word within a small edit distance (1 for short words, 2 for long), if one is nearest."""
    limit = 1 if len(word) <= 5 else 2
    near = [(d, v) for v in VOCAB if abs(len(v) - len(word)) <= limit and (d := _distance(word, v, limit)) <= limit]
    # The tie-breaks (same letters, then difflib's ratio) only for the few within reach: they cost the most.
    scored = sorted((d, sorted(v) != sorted(word), -difflib.SequenceMatcher(None, word, v).ratio(), v)
                    for d, v in near)
    return scored[0][3] if scored else None


def _group_of(word: str) -> Optional[str]:
    return next((name for name, members in GROUPS.items() if word in members), None)


def _corrected(words: list[str]) -> tuple[list[str], list[str]]:
    """Words with typos fixed, and what changed ("laod -> load").

    Only a word that is no dictionary word is corrected freely; a dictionary word ("sever", "sings",
    "tokens") only when its correction forms a known command pair with a neighbour.
    """
    from agents.english_words import WORDS  # loaded on the first line typed, not at start-up

    out, corrections = list(words), []
    for i, word in enumerate(words):
        if word in VOCAB or len(word) < 3 or not word.isalpha() or word in KEEP:
            continue
        nearest = _nearest(word)
        if nearest is None:
            continue
        if word in WORDS:
            group = _group_of(nearest)
            neighbours = [_group_of(w) for w in (out[i - 1] if i else "", words[i + 1] if i + 1 < len(words) else "")]
            if not any((n, group) in PAIRS or (group, n) in PAIRS for n in neighbours if n):
                continue
        out[i] = nearest
        if word not in (nearest + "s", nearest + "es"):  # a plural ("quantizations") is read, not a typo to report
            corrections.append(f"{word} -> {nearest}")
    return out, corrections


class DecisionAgent:
    """Parses a line into a Command. `model_names` lists what is on disk (for references and choices)."""

    def __init__(
        self,
        model_names: Callable[[], Iterable[str]] = lambda: (),
        assist: Optional[Callable[[str], Optional[dict]]] = None,
        meaning: Optional["Understanding"] = None,
        classifier_names: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        self.model_names = model_names
        self.classifier_names = classifier_names  # saved classifiers: "run sentiment on ..." names one
        self.assist = assist
        self.meaning = meaning  # the intent classifier (agents/understanding); None or not ready: rules alone

    # -- public -------------------------------------------------------------------------------
    def parse(self, text: str) -> Command:
        """The Command a line asks for; UNKNOWN (with a suggestion) when nothing fits."""
        line = text.strip()
        if not line:
            return Command(Intent.UNKNOWN, text=text, suggestion="help")
        known = sorted(set(self.model_names()))
        split = self._split(line, known)
        split.classifiers = sorted(set(self.classifier_names()))
        command = self._classify(split, line)
        rule_intent = command.intent
        reading = self._by_meaning(rule_intent, split, line)
        if reading is not None and (reading.intent is not command.intent or command.question):
            # The classifier chose another intent, or the rules' exact form missed this line's slots.
            reread = self._read_slots(reading.intent, split, line, known)
            if reading.intent is not command.intent or not reread.question:
                command = reread
        _name_the_classifier(command, split, line)
        _every_model(command, split, line)
        command.text = text
        if command.intent is Intent.UNKNOWN and self.assist is not None:
            assisted = self._assisted(line)
            if assisted is not None:
                return assisted
        if command.intent is not Intent.UNKNOWN:
            # Each corrected word is a guess: the command is less certain, and says what it changed.
            command.corrections = split.corrections
            command.confidence = round(command.confidence * 0.85 ** len(split.corrections), 3)
            command.slots.yes = command.slots.yes or bool(YES.search(re.sub(r'"[^"]*"', ' ', line)))
        self._resolve_models(command, known)
        self._ask_for_missing(command, known)
        if reading is not None:
            self._weigh(command, reading, rule_intent, split, line, known)
        return command

    def _by_meaning(self, rule_intent: Intent, split: "_Words", line: str):
        """The fused reading of the rules and the intent classifier; None when the classifier is not there."""
        if self.meaning is None:
            return None
        from agents.understanding.fusion import fuse
        from agents.understanding.intent_model import masked

        ranked = self.meaning.rank(masked(line, split.models + split.levels, split.files))
        return fuse(rule_intent, ranked) if ranked else None

    def _weigh(self, command: Command, reading, rule_intent: Intent, split: "_Words", line: str,
               known: list[str]) -> None:
        """The calibrated confidence; below the threshold a question offers the likely readings instead."""
        calibrator = self.meaning.calibrator
        command.confidence = round(calibrator.confidence(reading.features(rule_intent, len(split.corrections))), 3)
        command.agreed = reading.agree
        if command.confidence >= calibrator.threshold or command.question:
            return
        options = [copy.deepcopy(command)] + [self._read_slots(intent, split, line, known)
                                              for intent in reading.alternatives]
        options = [option for option in options if option.intent is not Intent.UNKNOWN][:3]
        if len(options) < 2 and command.intent is not Intent.UNKNOWN:
            return  # nothing else is likely: the executor's own "Did you mean: ...? [y/N]" asks
        for option in options:
            option.text, option.confidence = command.text, 1.0  # chosen by the person: no longer a guess
            self._resolve_models(option, known)
            self._ask_for_missing(option, known)
        command.alternatives = options
        command.choices = [describe(option) for option in options]
        command.question = "Did you mean: " + " ".join(f"{i}) {c}" for i, c in enumerate(command.choices, 1)) + \
            "? (type a number, or say it another way)"

    def _read_slots(self, intent: Intent, s: "_Words", line: str, known: list[str]) -> Command:
        """The slots an intent takes, read from the line whatever words chose the intent."""
        reader = SLOT_READERS.get(intent)
        return reader(s, line, known) if reader is not None else Command(intent)

    def rule_reading(self, text: str) -> tuple["_Words", Command]:
        """The line's words and what the word rules alone make of it (no model names resolved, no questions)."""
        line = text.strip()
        split = self._split(line, sorted(set(self.model_names())))
        return split, self._classify(split, line)

    def masked(self, text: str) -> str:
        """The line as the intent classifier reads it: model names, quoted text, URLs and files as stand-in words."""
        from agents.understanding.intent_model import masked

        split = self._split(text.strip(), sorted(set(self.model_names())))
        return masked(text.strip(), split.models + split.levels, split.files)

    # -- splitting --------------------------------------------------------------------------------
    def _split(self, line: str, known: list[str]) -> _Words:
        line = _outside_double_quotes(line, lambda part: PHRASES[0][0].sub(PHRASES[0][1], part))
        urls = URL.findall(line)
        line = URL.sub(" ", line)
        quoted = [a or b for a, b in re.findall(r'"([^"]*)"|\'([^\']*)\'', line)]
        known_lower = {k.lower(): k for k in known}
        quoted_models = [known_lower[q.lower()] for q in quoted if q.lower() in known_lower]
        quoted = [q for q in quoted if q.lower() not in known_lower]
        rest = re.sub(r'"[^"]*"|\'[^\']*\'', " ", line)
        prompt_tail = ""
        if ":" in rest and not PORT.search(rest):
            head, tail = rest.split(":", 1)
            # "which is better: A or B" names models after the colon; "ask X: what is ..." a prompt; after
            # "batch experiment: X, prompts.txt" the colon only introduces the command's names.
            words_after = [w.lower().strip(",;.") for w in tail.split()]
            names_it = any(w in known_lower or FILE.search(w) for w in words_after)
            if not names_it and not all(w in known_lower or w in ("or", "and", "vs") for w in words_after):
                rest, prompt_tail = head, tail
        for pattern, word in PHRASES[1:]:
            rest = pattern.sub(word, rest)
        words, raw_words, models, files, levels, methods = [], [], list(quoted_models), [], [], []
        for raw in TOKEN.findall(rest):
            low = raw.lower().rstrip(".,!?;:")
            if raw == "?":
                if set(rest.strip()) <= {"?"}:  # "?" alone asks for help; at the end of a question it is punctuation
                    words.append("?")
                    raw_words.append("?")
            elif low in known_lower:
                models.append(known_lower[low])
            elif FILE.search(low):
                files.append(raw)
            elif low in METHODS:
                methods.append(METHODS[low])
            elif LEVEL.match(low) or low in BNB_LEVELS:
                levels.append(low)
            elif low.isdigit() or BITS.fullmatch(low) or re.fullmatch(r"\d{1,2}-?bits?", low) or \
                    SIZE_TOKEN.fullmatch(low):
                continue  # numbers are read by the port / bits / budget patterns
            elif self._looks_like_model(raw, low):
                models.append(raw.rstrip(".,!?;:"))
            elif low in FILLER:
                continue
            else:
                words.append(low)
                raw_words.append(raw.rstrip(".,!?;:"))
        if prompt_tail.strip():
            quoted.append(prompt_tail.strip())
        words, corrections = _corrected(words)
        return _Words(words, raw_words, models, quoted, files, levels, methods, urls, line, corrections)

    @staticmethod
    def _looks_like_model(raw: str, low: str) -> bool:
        """Names like demo-q4_k_m, stats-model-1, Qwen/Qwen2.5-0.5B: separators or letters mixed with digits."""
        if low in VOCAB or low in FILLER:
            return False
        if re.search(r"[-_./:]", low) and re.search(r"[a-z0-9]", low):
            return not re.fullmatch(r"\d+(?:\.\d+)?", low) and not _hyphenated_words(low)
        return bool(re.search(r"[a-z]", low) and re.search(r"\d", low))

    # -- classification -----------------------------------------------------------------------------
    def _classify(self, s: _Words, line: str) -> Command:
        for rule in RULES:
            command = rule(s, line)
            if command is not None:
                return command
        model = s.models[0] if s.models else None
        if model and not s.words:
            return Command(Intent.UNKNOWN, Slots(model=model), 0.0, suggestion=f"chat with {model}",
                           choices=[f"chat with {model}", f"show {model}"])
        closest = suggest(" ".join(s.words) or line.lower(), model)
        return Command(Intent.UNKNOWN, Slots(model=model), 0.0, suggestion=closest[0], choices=closest)

    def _assisted(self, line: str) -> Optional[Command]:
        """Ask the optional LLM; accept only a valid intent with known slot names."""
        try:
            answer = self.assist(line)
        except Exception as exc:  # the assistant is optional: its failure must not break parsing
            log.warning("LLM assist failed: %s", exc)
            return None
        if not isinstance(answer, dict) or answer.get("intent") not in Intent.__members__:
            return None
        slots = answer.get("slots") or {}
        allowed = set(Slots.__dataclass_fields__)
        if not isinstance(slots, dict) or not set(slots) <= allowed:
            return None
        try:
            return Command(Intent[answer["intent"]], Slots(**slots), 0.5, text=line)
        except TypeError:
            return None

    # -- slots ----------------------------------------------------------------------------------------
    @staticmethod
    def _resolve_models(command: Command, known: list[str]) -> None:
        """Expand a partial reference ("q4_k_m") to the one discovered model it names."""

        def resolve(ref: str) -> str:
            if ref in known or "/" in ref:
                return ref
            matches = [k for k in known if ref.lower() in k.lower()]
            return matches[0] if len(matches) == 1 else ref

        slots = command.slots
        if slots.model:
            slots.model = resolve(slots.model)
        slots.models = [resolve(m) for m in slots.models]

    @staticmethod
    def _ask_for_missing(command: Command, known: list[str]) -> None:
        """The question for the first slot the intent needs that the line left open (agents/intent_table.py)."""
        need = missing(command)
        if need is not None:
            # The parser knows only the models on disk; the executor narrows an unload's to the loaded ones.
            command.question = need.ask(command.slots)
            command.choices = known[:20] if need.choices else []


CLASSIFIER_INTENTS = frozenset({Intent.CLASSIFY_TEXT, Intent.CHECK_CLASSIFIER, Intent.TRAIN_CLASSIFIER})


def _name_the_classifier(command: Command, s: _Words, line: str) -> None:
    """A classify or check line that names one saved classifier acts on it, whatever word the form took."""
    if command.intent not in CLASSIFIER_INTENTS or command.slots.classifier in s.classifiers:
        return
    outside = re.sub(r'"[^"]*"', " ", line)  # the text to classify may say anything
    named = acted_on(outside, [c for c in s.classifiers if re.search(rf"(?<![\w.-]){re.escape(c)}(?![\w-])",
                                                                     outside, re.I)])
    if len(named) == 1 and command.intent is not Intent.TRAIN_CLASSIFIER:
        command.slots.classifier = named[0]
        command.slots.models = [m for m in command.slots.models if m != named[0]]
        if command.intent is Intent.CLASSIFY_TEXT and command.slots.texts:
            command.question = None  # it asked for the classifier, which the line named


def _hyphenated_words(low: str) -> bool:
    """English words joined by hyphens ("one-shot", "head-to-head"), or a letter and a slash ("w/"): no model name.

    Only what is not on disk gets here: a model named so is still found by its exact name.
    """
    from agents.english_words import WORDS

    if re.fullmatch(r"[a-z]{1,2}/", low):
        return True
    parts = low.split("-")
    return len(parts) > 1 and all(part.isalpha() and (part in WORDS or part in VOCAB_SET or part in FILLER)
                                  for part in parts)


def _port(line: str) -> Optional[int]:
    match = PORT.search(line)
    if match:
        return int(match.group(1))
    numbers = re.findall(r"\b(\d{4,5})\b", line)
    return int(numbers[0]) if numbers else None


def _prompt(s: _Words) -> Optional[str]:
    return s.quoted[-1] if s.quoted else None


PLAIN_NAME_VERBS = ("load", "unload", "chat", "serve", "remove", "inspect", "start", "stop")
NOT_A_NAME = frozenset({"memory", "ram", "gpu", "vram", "out", "offline", "online", "running", "going", "ready"})


def _model_slots(s: _Words, plain_names: bool = False, many: bool = False, **extra) -> Slots:
    """Model slots from the references; with plain_names, an unknown plain word ("load llama") names one;
    `many` (compare) lists the references even when there is one."""
    # Outside quantize, a bare level ("q4_k_m") is a partial model name.
    refs = s.in_order(s.models + s.levels)
    if plain_names and not refs:
        # A word typed as is that is no command word, after the verb: "load llama", "chat with mistral".
        verb = s.first(*PLAIN_NAME_VERBS)
        refs = [raw for i, (w, raw) in enumerate(zip(s.words, s.raw, strict=True))
                if i > verb and raw.lower() not in VOCAB and w not in VOCAB and raw.lower() not in NOT_A_NAME][:1]
    refs = acted_on(s.line, refs)
    many = len(refs) > 1 or many
    return Slots(model=refs[0] if refs else None, models=refs if many else [], prompt=_prompt(s), **extra)


# The output's name: "as NAME", "as a new model called NAME", "and call it NAME", "name it NAME".
AS_NAME = re.compile(r"\b(?:as\s+(?:an?\s+(?:new\s+)?(?:model\s+|copy\s+)?(?:called|named)\s+)?|(?:call|name)\s+it\s+|"
                     r"(?:renamed|copied)\s+(?:to|as)\s+|with\s+(?:the\s+)?(?:new\s+)?name\s+)"
                     r"([A-Za-z0-9][A-Za-z0-9._\-]*)", re.I)
# A comparison names no output: "as good as possible", "as far as it goes".
AS_COMPARED = re.compile(r"\bas\s+\w+\s+as\b", re.I)
YES = re.compile(r"(?:^|\s)(?:--yes|-y)\b|\byes\b|\b(?:don'?t|do\s+not|never)\s+ask\b|\bwithout\s+(?:asking|"
                 r"(?:a\s+|any\s+)?confirm\w*)|\bno\s+(?:need\s+to\s+confirm|confirm\w*|questions\s+asked)\b", re.I)


def _output_name(s: _Words, line: str) -> tuple[Optional[str], list[str]]:
    """"... as NAME": the output's name, and the model references other than it."""
    match = AS_NAME.search(AS_COMPARED.sub(" ", line))
    name = match.group(1).rstrip(".,!?;") if match else None
    return name, [m for m in s.models if m != name]


def _quantize(s: _Words, line: str) -> Optional[Command]:
    if not s.has("quantize"):
        return None
    name, refs = _output_name(s, line)
    if not refs and (s.has("list") or s.has("experiments")):
        return Command(Intent.LIST_QUANTIZATIONS)
    return _quantize_command(s, line)


def _quantize_command(s: _Words, line: str, known: Sequence[str] = ()) -> Command:
    """quantize NAME [to LEVEL | N-bit | to fit SIZE | to kld X] [METHOD] [with FILE] [with imatrix] [and fidelity]
    [as OUT] [--yes]."""
    name, refs = _output_name(s, line)
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


def _asks_fidelity(s: _Words, budget_words: str) -> bool:
    """A fidelity word beyond the budget's own ("to kld 0.02" is a budget; "... and fidelity" asks for a report)."""
    spent = sum(word in GROUPS["fidelity"] for word in re.findall(r"[\w-]+", budget_words.lower()))
    return sum(word in GROUPS["fidelity"] for word in s.words) > spent


def _acquire(s: _Words, line: str) -> Optional[Command]:
    """download ORG/NAME [LEVEL] [as NAME] · import PATH [as NAME] · login."""
    # "import" only as typed: its spelling neighbours ("port") belong to other commands.
    typed_import = any(raw.lower() in GROUPS["import"] for raw in s.raw)
    if s.has("download") or typed_import:
        return _acquire_command(Intent.DOWNLOAD_MODEL if s.has("download") else Intent.IMPORT_MODEL, s, line)
    if s.has("login") or re.search(r"\blog\s+in(?:to)?\b", line, re.I):
        return Command(Intent.LOGIN)
    return None


def _acquire_command(intent: Intent, s: _Words, line: str) -> Command:
    """download ORG/NAME / import PATH, with [LEVEL] [as NAME]."""
    name, refs = _output_name(s, line)
    refs = refs or [f for f in s.files if f != name]  # a file to import: x.gguf
    return Command(intent, Slots(model=refs[0] if refs else None, level=s.levels[0] if s.levels else None, name=name))


def _embed(s: _Words, line: str) -> Optional[Command]:
    """embed NAME "text" ["text" ...]: every quoted text is embedded."""
    # Only a line that starts with the verb ("embed ...", "show embeddings ..."): other commands may
    # mention embeddings ("... classifier on embeddings of NAME") and keep their own meaning.
    verb = next((w for w in s.words if w not in GROUPS["list"]), None)
    if verb not in GROUPS["embed"]:
        return None
    slots = _model_slots(s)
    return Command(Intent.EMBED_TEXT, Slots(model=slots.model, prompt=slots.prompt, texts=list(s.quoted)))


def _simple(intent: Intent, *groups: str, alone: bool = False) -> Callable[[_Words, str], Optional[Command]]:
    def rule(s: _Words, line: str) -> Optional[Command]:
        if any(s.has(g) for g in groups) and (not alone or set(s.words) <= set().union(*(GROUPS[g] for g in groups))):
            return Command(intent)
        return None
    return rule


def _exit(s: _Words, line: str) -> Optional[Command]:
    if s.words and s.words[0] in GROUPS["exit"] and len(s.words) <= 2 and not s.models:
        return Command(Intent.EXIT)
    return None


def _help(s: _Words, line: str) -> Optional[Command]:
    if s.has("help") or re.search(r"\bwhat can (you|i) do\b", line.lower()):
        return Command(Intent.SHOW_HELP)
    return None


def _experiment(s: _Words, line: str) -> Optional[Command]:
    """The experiments, one intent each: agreement, fidelity, benchmark, compare, batch, conversation, one prompt."""
    file = s.files[0] if s.files else None
    if s.has("agreement"):
        refs = s.in_order(s.models + s.levels) + s.urls
        return Command(Intent.AGREEMENT_REPORT, Slots(model=refs[0] if refs else None, models=refs, file=file))
    if s.has("fidelity"):  # before compare: "fidelity of A against B" names B as the reference
        return Command(Intent.FIDELITY_REPORT, _model_slots(s, file=file))
    if s.has("benchmark") and not s.has("compare"):  # "benchmark A and B" measures both, no fidelity
        return Command(Intent.BENCHMARK_MODELS, _model_slots(s))
    # "better", "best", "difference" compare only between models: "best wishes" is no comparison.
    explicit = set(s.words) & {"compare", "comparison", "versus", "vs", "side-by-side"}
    if (s.has("compare") and (explicit or len(s.models) + len(s.levels) >= 2)) or \
            (len(s.models) >= 2 and " and " in f" {line.lower()} " and not s.has("load")):
        return Command(Intent.COMPARE_MODELS, _model_slots(s, many=True, file=file))
    if s.has("benchmark"):
        return Command(Intent.BENCHMARK_MODELS, _model_slots(s))
    if s.has("experiments") and not s.models and (s.has("list") or len(s.words) <= 2):
        return Command(Intent.LIST_EXPERIMENTS)
    if s.has("experiment") or (s.has("batch") and s.files) or s.has("conversation"):
        intent = Intent.CONVERSATION_EXPERIMENT if s.has("conversation") else \
            Intent.BATCH_EXPERIMENT if s.has("batch") or s.files else Intent.EXPERIMENT_WITH_MODEL
        return Command(intent, _model_slots(s, file=file))
    return None


def _server(s: _Words, line: str) -> Optional[Command]:
    start, stop = s.first("start"), s.first("stop")
    if s.has("stop") and stop <= start:
        if s.models and not s.has("server"):  # "stop X", "shut down X", "stop serving X": that model
            return Command(Intent.UNLOAD_MODEL_API, _model_slots(s))
        if s.has("server") or set(s.words) <= GROUPS["stop"] | GROUPS["status"] | GROUPS["serve"]:
            return Command(Intent.STOP_API_SERVER)
    if s.has("start") and (s.has("server") or not s.models) and not s.has("chat"):
        if s.has("server") or set(s.words) <= GROUPS["start"] | GROUPS["serve"]:
            return Command(Intent.START_API_SERVER, Slots(port=_port(line)))
    if s.has("serve") and not s.models and not s.has("status"):
        return Command(Intent.START_API_SERVER, Slots(port=_port(line)))
    return None


def _status(s: _Words, line: str) -> Optional[Command]:
    words = set(s.words)
    if s.models:
        # "is X loaded?", "is X running": the status answers it.
        if words & {"loaded", "running", "served", "serving"} and words <= GROUPS["status"] | GROUPS["list"]:
            return Command(Intent.SHOW_API_STATUS, Slots(model=s.models[0]))
        return None
    if "status" in words or "health" in words or ("loaded" in words and s.has("models") | s.has("list")):
        return Command(Intent.SHOW_API_STATUS)
    if s.has("server") and (s.has("list") or not (words - GROUPS["server"] - GROUPS["status"])):
        return Command(Intent.SHOW_API_STATUS)
    if words & {"running", "served", "serving", "loaded", "alive"} and not words & GROUPS["load"]:
        return Command(Intent.SHOW_API_STATUS)  # "what's being served right now", "anything loaded?"
    if "memory" in words and s.has("list"):  # "what's in memory"
        return Command(Intent.SHOW_API_STATUS)
    return None


def _model_action(s: _Words, line: str) -> Optional[Command]:
    if s.has("unload"):
        return Command(Intent.UNLOAD_MODEL_API, _model_slots(s, plain_names=True))
    if s.has("load") or (s.has("serve") and s.models):
        return Command(Intent.LOAD_MODEL_API, _model_slots(s, plain_names=True))
    if s.has("chat"):
        return Command(Intent.CHAT_WITH_MODEL, _model_slots(s, plain_names=True))
    if s.has("start") and s.models and not s.has("server"):
        # "run X" is Ollama's chat; "fire up X", "launch X", "get X running": into memory.
        verb = s.words[s.first("start")]
        return Command(Intent.CHAT_WITH_MODEL if verb == "run" else Intent.LOAD_MODEL_API, _model_slots(s))
    return None


def _help_topic(s: _Words, line: str) -> Optional[Command]:
    """help [TOPIC]: "help quantize", "how do I compare models", "?"; the topic is kept in `kind`."""
    if not s.words or s.words[0] not in GROUPS["help"]:
        return None
    return _help_command(s.words[1:])


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
    return stem if _group_of(stem) else stem + "e"


def _help_command(words: Sequence[str]) -> Command:
    """Help on the command the words name (a noun before a verb: "how do I start the server"), else the first word."""
    rest = [w for w in words if w not in GROUPS["help"]]
    named = [HELP_NOUNS.get(w) or _group_of(w) or _group_of(_unsuffixed(w)) for w in rest]
    strong = [t for t in named if t and t not in WEAK_TOPICS]
    if strong:
        return Command(Intent.SHOW_HELP, Slots(kind=strong[0]))
    topic = next((_group_of(w) for w in rest if _group_of(w) not in (None, "models", "list")), None)
    if topic is None and rest:
        topic = rest[0]
    return Command(Intent.SHOW_HELP, Slots(kind=topic))


MANAGE = re.compile(r"^\s*(?:(?:please|pls|can you|could you|kindly)\s+)*(?P<verb>[A-Za-z]+)\s+(?:the\s+)?(?:model\s+)?"
                    r"(?P<source>\S+)\s+(?:(?:to|as|into|->|=>|called|named)\s+)?(?P<target>[A-Za-z0-9][A-Za-z0-9._/+\-]*)"
                    r"(?:\s+(?:--yes|-y|please))*\s*[.!]?\s*$", re.I)


# "which model is fastest?", "which one should I use?", "what do you recommend": a choice among the models on disk,
# none named (with names, "which is faster, A or B?" is a benchmark or a comparison of those).
RECOMMEND = re.compile(r"\b(?:which|what)\b.*\b(?:fastest|quickest|speediest|best|most\s+(?:faithful|accurate)|"
                       r"closest|should\s+(?:i|we)\s+(?:use|pick|choose|take|go\s+(?:with|for))|recommend\w*)\b|"
                       r"\brecommend\w*\b.*\b(?:models?|variants?|llms?)\b", re.I)
# ... and asks about the models ("what is the best pizza" does not).
CHOICE = re.compile(r"\b(?:which|models?|variants?|ones?|llms?|quant\w*)\b", re.I)
FOCUS_WORDS = {"speed": frozenset({"fastest", "quickest", "speediest", "faster", "speed", "throughput"}),
               "fidelity": frozenset({"faithful", "accurate", "closest", "fidelity", "quality", "kld"})}


def _recommend(s: _Words, line: str) -> Optional[Command]:
    if s.models or s.levels or s.files or s.urls or not RECOMMEND.search(line) or not CHOICE.search(line):
        return None
    return _recommend_command(s, line)


def _recommend_command(s: _Words, line: str, known: Sequence[str] = ()) -> Command:
    """What "best" means in the question: speed, fidelity, or (neither named) both."""
    typed = set(re.findall(r"[a-z]+", line.lower()))
    focus = next((kind for kind, words in FOCUS_WORDS.items() if typed & words), None)
    return Command(Intent.RECOMMEND_MODEL, Slots(kind=focus))


# "all models", "all of them", "every model", "each variant", "them all": every model the command can run on.
EVERY = re.compile(r"\b(?:all|every|each)(?:\s+of)?\s+(?:the\s+|my\s+|these\s+|those\s+|your\s+)?"
                   r"(?:them|models?|variants?|ones?|llms?|quantizations?)\b|\bthem\s+all\b|^\s*all\s*[.!?]?\s*$",
                   re.I)


def means_every(text: str) -> bool:
    """Whether a line (or an answer to "which model?") names every model: "all of them", "all models"."""
    return bool(EVERY.search(re.sub(r'"[^"]*"', " ", text)))


def _every_model(command: Command, s: _Words, line: str) -> None:
    """"benchmark all models": the intent's models are every one it can run on (chosen when it runs)."""
    if spec(command.intent).every and not s.models and means_every(line):
        command.slots.every, command.slots.model, command.slots.models = True, None, []


def _rename_or_copy(s: _Words, line: str) -> Optional[Command]:
    """rename A to B / mv A B; copy A as B / cp A B: `model` is A, `name` the new name."""
    if not (s.has("rename") or s.has("copy")):
        return None
    intent = Intent.RENAME_MODEL if s.first("rename") < s.first("copy") else Intent.COPY_MODEL
    match = MANAGE.match(line)
    if match and (_group_of(match.group("verb").lower()) in ("rename", "copy")
                  or (_nearest(match.group("verb").lower()) or "") in GROUPS["rename"] | GROUPS["copy"]):
        return Command(intent, Slots(model=match.group("source").strip("'\""), name=match.group("target")))
    return Command(intent, Slots(model=s.models[0] if s.models else None,
                                 name=s.models[1] if len(s.models) > 1 else None))


def _remove(s: _Words, line: str) -> Optional[Command]:
    if s.has("remove") and not s.has("experiments"):
        return Command(Intent.REMOVE_MODEL, _model_slots(s, plain_names=True))
    return None


def _disk(s: _Words, line: str) -> Optional[Command]:
    words = set(s.words)
    if not s.has("disk") or (words & GROUPS["quantize"] | words & GROUPS["download"]):
        return None
    if "disk" in words and not words & {"usage", "use", "used", "space", "storage", "room", "take", "takes", "free",
                                        "much", "big", "size", "sizes", "du"} and set(s.words) != {"disk"}:
        return None  # "list all models on disk" is a listing
    return Command(Intent.DISK_USAGE, Slots(model=s.models[0] if len(s.models) == 1 else None))


def _show_model(s: _Words, line: str) -> Optional[Command]:
    """show X / info about X / details of X / describe X: one model's manifest, lineage and figures."""
    refs = s.in_order(s.models + s.levels)
    if not refs and [raw.lower() for raw in s.raw] in (["show", "model"], ["describe", "model"], ["inspect", "model"]):
        return Command(Intent.SHOW_MODEL)  # "show model" (one, unnamed: asks which); "show models" lists
    if len(refs) != 1:
        return None
    words = set(s.words)
    if s.has("inspect") or (words and words <= GROUPS["list"] | GROUPS["models"] | {"tell", "know", "is"}):
        return Command(Intent.SHOW_MODEL, Slots(model=refs[0]))
    return None


def _list_models(s: _Words, line: str) -> Optional[Command]:
    words = set(s.words)
    if s.has("models") and (s.has("list") or words <= GROUPS["models"] | GROUPS["list"] | {"disk", "local", "have"}):
        return Command(Intent.LIST_MODELS)
    if words and words <= {"ls", "list"}:
        return Command(Intent.LIST_MODELS)
    return None


# Most specific first: quantize/download/experiments name their own verbs; then server, status,
# model actions, listings; statistics and config last (their words appear in other commands).
RULES: list[Callable[[_Words, str], Optional[Command]]] = [
    _exit,
    _help_topic,  # "help quantize": the topic's forms, not a quantization
    lambda s, line: classifier_command(line),  # "classifier" / "classify" lines read as typed
    lambda s, line: endpoint_command(line),  # endpoints, `use`, `export`: read as typed
    _rename_or_copy,
    _recommend,  # "which model is fastest?" asks for an answer from the history, not a benchmark
    _quantize,
    _acquire,
    _embed,
    _disk,  # before experiments and stats: "disk usage" is no statistic
    _experiment,
    _remove,
    _show_model,
    _server,
    _model_action,
    _status,
    _list_models,
    _simple(Intent.SHOW_STATISTICS, "stats"),
    _simple(Intent.SHOW_CONFIG, "config"),
    _help,
]


def _models_reader(intent: Intent, **options) -> Callable[[_Words, str, Sequence[str]], Command]:
    """A reader for an intent whose slots are model references (and the file and prompt, when typed)."""
    def read(s: _Words, line: str, known: Sequence[str]) -> Command:
        return Command(intent, _model_slots(s, file=s.files[0] if s.files else None, **options))
    return read


def _typed_reader(parse: Callable[[Intent, str, Sequence[str], _Words], Command], intent: Intent):
    """A reader for the commands read from the line as typed (endpoints, classifiers), in any word order.

    Where the line names models on disk, only those are its models: a free-order reading may otherwise take a
    plain word ("make it the default", "compared to") for one; a data file read as the model swaps back.
    """
    def read(s: _Words, line: str, known: Sequence[str]) -> Command:
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


def _agreement_command(s: _Words, line: str, known: Sequence[str]) -> Command:
    refs = s.in_order(s.models + s.levels) + s.urls
    return Command(Intent.AGREEMENT_REPORT, Slots(model=refs[0] if refs else None, models=refs,
                                                  file=s.files[0] if s.files else None))


def _renaming_reader(intent: Intent) -> Callable[[_Words, str, Sequence[str]], Command]:
    def read(s: _Words, line: str, known: Sequence[str]) -> Command:
        name, refs = _output_name(s, line)
        new = name or (s.models[1] if len(s.models) > 1 else None)
        return Command(intent, Slots(model=refs[0] if refs else None, name=new))
    return read


# When the intent classifier chose the intent, how each intent's slots are read (any other: no slots).
SLOT_READERS: dict[Intent, Callable[[_Words, str, Sequence[str]], Command]] = {
    **{intent: _models_reader(intent) for intent in (
        Intent.LOAD_MODEL_API, Intent.UNLOAD_MODEL_API, Intent.CHAT_WITH_MODEL, Intent.REMOVE_MODEL,
        Intent.SHOW_MODEL, Intent.BENCHMARK_MODELS, Intent.EXPERIMENT_WITH_MODEL, Intent.BATCH_EXPERIMENT,
        Intent.CONVERSATION_EXPERIMENT, Intent.FIDELITY_REPORT)},
    Intent.COMPARE_MODELS: _models_reader(Intent.COMPARE_MODELS, many=True),
    Intent.AGREEMENT_REPORT: _agreement_command,
    Intent.QUANTIZE_MODEL: _quantize_command,
    Intent.DOWNLOAD_MODEL: lambda s, line, known: _acquire_command(Intent.DOWNLOAD_MODEL, s, line),
    Intent.IMPORT_MODEL: lambda s, line, known: _acquire_command(Intent.IMPORT_MODEL, s, line),
    Intent.START_API_SERVER: lambda s, line, known: Command(Intent.START_API_SERVER, Slots(port=_port(line))),
    Intent.SHOW_API_STATUS: lambda s, line, known: Command(Intent.SHOW_API_STATUS,
                                                           Slots(model=s.models[0] if s.models else None)),
    Intent.DISK_USAGE: lambda s, line, known: Command(Intent.DISK_USAGE,
                                                      Slots(model=s.models[0] if len(s.models) == 1 else None)),
    Intent.RENAME_MODEL: _renaming_reader(Intent.RENAME_MODEL),
    Intent.COPY_MODEL: _renaming_reader(Intent.COPY_MODEL),
    Intent.EMBED_TEXT: lambda s, line, known: Command(Intent.EMBED_TEXT, Slots(
        model=s.models[0] if s.models else None, prompt=_prompt(s), texts=list(s.quoted))),
    Intent.SHOW_HELP: lambda s, line, known: _help_command(s.words),
    Intent.RECOMMEND_MODEL: _recommend_command,
    **{intent: _typed_reader(lambda i, line, known, s: endpoint_slots(i, line, known), intent) for intent in (
        Intent.ADD_ENDPOINT, Intent.REMOVE_ENDPOINT, Intent.LIST_ENDPOINTS, Intent.USE_MODEL, Intent.EXPORT_MODEL)},
    **{intent: _typed_reader(lambda i, line, known, s: classifier_slots(i, line, known, s.classifiers), intent)
       for intent in (
        Intent.TRAIN_CLASSIFIER, Intent.CLASSIFY_TEXT, Intent.CHECK_CLASSIFIER, Intent.LIST_CLASSIFIERS)},
}


def llm_classifier(complete: Callable[[str], str]) -> Callable[[str], Optional[dict]]:
    """An assist function from any text-completion callable: asks for JSON under a fixed schema."""
    schema = {"intent": [i.value for i in Intent], "slots": sorted(Slots.__dataclass_fields__)}

    def classify(line: str) -> Optional[dict]:
        prompt = (
            "Classify the command for a local LLM tool. Answer with one JSON object only, "
            f"shaped like {{\"intent\": one of {schema['intent']}, \"slots\": {{subset of {schema['slots']}}}}}.\n"
            f"Command: {line}\nJSON:"
        )
        reply = complete(prompt)
        match = re.search(r"\{.*\}", reply, re.S)
        if not match:
            return None
        try:
            return json.loads(match.group(0))
        except json.JSONDecodeError:
            return None

    return classify


def describe(command: Command) -> str:
    """The command in canonical words ("unload demo-q8_0"), for "Did you mean: ...?"."""
    described = description(command)
    if described is None:
        return command.text.strip() or command.intent.value.lower().replace("_", " ")
    return described


def suggest(words: str, model: Optional[str] = None, n: int = 2) -> list[str]:
    """The n commands closest to what was typed, filled with the user's model name when one was given.

    Closeness is the command words shared (a word's group counts: "evict" shares with "unload");
    with none shared, the commonest commands come first (the intent table's ranks), not a spelling accident.
    """
    typed = set(words.split())
    typed |= {g for g in map(_group_of, typed) if g}
    canonical = canonical_lines()
    templates = [t for t in canonical if "NAME" in t and "endpoint" not in t] if model else canonical

    def shared(template: str) -> int:
        plain = set(template.replace("NAME", "").split())
        return len(typed & (plain | {g for g in map(_group_of, plain) if g}))

    ranked = sorted(templates, key=lambda t: (-shared(t), templates.index(t)))
    if not model and not shared(ranked[0]):
        ranked = ["list models", "help"]  # nothing in common: where to start, not a random command
    return [t.replace("NAME", model) if model else t for t in ranked[:n]]
