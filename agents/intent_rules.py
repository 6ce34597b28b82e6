"""The word rules: which intent a split line asks for, each rule a function of the line's words.

RULES is tried in order, most specific first; the first rule that fits makes the Command, its slots read with
agents/slot_reading.py.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from agents.classifier_parse import QUOTED, VERBS, classifier_command
from agents.command_words import GROUPS, QUESTION_WORDS, VOCAB, group_of, nearest
from agents.endpoint_commands import endpoint_command
from agents.intents import Command, Intent, Slots
from agents.line_words import Words
from agents.references import acted_on, names
from agents.slot_reading import (
    acquire_command,
    help_command,
    model_slots,
    output_name,
    port_of,
    quantize_command,
    recommend_command,
)

# A model on disk spoken to by name: "hey smol-hf, what's the capital of Peru?", "demo-f16: write a haiku",
# "quick question for cloud: ...". What follows is the prompt, unless it starts with a command word ("demo-q8_0:
# benchmark it") or names another model ("A, B and C: compare them"); a question word ("X, what is ...") is a prompt.
ADDRESSED = [re.compile(pattern, re.I) for pattern in (
    r"^\s*(?:(?:hey|hi|hello|yo|ok|okay|dear)\s+)?(?P<name>[^\s,:]+)\s*[,:]\s+(?P<prompt>\S.*)$",
    r"^\s*(?:an?\s+)?(?:quick\s+)?(?:question|prompt)\s+for\s+(?P<name>[^\s,:]+)\s*[,:]\s*(?P<prompt>\S.*)$")]
BITS_SAID = re.compile(r"\b\d+[- ]?bits?\b", re.I)
# After "NAME:", a question about the model, not to it: "demo-q8_0: how fast is it?", "A: what's its lineage?"
ABOUT_IT = re.compile(r"\bits\b|\b(?:is|was|does|did|can)\s+it\b", re.I)
# A question about how the shell is used, with no model named: help ("how would I serve X with vllm?" names one, so
# it is that command's).
HOW_TO = re.compile(r"^\s*(?:how\s+(?:do|can|would|should|could)\s+(?:i|we|one|you)\b|is\s+there\s+a\s+way\s+to\b|"
                    r"what\s+does\s+(?:the\s+)?\w+(?:\s+command)?\s+(?:actually\s+)?do\b)", re.I)
HOW_TO_WORDS = frozenset({"about", "does", "do", "go", "way", "actually"})


# "ask X to explain ...", "ask the nf4 smol what ...": a chat whose prompt is the rest, whatever words it holds.
ASK = re.compile(r"^\s*(?:(?:please|pls|can\s+you|could\s+you|go)\s+)*ask\s+(?:the\s+)?(?P<name>[^\s,:]+)\s*[,:]?\s+"
                 r"(?:to\s+(?=\w)|about\s+(?=\w))?(?P<prompt>\S.*)$", re.I)


# "... and record the answer": one prompt run as a recorded experiment, not a chat.
RECORDED = re.compile(r"[,;]?\s*\b(?:and\s+)?(?:record|log|save|store)\s+(?:it|that|this|the\s+(?:answer|result|reply|"
                      r"response|output|run)s?)(?:\s+(?:please|pls|for\s+later|too))?\W*$", re.I)


def _addressed(s: Words, line: str) -> Optional[Command]:
    """A chat with the model the line speaks to, its prompt the rest of the line (an exact form); asked to record
    the answer, a recorded experiment with that prompt."""
    on_disk = {m.lower(): m for m in s.models if m not in s.guessed}
    asked = ASK.match(s.line.strip() if s.described else line)
    if asked and asked.group("name").lower() in on_disk:
        others = set(on_disk) - {asked.group("name").lower()}
        if not any(names(asked.group("prompt"), other) for other in others):
            prompt = RECORDED.sub("", asked.group("prompt")).strip()
            quoted = re.fullmatch(r'"([^"]*)"|\'([^\']*)\'', prompt)
            intent = Intent.EXPERIMENT_WITH_MODEL if RECORDED.search(asked.group("prompt")) else \
                Intent.CHAT_WITH_MODEL
            return Command(intent, Slots(model=on_disk[asked.group("name").lower()],
                                         prompt=(quoted.group(1) or quoted.group(2)) if quoted else prompt), exact=True)
    for pattern in ADDRESSED:
        match = pattern.match(line)
        if match and match.group("name").lower() in on_disk:
            prompt = match.group("prompt")
            first = re.sub(r"[^a-z]", "", prompt.split()[0].lower())
            others = set(on_disk) - {match.group("name").lower()}
            if first in VOCAB and first not in QUESTION_WORDS or any(names(prompt, o) for o in others) \
                    or ABOUT_IT.search(prompt):
                return None  # "demo-q8_0: benchmark it", "A, B and C: compare them", "A: how fast is it?"
            return Command(Intent.CHAT_WITH_MODEL, Slots(model=on_disk[match.group("name").lower()],
                                                         prompt=prompt.strip()), exact=True)
    return None


# A story about what was done or is planned ("I loaded phi-3-mini yesterday and it was slow", "we already deleted it",
# "in my thesis I plan to compare ...") asks for nothing, unless a request follows ("..., load that one", "can you
# ...", "?", "I was wondering whether ..."). On the dev rows this form matched 72 lines, every one a non-command.
NARRATIVE = re.compile(
    r"^\s*(?:(?:yesterday|earlier|last\s+\w+|this\s+morning|so|honestly|well|ok|btw|in\s+(?:my|our)\s+\w+)[, ]+)*"
    r"(?:i|we)\s+(?:already\s+|just\s+|once\s+|finally\s+|never\s+)?(?:used\s+to\s+\w+|"
    r"(?:plan|intend|am\s+planning|are\s+planning)\s+to\s+\w+|(?:(?!need\b|feed\b|speed\b|embed\b)"
    r"[a-z]+ed|ran|made|took|did|had|was|were|got|tried|saw|began|wrote|thought|knew|found|lost|spent|left|kept|"
    r"felt|went)\b)", re.I)
REQUEST = re.compile(
    r"[;,.!]\s*(?:then\s+|so\s+)?(?:please\s+)?(?:load|unload|remove|delete|drop|show|chat|compare|benchmark|quantize|"
    r"run|get|make|start|stop|set|add|register|hook|use|switch|list|tell|give|open|export|train|download|tune)\b|"
    r"\?|\b(?:can|could|would|will)\s+you\b|\bplease\b|\bpls\b|\b(?:now|so)\s+"
    r"(?:please\s+)?(?:load|unload|remove|delete|show|chat|compare|benchmark|quantize|run)\b|\bcan\s+(?:i|we)\b|"
    r"\blet'?s\b|\bi(?:\s+(?:want|need|would)|\s*'d)\b|"
    r"\bi\s+(?:was|am|'m)\s+(?:just\s+)?(?:wondering|hoping)\s+(?:whether|if|which|what|how|when|where|why)\b", re.I)
# A note, a reminder or a rule for later asks for nothing now: "note to self: never delete demo-f16"; nor does "I am
# not asking you to run anything", "I just want to say ...", or another program's command line ("tail -f LOG").
NOT_ASKED = re.compile(r"^\s*(?:note\s+to\s+self|reminder|memo|fyi|todo|to-do)\b|^\s*never\s+[a-z]+\b|"
                       r"^\s*(?:tail|grep|cd|sudo|htop|vim|nano|chmod|chown|mkdir|git|apt|apt-get|ssh|scp|journalctl|"
                       r"systemctl|nvidia-smi)\s+\S|"
                       r"\b(?:i'?m|i\s+am)\s+not\s+asking\s+(?:you\s+)?(?:to|for)\b|"
                       r"^\s*i\s+(?:just\s+)?want(?:ed)?\s+to\s+(?:say|tell\s+you|let\s+you\s+know|mention)\b", re.I)


def _narrative(s: Words, line: str) -> Optional[Command]:
    """A line that tells what happened and asks nothing: no command (an exact form)."""
    if NOT_ASKED.search(line) or NARRATIVE.search(line) and not REQUEST.search(line):
        return Command(Intent.UNKNOWN, Slots(), 0.0, exact=True, suggestion="help")
    return None


def _classifier_colon(s: Words, line: str) -> Optional[Command]:
    """A saved classifier's name, a colon, and the text ("spam: ...", "topics classifier on: ..."); "what does NAME
    say about TEXT" (exact forms)."""
    match = re.match(r"\s*(?:the\s+)?([\w.+-]+)(?:\s+(?:classifier|clf))?(?:\s+(?:on|says?|thinks?))?\s*:\s*(\S.*)$",
                     line, re.I) or re.match(
        r"\s*what\s+(?:does|would|do)\s+([\w.+-]+)\s+(?:say|think|make)\s+(?:about|of)\s*:?\s*(\S.*)$", line, re.I)
    saved = {name.lower(): name for name in s.classifiers}
    if match and match.group(1).lower() in saved:
        text = match.group(2).strip()
        return Command(Intent.CLASSIFY_TEXT, Slots(classifier=saved[match.group(1).lower()], prompt=text,
                                                   texts=[text]), exact=True)
    return _classifier_and_text(s, line, saved)


