"""Natural language -> Command, offline: word rules with fuzzy spelling, model names resolved on disk.

The pieces: the line split into words (agents/line_words.py, spelling by agents/command_words.py), the word
rules (agents/intent_rules.py), the slots of an intent (agents/slot_reading.py); here, the parse that joins
them with the intent classifier's reading (agents/understanding/fusion.py) and resolves model references.

No API key and no model are needed. Optionally an LLM (a loaded local model or an
OpenAI-compatible endpoint) may classify what the rules cannot place; the rules always win
when they are confident.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from agents.command_words import VOCAB_SET, group_of
from agents.intent_rules import RULES
from agents.intent_table import canonical_lines, description, missing, spec
from agents.intents import Command, Intent, Slots
from agents.line_words import Words, split_line
from agents.references import acted_on, after_an_aside, after_the_story, listed_together, pointed_at
from agents.slot_reading import SLOT_READERS, YES
from agents.spoken_names import written

if TYPE_CHECKING:
    from agents.understanding.fusion import Meaning

log = logging.getLogger(__name__)

# A runbook's step before the request: "step 2b: quantize A", "3) load B" ("2b" is no model).
RUNBOOK_LABEL = re.compile(r"^\s*(?:#+\s*)?(?:step\s+[\w.]+\s*[:.)-]|\d+[a-z]?[.)])\s+", re.I)


class DecisionAgent:
    """Parses a line into a Command. `model_names` lists what is on disk (for references and choices)."""

    def __init__(
        self,
        model_names: Callable[[], Iterable[str]] = lambda: (),
        assist: Optional[Callable[[str], Optional[dict]]] = None,
        meaning: Optional[Meaning] = None,
        classifier_names: Callable[[], Iterable[str]] = lambda: (),
        endpoint_names: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        self.model_names = model_names
        self.classifier_names = classifier_names  # saved classifiers: "run sentiment on ..." names one
        self.endpoint_names = endpoint_names  # which of model_names are remote endpoints: "remove gpu-box" forgets it
        self.assist = assist
        self.meaning = meaning  # the intent classifier (agents/understanding); None or not ready: rules alone

    # -- public -------------------------------------------------------------------------------
    def parse(self, text: str) -> Command:
        """The Command a line asks for; UNKNOWN (with a suggestion) when nothing fits."""
        line = text.strip()
        if not line:
            return Command(Intent.UNKNOWN, text=text, suggestion="help")
        known = sorted(set(self.model_names()))
        # "demo q eight underscore zero": a dictated name, written as the name; "step 2b: ..." a runbook's label
        line = written(line, known + list(self.endpoint_names()) + list(self.classifier_names()))
        line = RUNBOOK_LABEL.sub("", line, count=1) or line
        told = self._after_the_story(line, known)
        if told is None and (rest := after_an_aside(line)) is not None:
            told = self.parse(rest)
            told = told if told.intent is not Intent.UNKNOWN else None
        if told is not None:
            told.text, told.exact = text, False  # a form inside a longer line is no exact form of the line
            return _forget_an_endpoint(told, set(self.endpoint_names()))  # "..., please drop that endpoint"
        split = split_line(line, known)
        split.classifiers = sorted(set(self.classifier_names()))
        # "run code-lang on this": a saved classifier's name is no model, though it looks like one
        saved = {name.lower() for name in split.classifiers}
        split.models = [m for m in split.models if m not in split.guessed or m.lower() not in saved]
        command = self._classify(split, line)
        rule_intent = command.intent
        # "HELP!!", "q!": help or exit alone is that command whatever the classifier says.
        command.exact = command.exact or _one_command_word(command, split) or _verb_and_names(command, split)
        reading = self._by_meaning(rule_intent, split, line, exact=command.exact,
                                   grounded=_grounded(command, split, known))
        if reading is not None and (reading.intent is not command.intent or command.question):
            # The classifier chose another intent, or the rules' exact form missed this line's slots.
            reread = self._read_slots(reading.intent, split, line, known)
            if reading.intent is not command.intent or not reread.question or _filled(reread) > _filled(command):
                command = reread
        _name_the_classifier(command, split, line)
        if reading is not None and _a_text_for_no_classifier(command, split, known):
            # "run "summarize this" on the qwen one": a prompt for a model, not a text for a classifier
            other = next((i for i in reading.alternatives if i not in CLASSIFIER_INTENTS), None)
            if other is not None:
                command = self._read_slots(other, split, line, known)
        elif reading is not None and (_a_quote_asking_no_label(command, split)
                                      or _leaving_something_else(command, line)):
            command = Command(Intent.UNKNOWN)
        _every_model(command, split, line)
        _one_removal_unless_listed(command, split)
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
        command = _forget_an_endpoint(command, set(self.endpoint_names()))
        self._ask_for_missing(command, known)
        if reading is not None:
            self._weigh(command, reading, rule_intent, split, line, known)
        return command

    def _after_the_story(self, line: str, known: list[str]) -> Optional[Command]:
        """ "I just loaded the llama, now let me talk to it": the request, its "it" the one model the story names;
        "I benchmarked A yesterday, but now I'd like to chat with B": the request, on the models it names."""
        told = after_the_story(line, VOCAB_SET)
        if told is None:
            return None
        story, request = told
        named = set(split_line(story, known).models) & set(known)
        if len(named) == 1 and (pointed := pointed_at(request, next(iter(named)))):
            command = self.parse(pointed)
        elif set(split_line(request, known).models) & set(known) or not named:
            # "..., but now I'd like to chat with B"; "after the migration last night ...; show me every model"
            command = self.parse(request)
        else:
            return None
        return command if command is not None and command.intent is not Intent.UNKNOWN else None

    def _by_meaning(self, rule_intent: Intent, split: Words, line: str, exact: bool = False, grounded: bool = True):
        """The fused reading of the rules and the intent classifier; None when the classifier is not there.
        An exact form of the rules stands whatever the classifier gives it; a reading whose model is no model on
        disk ("remove all doubt": "doubt") must earn more of the classifier's belief to stand."""
        if self.meaning is None:
            return None
        from agents.understanding.fusion import RULE_KEEP, UNGROUNDED_KEEP, fuse

        ranked = self.meaning.rank(_masked(line, split))
        keep = RULE_KEEP if grounded else UNGROUNDED_KEEP
        return fuse(rule_intent, ranked, keep=keep, exact=exact) if ranked else None

    def _weigh(self, command: Command, reading, rule_intent: Intent, split: Words, line: str,
               known: list[str]) -> None:
        """The calibrated confidence; below the threshold a question offers the likely readings instead."""
        calibrator = self.meaning.calibrator
        command.confidence = round(calibrator.confidence(reading.features(rule_intent, len(split.corrections))), 3)
        command.agreed = reading.agree
        if command.confidence >= calibrator.threshold or command.question or command.exact:
            return  # sure, already asking, or an exact form: nothing to offer instead
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

    def _read_slots(self, intent: Intent, s: Words, line: str, known: list[str]) -> Command:
        """The slots an intent takes, read from the line whatever words chose the intent."""
        reader = SLOT_READERS.get(intent)
        return reader(s, line, known) if reader is not None else Command(intent)

    def rule_reading(self, text: str) -> tuple[Words, Command]:
        """The line's words and what the word rules alone make of it (no model names resolved, no questions)."""
        line = text.strip()
        split = split_line(line, sorted(set(self.model_names())))
        return split, self._classify(split, line)

    def masked(self, text: str) -> str:
        """The line as the intent classifier reads it: model names, quoted text, URLs and files as stand-in words."""
        return _masked(text.strip(), split_line(text.strip(), sorted(set(self.model_names()))))

    # -- classification -----------------------------------------------------------------------------
    def _classify(self, s: Words, line: str) -> Command:
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
            if len(matches) > 1:  # "llama" is llama-3-8b-q4_k_m's first piece, only inside ollama-local's
                matches = [k for k in matches if re.search(rf"(?<![a-z0-9]){re.escape(ref.lower())}", k.lower())]
            if not matches:  # "phi3-mini", "phi3" for phi-3-mini: the same letters and digits, separators aside
                matches = [k for k in known if _letters(k).startswith(_letters(ref))] if len(_letters(ref)) > 3 else []
            return matches[0] if len(matches) == 1 else ref

        slots = command.slots
        if slots.model:
            slots.model = resolve(slots.model)
        slots.models = _once_unless_said_again([resolve(m) for m in slots.models], command.text or "")

    @staticmethod
    def _ask_for_missing(command: Command, known: list[str]) -> None:
        """The question for the first slot the intent needs that the line left open (agents/intent_table.py)."""
        need = missing(command)
        if need is not None:
            # The parser knows only the models on disk; the executor narrows an unload's to the loaded ones.
            command.question = need.ask(command.slots)
            command.choices = known[:20] if need.choices else []