# A saved classifier asked to train, check or compare is not classifying.
NOT_CLASSIFYING = frozenset(VERBS["train"] + VERBS["check"])


def _classifier_and_text(s: Words, line: str, saved: dict[str, str]) -> Optional[Command]:
    """ 'which language does code-lang think "def f(): pass" is?': one quoted text, a saved classifier's name and
    no model, file or training/checking verb: that classifier on that text."""
    texts = [a or b for a, b in QUOTED.findall(line)]
    outside = re.findall(r"[\w.+-]+", QUOTED.sub(" ", line).lower())
    named = [saved[w] for w in outside if w in saved]
    if len(texts) != 1 or len(set(named)) != 1 or s.models or s.files or NOT_CLASSIFYING & set(outside):
        return None
    return Command(Intent.CLASSIFY_TEXT, Slots(classifier=named[0], prompt=texts[0], texts=texts))


def _quantize(s: Words, line: str) -> Optional[Command]:
    if not s.has("quantize") or _quant_is_a_noun(s):
        return None
    name, refs = output_name(s, line)
    if not refs and (s.has("list") or s.has("experiments")):
        return Command(Intent.LIST_QUANTIZATIONS)
    return quantize_command(s, line)


# A recipe said of a model on disk, with no verb: "q8_0 of minilm-hf pls", "a bnb nf4 version of demo-hf",
# "Qwen2.5-0.5B-Instruct to q6_k gguf", "nf4 smol-hf plz". The verb is the factory's.
RECIPE = r"(?:i?q\d(?:_[a-z0-9]+)*|nf4|int[48]|fp4|gptq|awq|bnb|bitsandbytes|gguf|\d+[- ]?bits?)"
RECIPE_OF = re.compile(rf"\b{RECIPE}(?:\s+{RECIPE})*\s+(?:(?:version|variant|copy|build|quant)\s+)?(?:of|from)\s+"
                       rf"(?:the\s+)?(?P<model>\S+)", re.I)
TO_RECIPE = re.compile(rf"(?P<model>\S+)\s+(?:to|into|in|as)\s+(?:an?\s+)?{RECIPE}\b", re.I)
NOT_A_RECIPE = ("benchmark", "compare", "fidelity", "load", "unload", "chat", "remove", "download", "import",
                "inspect", "experiment", "experiments", "stats", "agreement", "embed", "rename", "copy", "serve",
                "start", "stop", "status", "list", "disk", "conversation", "batch")


def _recipe(s: Words, line: str) -> Optional[Command]:
    on_disk = acted_on(s.line, [m for m in s.models if m not in s.guessed])  # "... of A, same as B": A
    if len(on_disk) != 1 or not (s.levels or s.methods or BITS_SAID.search(line)) or \
            any(s.has(group) for group in NOT_A_RECIPE):
        return None
    said = [match.group("model").strip(".,;:!?") for pattern in (RECIPE_OF, TO_RECIPE)
            for match in pattern.finditer(s.line)]
    terse = not set(s.words) - {"please", "pls", "plz", "thanks", "now", "too", "also", "as", "well"}
    if terse or any(name.lower() == on_disk[0].lower() for name in said):
        return quantize_command(s, line)
    return None


def _quant_is_a_noun(s: Words) -> bool:
    """ "the three smol quants: ...", "the q5 quant": a quantization made, named; no quantization asked for."""
    verbs = {raw.lower() for word, raw in zip(s.words, s.raw, strict=True)
             if word in GROUPS["quantize"]}
    if not verbs or not verbs <= {"quant", "quants"} or not s.models:
        return False
    named = "|".join(re.escape(ref) for ref in s.models + s.levels)
    return "quants" in verbs or re.search(rf"(?:{named})\s+quant\b", s.line, re.I) is not None


HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(?<!\.txt)(?<!\.csv)(?<!\.jsonl)(?<!\.json)")
WANTED = re.compile(r"\b(?:need|want|get|grab|fetch|bring|pull|have|like)\b", re.I)


NO_DOWNLOAD = re.compile(r"\b(?:no|not|without|don'?t|never)\s+(?:need\s+to\s+)?(?:a\s+|any\s+)?download\w*", re.I)


def _acquire(s: Words, line: str) -> Optional[Command]:
    """download ORG/NAME [LEVEL] [as NAME] · import PATH [as NAME] · login."""
    # "import" only as typed: its spelling neighbours ("port") belong to other commands.
    typed_import = any(raw.lower() in GROUPS["import"] for raw in s.raw)
    # "import ./ckpt as a local model, no download": the download is ruled out, not asked for
    download = s.has("download") and not (typed_import and NO_DOWNLOAD.search(line))
    if download or typed_import:
        return acquire_command(Intent.DOWNLOAD_MODEL if download else Intent.IMPORT_MODEL, s, line)
    # "token" alone logs in only where no model is named: "agree on the top-1 token" is fidelity's
    login = set(s.words) & GROUPS["login"]
    if (login and (login != {"token"} or not s.models)) or re.search(r"\blog\s+in(?:to)?\b", line, re.I):
        return Command(Intent.LOGIN)
    # "I need google/gemma-2-2b-it locally": a hub's ORG/NAME, not on disk, wanted with no other verb
    hub = [ref for ref in s.guessed if HUB_NAME.fullmatch(ref)]
    if hub and len(s.models) == len(hub) == 1 and WANTED.search(line) and \
            not any(s.has(group) for group in ("benchmark", "compare", "fidelity", "load", "unload", "chat", "remove",
                                               "import", "rename", "copy", "embed", "agreement", "inspect")):
        return acquire_command(Intent.DOWNLOAD_MODEL, s, line)
    return None


# "what's the embedding of hello world on the original minilm": asked for by its noun, with a model named.
EMBEDDING_OF = re.compile(r"\b(?:embedding|embeddings|vector)\s+(?:of|for)\b", re.I)