CLASSIFIER_INTENTS = frozenset({Intent.CLASSIFY_TEXT, Intent.CHECK_CLASSIFIER, Intent.TRAIN_CLASSIFIER})


def _masked(line: str, split: Words) -> str:
    """What the intent classifier reads, in training and in use alike: names, texts, URLs and files as stand-ins, and
    the words the spelling fixer changed as it read them."""
    from agents.understanding.intent_model import masked

    return masked(_spelled_right(line, split.corrections), split.references(), split.files)


def _spelled_right(line: str, corrections: list[str]) -> str:
    """The line with the words the spelling fixer changed ("bnech -> bench") as it read them: the classifier never
    saw the misspelling."""
    for correction in corrections:
        typed, _, meant = correction.partition(" -> ")
        line = re.sub(rf"(?<![\w.-]){re.escape(typed)}(?![\w-])", meant, line, flags=re.I)
    return line


def _letters(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _filled(command: Command) -> int:
    """How many of the command's slots hold something: of two readings that both ask, the fuller one is kept."""
    return sum(1 for value in command.slots.to_dict().values() if value not in (None, False, [], ""))


# Actions on a model on disk: a reading of one of these whose model is a plain word is on thin ground.
ON_DISK = frozenset({Intent.REMOVE_MODEL, Intent.UNLOAD_MODEL_API, Intent.LOAD_MODEL_API, Intent.RENAME_MODEL,
                     Intent.COPY_MODEL, Intent.QUANTIZE_MODEL, Intent.USE_MODEL, Intent.SHOW_MODEL,
                     Intent.CHAT_WITH_MODEL, Intent.BENCHMARK_MODELS, Intent.TUNE_MODEL})


# Words that ask for a label though no saved classifier is named ("what category is "..."?").
CLASSIFYING = re.compile(r"\b(?:classif\w*|categor\w*|label\w*|tag|tags|class|kind\s+of\s+text|spam|sentiment|"
                         r"topics?|tone)\b", re.I)


def _a_text_for_no_classifier(command: Command, s: Words, known: list[str]) -> bool:
    """A classify reading that names no saved classifier but a model on disk: the classifier's guess is wrong."""
    on_disk = {name.lower() for name in known}
    return command.intent is Intent.CLASSIFY_TEXT and command.slots.classifier not in s.classifiers and any(
        m.lower() in on_disk and m not in s.guessed for m in s.models)


def _a_quote_asking_no_label(command: Command, s: Words) -> bool:
    """A classify reading of a line that quotes a word but names no classifier and asks for no label ('how do you
    say "remove" in German?'): the quotes fooled the classifier."""
    return command.intent is Intent.CLASSIFY_TEXT and command.slots.classifier not in s.classifiers and \
        not CLASSIFYING.search(re.sub(r'"[^"]*"', " ", s.line))


# "close the ticket", "quit my job": a leaving word with an object other than the shell.
LEAVING = re.compile(r"\b(?:close|quit|exit|leave|bye|goodbye)\b(?P<object>\s+(?:the|a|an|my|our|that|your|his|her)\s+"
                     r"(?!(?:shell|program|session|app|application|cli|lqmf|repl|terminal|window|tool|prompt)\b)\w+)?",
                     re.I)


def _leaving_something_else(command: Command, line: str) -> bool:
    """An exit reading of a line whose every leaving word has another object ("I'll close the ticket once legal
    signs off"): nothing asks to leave the shell."""
    said = list(LEAVING.finditer(line))
    return command.intent is Intent.EXIT and bool(said) and all(match.group("object") for match in said)


def _once_unless_said_again(models: list[str], line: str) -> list[str]:
    """A model named twice is one ("users hit 404s on qwen, load Qwen2.5-..."), unless its name is typed twice:
    "embed "x" with A and A" sets a model beside itself on purpose."""
    out: list[str] = []
    for model in models:
        typed = len(re.findall(rf"(?<![\w.-]){re.escape(model)}(?![\w-])", line, re.I))
        if model not in out or out.count(model) < typed:
            out.append(model)
    return out


def _one_removal_unless_listed(command: Command, s: Words) -> None:
    """A removal acts on several models only where the line lists them together ("remove A and B"): "is it possible
    to remove A? we have B now" removes A alone."""
    models = command.slots.models
    if command.intent is Intent.REMOVE_MODEL and len(models) > 1 and not listed_together(s.line, models):
        command.slots.model, command.slots.models = models[0], []


def _forget_an_endpoint(command: Command, endpoints: set[str]) -> Command:
    """ "remove gpu-box", where gpu-box is a registered endpoint: it has no files to delete, so it is forgotten; so is
    "drop that endpoint" read as an unload (an endpoint is never loaded here). The removal still asks first."""
    named = command.slots.models or [command.slots.model]
    dropped = command.intent is Intent.REMOVE_MODEL or command.intent is Intent.UNLOAD_MODEL_API and \
        re.search(r"\bendpoints?\b", command.text or "", re.I) is not None
    if not dropped or len(named) != 1 or named[0] not in endpoints:
        return command
    return Command(Intent.REMOVE_ENDPOINT, Slots(name=named[0], yes=command.slots.yes), text=command.text,
                   confidence=command.confidence, corrections=command.corrections)


def _one_command_word(command: Command, s: Words) -> bool:
    """The line is "help" or "exit" (or a word of theirs), spelled right, with punctuation at most: exact. (Other
    lone words are not: "endpoints?" and "tokens" are read better by the classifier.)"""
    return command.intent in (Intent.SHOW_HELP, Intent.EXIT) and len(s.raw) == 1 and not s.corrections and \
        re.fullmatch(r"\W*[\w-]+\W*", s.line.strip()) is not None


def _verb_and_names(command: Command, s: Words) -> bool:
    """ "cmp A B C", "rm A": one command word typed right, then models on disk and nothing else: exact. (Terse forms
    the classifier has few rows of; it once read "cmp A B C" as a quantization. A word of no command, "time A and
    B", is left to the classifier.)"""
    verb, *rest = s.line.split() or [""]
    names = {m.lower() for m in s.models if m not in s.guessed}
    return command.intent is not Intent.UNKNOWN and not s.corrections and len(s.words) == 1 and \
        verb.lower() == s.words[0] and group_of(s.words[0]) is not None and bool(rest) and \
        all(t.strip(",").lower() in names | {"and", "&"} for t in rest)


def _grounded(command: Command, s: Words, known: list[str]) -> bool:
    """Whether the rules' reading rests on what the line really names: a model on disk, or no model at all. A plain
    word the rules took for the object of an action on disk ("remove all doubt") is no ground."""
    if command.intent not in ON_DISK or not command.slots.model:
        return True
    on_disk = {name.lower() for name in known}
    return command.slots.model.lower() in on_disk or command.slots.model in s.guessed


def _name_the_classifier(command: Command, s: Words, line: str) -> None:
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


# "all models", "all of them", "every model", "each variant", "them all": every model the command can run on.
EVERY = re.compile(r"\b(?:all|every|each)(?:\s+of)?\s+(?:the\s+|my\s+|these\s+|those\s+|your\s+)?"
                   r"(?:them|models?|variants?|ones?|llms?|quantizations?)\b|\bthem\s+all\b|^\s*all\s*[.!?]?\s*$|"
                   r"\beverything\b",
                   re.I)


def means_every(text: str) -> bool:
    """Whether a line (or an answer to "which model?") names every model: "all of them", "all models"."""
    return bool(EVERY.search(re.sub(r'"[^"]*"', " ", text)))


def _every_model(command: Command, s: Words, line: str) -> None:
    """"benchmark all models": the intent's models are every one it can run on (chosen when it runs)."""
    if spec(command.intent).every and not s.models and means_every(line):
        command.slots.every, command.slots.model, command.slots.models = True, None, []


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
    typed |= {g for g in map(group_of, typed) if g}
    canonical = canonical_lines()
    templates = [t for t in canonical if "NAME" in t and "endpoint" not in t] if model else canonical

    def shared(template: str) -> int:
        plain = set(template.replace("NAME", "").split())
        return len(typed & (plain | {g for g in map(group_of, plain) if g}))

    ranked = sorted(templates, key=lambda t: (-shared(t), templates.index(t)))
    if not model and not shared(ranked[0]):
        ranked = ["list models", "help"]  # nothing in common: where to start, not a random command
    return [t.replace("NAME", model) if model else t for t in ranked[:n]]