def _embed(s: Words, line: str) -> Optional[Command]:
    """embed NAME "text" ["text" ...]: every quoted text is embedded."""
    # Only a line that starts with the verb ("embed ...", "show embeddings ..."): other commands may
    # mention embeddings ("... classifier on embeddings of NAME") and keep their own meaning.
    verb = next((w for w in s.words if w not in GROUPS["list"]), None)
    if verb not in GROUPS["embed"] and not (EMBEDDING_OF.search(line) and s.models):
        return None
    # "embed this: oom killer took the server again": the verb typed first, then its text, whatever the text says.
    typed_first = (line.split() or [""])[0].lower() in GROUPS["embed"]
    return Command(Intent.EMBED_TEXT, model_slots(s, texts=list(s.quoted)), exact=typed_first and bool(s.quoted))


def _simple(intent: Intent, *groups: str, alone: bool = False) -> Callable[[Words, str], Optional[Command]]:
    def rule(s: Words, line: str) -> Optional[Command]:
        if any(s.has(g) for g in groups) and (not alone or set(s.words) <= set().union(*(GROUPS[g] for g in groups))):
            return Command(intent)
        return None
    return rule


def _exit(s: Words, line: str) -> Optional[Command]:
    if s.words and s.words[0] in GROUPS["exit"] and len(s.words) <= 2 and not s.models:
        return Command(Intent.EXIT)
    if LAST_WORD_EXIT.search(line) and not s.models:  # "peace out chat! quit": the last word asked
        return Command(Intent.EXIT, exact=True)
    return None


# A line that ends on an exit word alone, after a sentence's end: "... thanks all! quit", "done for today. exit".
LAST_WORD_EXIT = re.compile(r"[.!;]\s*(?:exit|quit|bye|goodbye)\s*[.!]*\s*$", re.I)


def _help(s: Words, line: str) -> Optional[Command]:
    if s.has("help") or re.search(r"\bwhat can (you|i) do\b", line.lower()):
        return Command(Intent.SHOW_HELP)
    return None


FIDELITY_AGREEMENT = re.compile(r"\btop[- ]?1\b|\btokens?\b|\bkl\b|\bdivergence\b|\bperplexity\b", re.I)


def _experiment(s: Words, line: str) -> Optional[Command]:
    """The experiments, one intent each: agreement, fidelity, benchmark, compare, batch, conversation, one prompt."""
    file = s.files[0] if s.files else None
    # "top-1 agreement" and "agree on the next token" are fidelity's measures; agreement is on a labelled file.
    if s.has("agreement") and not s.has("fidelity") and not FIDELITY_AGREEMENT.search(line):
        refs = s.in_order(s.models + s.levels) + s.urls
        return Command(Intent.AGREEMENT_REPORT, Slots(model=refs[0] if refs else None, models=refs, file=file))
    # before compare: "fidelity of A against B" names B as the reference
    if s.has("fidelity") or (s.has("agreement") and FIDELITY_AGREEMENT.search(line)):
        return Command(Intent.FIDELITY_REPORT, model_slots(s, file=file))
    if s.has("benchmark") and not s.has("compare"):  # "benchmark A and B" measures both, no fidelity
        return Command(Intent.BENCHMARK_MODELS, model_slots(s))
    # "better", "best", "difference" compare only between models: "best wishes" is no comparison.
    explicit = set(s.words) & {"compare", "comparison", "versus", "vs", "side-by-side"}
    # "A and B" alone is a comparison; "unload A and B", "remove A and B" are that verb's, for each.
    other_verb = any(s.has(group) for group in ("load", "unload", "remove", "chat", "stop", "inspect"))
    if (s.has("compare") and (explicit or len(s.models) + len(s.levels) >= 2)) or \
            (len(s.models) >= 2 and " and " in f" {line.lower()} " and not other_verb):
        return Command(Intent.COMPARE_MODELS, model_slots(s, many=True, file=file))
    if s.has("benchmark"):
        return Command(Intent.BENCHMARK_MODELS, model_slots(s))
    # "experiments on X" narrows the history to X; "runs" beside a model is no history ("so it runs on my phone")
    history = {raw.lower() for raw in s.raw} & {"experiments", "history", "measurements", "records"}
    if s.has("experiments") and (not s.models or (len(s.models) == 1 and history)) and \
            (s.has("list") or len(s.words) <= 2):
        return Command(Intent.LIST_EXPERIMENTS, Slots(model=s.models[0] if s.models else None))
    if s.models and not s.files and RECORDED.search(line):  # "run PROMPT on A and record it": an exact form
        return Command(Intent.EXPERIMENT_WITH_MODEL, model_slots(s), exact=True)
    if s.has("experiment") or (s.has("batch") and s.files) or s.has("conversation"):
        intent = Intent.CONVERSATION_EXPERIMENT if s.has("conversation") else \
            Intent.BATCH_EXPERIMENT if s.has("batch") or s.files else Intent.EXPERIMENT_WITH_MODEL
        return Command(intent, model_slots(s, file=file))
    return None


def _server(s: Words, line: str) -> Optional[Command]:
    start, stop = s.first("start"), s.first("stop")
    if s.has("stop") and stop <= start:
        if s.models and not s.has("server"):  # "stop X", "shut down X", "stop serving X": that model
            return Command(Intent.UNLOAD_MODEL_API, model_slots(s))
        if s.has("server") or set(s.words) <= GROUPS["stop"] | GROUPS["status"] | GROUPS["serve"]:
            return Command(Intent.STOP_API_SERVER)
    if s.has("start") and (s.has("server") or not s.models) and not s.has("chat"):
        if s.has("server") or set(s.words) <= GROUPS["start"] | GROUPS["serve"]:
            return Command(Intent.START_API_SERVER, Slots(port=port_of(line)))
    if s.has("serve") and not s.models and not s.has("status"):
        return Command(Intent.START_API_SERVER, Slots(port=port_of(line)))
    return None


def _status(s: Words, line: str) -> Optional[Command]:
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


def _model_action(s: Words, line: str) -> Optional[Command]:
    if s.has("unload"):
        return Command(Intent.UNLOAD_MODEL_API, model_slots(s, plain_names=True))
    if s.has("load") or (s.has("serve") and s.models):
        return Command(Intent.LOAD_MODEL_API, model_slots(s, plain_names=True))
    if s.has("chat"):
        return Command(Intent.CHAT_WITH_MODEL, model_slots(s, plain_names=True))
    if s.has("start") and s.models and not s.has("server"):
        # "run X" is Ollama's chat; "fire up X", "launch X", "get X running": into memory.
        verb = s.words[s.first("start")]
        return Command(Intent.CHAT_WITH_MODEL if verb == "run" else Intent.LOAD_MODEL_API, model_slots(s))
    return None


def _help_topic(s: Words, line: str) -> Optional[Command]:
    """help [TOPIC]: "help quantize", "how do I compare models", "?"; the topic is kept in `kind`."""
    if re.fullmatch(r"\s*\?+\s*", line):  # "?" or "??" alone: nothing else it could mean
        return Command(Intent.SHOW_HELP, exact=True)
    if HOW_TO.match(line) and not (s.models or s.files or s.urls):  # "how would I go about making a 4-bit one?"
        return help_command([w for w in s.words if w not in QUESTION_WORDS and w not in HOW_TO_WORDS])
    words = s.words[1:] if len(s.words) > 1 and s.words[0] in GROUPS["list"] else s.words  # "show me the help for X"
    if HELP_ON.search(line) and "help" in words:  # "let's bring up the help on quantization": exact
        command = help_command(words[words.index("help") + 1:])
        command.exact = True
        return command
    if not words or words[0] not in GROUPS["help"]:
        return None
    return help_command(words[1:])


HELP_ON = re.compile(r"\bthe\s+help\s+(?:page\s+|text\s+)?(?:on|for|about)\b", re.I)


MANAGE = re.compile(r"^\s*(?:(?:please|pls|can you|could you|kindly)\s+)*(?P<verb>[A-Za-z]+)\s+(?:the\s+)?(?:model\s+)?"
                    r"(?P<source>\S+)\s+(?:(?:to|as|into|->|=>|called|named)\s+)?(?P<target>[A-Za-z0-9][A-Za-z0-9._/+\-]*)"
                    r"(?:\s+(?:--yes|-y|please))*\s*[.!]?\s*$", re.I)
# "which model is fastest?", "which one should I use?", "what do you recommend": a choice among the models on disk,
# none named (with names, "which is faster, A or B?" is a benchmark or a comparison of those, unless the line
# asks for the recorded figures: FROM_RECORDS).
RECOMMEND = re.compile(r"\b(?:which|what)\b.*\b(?:fastest|quickest|speediest|best|most\s+(?:faithful|accurate)|"
                       r"closest|should\s+(?:i|we)\s+(?:use|pick|choose|take|go\s+(?:with|for))|recommend\w*)\b|"
                       r"\brecommend\w*\b.*\b(?:models?|variants?|llms?)\b", re.I)
# ... and asks about the models ("what is the best pizza" does not).
CHOICE = re.compile(r"\b(?:which|models?|variants?|ones?|llms?|quant\w*)\b", re.I)


# "is A or B the better pick, going by the recorded numbers?": a choice among named models, from the history.
FROM_RECORDS = re.compile(
    r"\b(?:according\s+to|going\s+by|based\s+on|judging\s+by|from|per|given)\s+(?:the\s+|our\s+|my\s+|your\s+)?"
    r"(?:recorded\s+|measured\s+|existing\s+|past\s+|saved\s+|logged\s+)?(?:numbers|measures|measurements|results|"
    r"figures|records|history|benchmarks|stats)\b|\bwhat\s+(?:you|we|i)(?:'ve|\s+have)\s+(?:already\s+)?"
    r"(?:measured|recorded|benchmarked)\b|\b(?:measures|measurements|numbers|figures|results)\s+(?:we|you|i)\s+"
    r"(?:already\s+)?(?:have|got|recorded)\b", re.I)
CHOOSE = re.compile(r"\b(?:better|best|faster|fastest|quicker|quickest|pick|choose|go\s+with|recommend\w*|"
                    r"more\s+(?:faithful|accurate)|should\s+(?:i|we)\s+use)\b", re.I)


def _recommend(s: Words, line: str) -> Optional[Command]:
    if s.models and not (s.files or s.urls) and FROM_RECORDS.search(line) and CHOOSE.search(line):
        return recommend_command(s, line)
    if s.models or s.levels or s.files or s.urls or not RECOMMEND.search(line) or not CHOICE.search(line):
        return None
    return recommend_command(s, line)


def _rename_or_copy(s: Words, line: str) -> Optional[Command]:
    """rename A to B / mv A B; copy A as B / cp A B: `model` is A, `name` the new name."""
    if not (s.has("rename") or s.has("copy")):
        return None
    on_disk = {m.lower() for m in s.models}
    if not s.has("rename") and any(m.group("model").strip(".,;:!?").lower() in on_disk for m in RECIPE_OF.finditer(
            s.line)):
        return quantize_command(s, line)  # "create an 8-bit bitsandbytes copy of X": a quantization
    intent = Intent.RENAME_MODEL if s.first("rename") < s.first("copy") else Intent.COPY_MODEL
    match = MANAGE.match(line)
    if match and (group_of(match.group("verb").lower()) in ("rename", "copy")
                  or (nearest(match.group("verb").lower()) or "") in GROUPS["rename"] | GROUPS["copy"]):
        return Command(intent, Slots(model=match.group("source").strip("'\""), name=match.group("target")))
    return Command(intent, Slots(model=s.models[0] if s.models else None,
                                 name=s.models[1] if len(s.models) > 1 else None))


# "drop A from disk", "take A off the drive": the disk's copy, not the loaded one.
FROM_DISK = re.compile(r"\b(?:from|off)\s+(?:the\s+|my\s+)?(?:disk|drive|storage|ssd)\b", re.I)


def _remove(s: Words, line: str) -> Optional[Command]:
    if (s.has("remove") or (s.has("unload") and FROM_DISK.search(line))) and not s.has("experiments"):
        return Command(Intent.REMOVE_MODEL, model_slots(s, plain_names=True))
    return None


def _disk(s: Words, line: str) -> Optional[Command]:
    words = set(s.words)
    if not s.has("disk") or (words & GROUPS["quantize"] | words & GROUPS["download"]):
        return None
    if "disk" in words and not words & {"usage", "use", "used", "space", "storage", "room", "take", "takes", "free",
                                        "much", "big", "size", "sizes", "du"} and set(s.words) != {"disk"}:
        return None  # "list all models on disk" is a listing
    return Command(Intent.DISK_USAGE, Slots(model=s.models[0] if len(s.models) == 1 else None))


def _tune(s: Words, line: str) -> Optional[Command]:
    """tune X / autotune X: one GGUF model's engine settings measured here."""
    first = s.raw[0].lower() if s.raw else ""
    if first not in ("tune", "autotune", "auto-tune") or len(s.models) > 1:
        return None
    return Command(Intent.TUNE_MODEL, Slots(model=s.models[0] if s.models else None))


def _show_model(s: Words, line: str) -> Optional[Command]:
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


# "stats per model pls, avg speed and all that": the history's statistics, whatever measures the line lists.
PER_MODEL_STATS = re.compile(r"\b(?:stats|statistics)\s+(?:per|by|for\s+each|of\s+each)\s+model\b", re.I)


def _per_model_statistics(s: Words, line: str) -> Optional[Command]:
    return Command(Intent.SHOW_STATISTICS) if PER_MODEL_STATS.search(line) and not s.models else None


def _statistics(s: Words, line: str) -> Optional[Command]:
    """show statistics [for X]: the history's counts, of one model when the line names one."""
    if not s.has("stats"):
        return None
    return Command(Intent.SHOW_STATISTICS, Slots(model=s.models[0] if len(s.models) == 1 else None))


def _list_models(s: Words, line: str) -> Optional[Command]:
    words = set(s.words)
    if s.has("models") and (s.has("list") or words <= GROUPS["models"] | GROUPS["list"] | {"disk", "local", "have"}):
        return Command(Intent.LIST_MODELS)
    if words and words <= {"ls", "list"}:
        return Command(Intent.LIST_MODELS)
    return None


# Most specific first: quantize/download/experiments name their own verbs; then server, status,
# model actions, listings; statistics and config last (their words appear in other commands).
RULES: list[Callable[[Words, str], Optional[Command]]] = [
    _exit,
    _addressed,  # "hey smol-hf, what is ...": a chat, whatever words the prompt holds
    _narrative,  # "I loaded X yesterday and it was slow": no command
    _help_topic,  # "help quantize": the topic's forms, not a quantization
    _classifier_colon,  # "spam: win a free phone": a saved classifier's name, then its text
    # "classifier" / "classify" lines read as typed (with the models they describe named: "the 8-bit minilm")
    lambda s, line: classifier_command(s.line if s.described else line),
    lambda s, line: endpoint_command(line),  # endpoints, `use`, `export`: read as typed
    _rename_or_copy,
    _recommend,  # "which model is fastest?" asks for an answer from the history, not a benchmark
    _quantize,
    _recipe,  # "q8_0 of minilm-hf pls": a quantization without the verb
    _acquire,
    _embed,
    _tune,
    _disk,  # before experiments and stats: "disk usage" is no statistic
    _per_model_statistics,  # before experiments: "stats per model, avg speed" is no benchmark
    _experiment,
    _remove,
    _show_model,
    _server,
    _model_action,
    _status,
    _list_models,
    _statistics,
    _simple(Intent.SHOW_CONFIG, "config"),
    _help,
]
