"""The shell's classifier commands: read from the line as typed (the decision agent's first rule), or in any word
order once the intent is known (classifier_slots).

    train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] [pca 0.95]
    classify "text" with NAME
    check classifier NAME on VARIANT [and VARIANT ...] [with test.csv] [dropping unknown labels]
    list classifiers
"""

from __future__ import annotations

import difflib
import re
from typing import Iterator, Optional, Sequence

from agents.described_models import named_in_place
from agents.intents import Command, Intent, Slots
from agents.references import acted_on

TRIGGERS = ("classifier", "classifiers", "classify")
NAME = r"[A-Za-z0-9][A-Za-z0-9_.+\-]*"
ARG = r"\"[^\"]+\"|'[^']+'|[^\s,;]+"
ARG_TOKEN = re.compile(ARG)
KEYWORDS = {"on", "with", "using", "for", "from", "named", "called", "as", "and", "a", "the", "new", "that", "which",
            "to", "who"}
VERBS: dict[str, tuple[str, ...]] = {
    "train": ("train", "fit", "build", "make", "create", "learn"),
    "check": ("check", "evaluate", "eval", "test", "compare", "validate"),
    "list": ("list", "show", "ls", "display", "which", "what"),
}
# "what does the spam classifier say about ...", "what would sentiment make of ...": a text to classify.
SAYS_OF = re.compile(r"\b(?:say|says|think|thinks|make|makes)\s+(?:of|about)\b", re.I)
# Words that set a variant aside ("on A instead of B"): no variant themselves.
SETS_ASIDE = frozenset({"instead", "rather", "than", "not"})
ALGORITHM = re.compile(r"\b(svm|svc|support[\s-]+vector(?:[\s-]+machine)?|logreg|logistic(?:[\s_-]*regression)?)\b",
                       re.I)
# A single quote opens and closes only outside a word: "'it's fine'" is one text, "what's" no quote.
QUOTED = re.compile(r"\"([^\"]*)\"|(?<!\w)'(.*?)'(?!\w)")
PCA = re.compile(r"\bpca\b(?:\s*[=:]?\s*(\d*\.\d+|\d+))?", re.I)
TEXT_COLUMN = re.compile(rf"\btext[\s_-]*col(?:umn)?\s*[=:]?\s*({ARG})", re.I)
LABEL_COLUMN = re.compile(rf"\blabels?[\s_-]*col(?:umn)?\s*[=:]?\s*({ARG})", re.I)
TRAIN_FILE = re.compile(rf"\bon\s+(?:the\s+)?({ARG})", re.I)
# "with M", "using model M", "using the embeddings of M".
TRAIN_MODEL = re.compile(rf"\b(?:with|using)\s+(?:the\s+)?(?:(?:vectors|embeddings?)\s+(?:of|from)\s+(?:the\s+)?)?"
                         rf"(?:model\s+)?({ARG})", re.I)
# A check's labelled file: "with|using FILE.csv", or any name after "with the file / test set / data ...".
DATA_SUFFIX = re.compile(r"\.(?:csv|jsonl|ndjson)$", re.I)
FILE_WORDS = r"(?:(?:the|a|my|this)\s+)?(?:labell?ed\s+)?(?:file|data(?:\s*set)?|test[\s_-]*(?:set|file|data)|examples)"
FILE_CLAUSE = re.compile(rf"\b(?:with|using|against|from)\s+({FILE_WORDS}\s+)?({ARG})", re.I)
DROP_UNKNOWN = re.compile(r"\b(?:drop|dropping|skip|skipping|ignore|ignoring|without)\s+(?:the\s+)?"
                          r"(?:rows\s+(?:with|of)\s+)?(?:unknown|unseen|new)\s+labels?\b", re.I)
LIST_ITEM = re.compile(r"\"[^\"]+\"|'[^']+'|[^\s,;&]+")
NOT_VARIANTS = KEYWORDS | {"variant", "variants", "model", "models", "please", "too", "both", "each", "of", "its",
                           "their", "it", "them", "embedding", "embeddings", "vectors"}
# Where the list after "on" ends: "on A, as we must validate it before switching" names A alone.
CLASSIFIER_CLAUSE = r"(?:as|because|since|so|before|after|we|i|then|which|but|while|when|if|to)\b"
CLAUSE_END = re.compile(rf"[.;!?](?:\s|$)|,\s*(?={CLASSIFIER_CLAUSE})|\s+(?:because|since|before|so\s+that|as\s+we)\b",
                        re.I)
# "on minilm-8bit's embeddings": the possessive names the variant.
POSSESSIVE = re.compile(r"(?<=\w)'s\b", re.I)
TRAIN_USAGE = "train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] [pca 0.95]"
ASK_CLASSIFY = 'Classify which text with which classifier? e.g. classify "def f(x): return x" with NAME'

# -- free word order (classifier_slots) ---------------------------------------------------------------------------
# A word of a spoken line; sentence punctuation is cut off its end afterwards ("demo-q8_0?", "cloud:").
WORD = re.compile(r"[\w~/.$][\w.+\-/:~$]*")
# Words that never name a classifier or a model: function words, the commands' own verbs, the options' words.
FILLER = frozenset(NOT_VARIANTS | set(TRIGGERS) | {
    "a", "an", "about", "according", "again", "all", "also", "any", "are", "at", "atop", "be", "by", "can", "col",
    "column", "columns", "could", "d", "data", "dataset", "did", "do", "does", "embedding", "embeddings", "examples",
    "file", "how", "hold", "holds", "i", "id", "if", "in", "is", "it", "its", "just", "label", "labels", "let", "lets",
    "like", "ll", "m", "me", "my", "now", "our", "over", "per", "perform", "performs", "s", "say", "says", "set",
    "should", "still", "t", "test", "text", "texts", "that", "these", "think", "thinks", "this", "those", "to", "top",
    "up", "via", "want", "we", "well", "what", "whether", "which", "will", "work", "works", "would", "you", "your",
    "train", "retrain", "teach", "fit", "build", "create", "make", "learn", "check", "evaluate", "eval", "validate",
    "run", "apply", "ask", "use", "try", "tag", "predict", "tell", "give", "good", "accurate", "accuracy", "score",
    "svm", "svc", "logreg", "pca", "fare", "cope", "handle", "much", "thing", "stuff", "holdout", "new",
})
# Cues that name the classifier, beyond "classifier NAME" / "the NAME classifier" (_classifier_names).
BY_CLASSIFIER = re.compile(rf"\b(?:with|using|by|via|per|through|according\s+to)\s+(?:the\s+)?(?:classifier\s+)?"
                           rf"({NAME})", re.I)
SUBJECT = re.compile(rf"\b(?:does|do|did|would|will|is|can)\s+(?:(?:the|my|our)\s+)?({NAME})\s+(?:still\s+)?"
                     r"(?:say|think|make|call|label|rate|hold|work|do|perform|cope|fare|handle|score)\b", re.I)
DETERMINERS = r"(?:(?:a|an|the|my|our|new)\s+)*"
TRAIN_OBJECT = re.compile(rf"\b(?:train|retrain|fit|teach|build|create|make)\s+{DETERMINERS}({NAME})", re.I)
CHECK_OBJECT = re.compile(rf"\b(?:check|evaluate|eval|test|validate|score)\s+{DETERMINERS}({NAME})", re.I)
CLASSIFY_OBJECT = re.compile(rf"\b(?:run|apply|ask|use|try)\s+{DETERMINERS}({NAME})", re.I)
# The embedding model under a training: "with M", "using M", "on top of M", "embeddings of M", "model M".
MODEL_CUE = re.compile(rf"\b(?:with|using|on\s+top\s+of|atop|over|embeddings?\s+(?:of|from)|model)\s+(?:the\s+)?"
                       rf"(?:model\s+)?({NAME})", re.I)


def _words(line: str) -> list[str]:
    return re.findall(r"[a-z]+", line.lower())


def _close(word: str, choices: tuple[str, ...]) -> bool:
    """The word, or a typo of it (swapped or dropped letters)."""
    if word in choices or (len(word) > 3 and any(sorted(word) == sorted(c) for c in choices)):
        return True
    return len(word) > 4 and bool(difflib.get_close_matches(word, choices, n=1, cutoff=0.85))


def _unquote(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = value.strip().rstrip(",;")
    if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value.rstrip(".!?:")  # "... using minilm-hf.": the sentence's end, no part of the name


def _after(pattern: re.Pattern, line: str) -> Optional[str]:
    match = pattern.search(line)
    return _unquote(match.group(1)) if match else None


def _classifier_names(line: str, noun: str, stop: frozenset[str] | set[str]) -> Iterator[str]:
    """Each NAME in 'classifier [named] NAME', '... as NAME', 'the NAME classifier' (`noun` as typed), not in `stop`."""
    for pattern in (rf"\b{re.escape(noun)}\s+(?:named\s+|called\s+)?({NAME})", rf"\b(?:named|called|as)\s+({NAME})",
                    rf"\b(?:the|my|our|this|a|an)\s+({NAME})\s+{re.escape(noun)}\b"):
        for match in re.finditer(pattern, line, re.I):
            name = match.group(1).rstrip(".,;")
            if match.group(1).lower() not in stop and name.lower() not in stop:
                yield name


def _classifier_name(line: str, noun: str) -> Optional[str]:
    return next(_classifier_names(line, noun, KEYWORDS), None)


def _training_options(line: str) -> dict:
    """The training's options the line sets: columns, algorithm, PCA (the same in either word order)."""
    algorithm = ALGORITHM.search(line)
    pca = PCA.search(line)
    return dict(
        text_column=_after(TEXT_COLUMN, line),
        label_column=_after(LABEL_COLUMN, line),
        algorithm=("logreg" if algorithm.group(1).lower().startswith("log") else "svm") if algorithm else None,
        pca=(float(pca.group(1)) if pca.group(1) else 0.95) if pca else None,
    )


def _asked_train(slots: Slots) -> Command:
    """A training command, with a question naming what it still needs."""
    command = Command(Intent.TRAIN_CLASSIFIER, slots)
    missing = [what for what, value in (("a name", slots.classifier), ("a labelled .csv or .jsonl file", slots.file),
                                        ("an embedding model", slots.model)) if not value]
    if missing:
        command.question = f"The classifier needs {' and '.join(missing)}: {TRAIN_USAGE}"
    return command


def _train(line: str, noun: str) -> Command:
    file, model = _after(TRAIN_FILE, line), _after(TRAIN_MODEL, line)
    if model and DATA_SUFFIX.search(model.rstrip("?.!,")) and not (file and DATA_SUFFIX.search(file)):
        # "on MODEL with data.csv": the prepositions the other way round; the suffix says which is the data.
        file, model = model.rstrip("?.!,"), file
    return _asked_train(Slots(classifier=_classifier_name(line, noun), file=file, model=model,
                              **_training_options(line)))


def _asked_classify(slots: Slots) -> Command:
    command = Command(Intent.CLASSIFY_TEXT, slots)
    if not slots.classifier or not slots.texts:
        command.question = ASK_CLASSIFY
    return command


def _quoted_texts(line: str) -> list[str]:
    return [a or b for a, b in QUOTED.findall(line)]


def _classify(line: str, quoted: list[str], noun: str) -> Command:
    # The classifier comes after the last "with": the text itself may say "with".
    rest = QUOTED.sub(" ", line)
    if not quoted and ":" in rest:  # "what does the spam classifier say about: win a free phone"
        rest, tail = rest.split(":", 1)
        quoted = [tail.strip()] if tail.strip() else []
    names = re.findall(rf"\b(?:with|using|by)\s+(?:classifier\s+)?({ARG})", rest, re.I)
    # "what does the spam classifier say about ...": the name before the noun, not the verb after it
    before = re.search(rf"\b(?:the|my|our|this|a|an)\s+({NAME})\s+{re.escape(noun)}\b", rest, re.I)
    name = _unquote(names[-1]) if names else before.group(1) if before and before.group(1).lower() not in KEYWORDS \
        else _classifier_name(rest, noun)
    return _asked_classify(Slots(classifier=name, prompt=quoted[0] if quoted else None, texts=list(quoted)))


def drops_unknown_labels(line: str) -> bool:
    """Whether a check line asks to drop the rows whose label the classifier never saw ("dropping unknown labels")."""
    return bool(DROP_UNKNOWN.search(line))


def _data_file(line: str) -> tuple[Optional[str], str]:
    """A check's labelled file ("with test.csv", "using the test set 'my data.jsonl'") and the line without it."""
    for match in FILE_CLAUSE.finditer(line):
        value = _unquote(match.group(2))
        if value and (match.group(1) or DATA_SUFFIX.search(value)):
            return value, line[:match.start()] + " " + line[match.end():]
    return None, line


def _asked_check(name: Optional[str], variants: list[str], files: list[str], in_list: list[str]) -> Command:
    """A check command, with a question when it lacks something (`in_list`: files typed where variants belong)."""
    slots = Slots(classifier=name, models=variants, file=files[0] if files else None)
    command = Command(Intent.CHECK_CLASSIFIER, slots)
    command.question = _check_question(name, variants, files, in_list)
    return command


def _check_question(name: Optional[str], variants: list[str], files: list[str], in_list: list[str]) -> Optional[str]:
    """What a check must still be told, or None."""
    shown = name or "NAME"
    form = f"check classifier {shown} on demo-q8_0 and demo-q4_k_m"
    if len(files) > 1:
        return f"One labelled file per check ({' and '.join(files)} were named): {form} with {_quoted(files[0])}"
    if in_list and not variants:
        return (f"{files[0]} is a labelled file, not a variant: name the variants after 'on' and the file "
                f"after 'with', e.g. {form} with {_quoted(files[0])}")
    if not name or not variants:
        return (f"Check which classifier on which variants? e.g. {form}" if not files else
                f"Check classifier {shown} with {files[0]} on which variants? e.g. {form} with {_quoted(files[0])}")
    return None


def _check(line: str, noun: str) -> Command:
    name = _classifier_name(line, noun)
    file, rest = _data_file(DROP_UNKNOWN.sub(" ", line))
    # "on A, B", "on the embeddings of A": not unquoted whole, each item keeps its own quotes.
    after_on = re.search(r"\bon\s+(?:the\s+)?(?:(?:vectors|embeddings?)\s+(?:of|from)\s+)?(.+)$", rest, re.I)
    tail = CLAUSE_END.split(after_on.group(1), 1)[0] if after_on else ""
    items = [_unquote(v) for v in LIST_ITEM.findall(POSSESSIVE.sub("", tail)) if v.lower() not in NOT_VARIANTS]
    # A labelled file where a variant belongs ("on test.csv") is the file, not a model to look for.
    in_list = [v for v in items if v and DATA_SUFFIX.search(v)]
    variants = [v for v in items if v and v not in in_list]
    if not variants and after_on and re.match(r"(?:its|their)\b", tail, re.I):
        # "after swapping to minilm-8bit, check ... on its embeddings": the model named before
        before = rest[:after_on.start()]
        variants = [w for w in words_of(before) if looks_like_model(w) and w != name and not DATA_SUFFIX.search(w)]
    return _asked_check(name, variants, ([file] if file else []) + in_list, in_list)


def _quoted(value: str) -> str:
    """A value as typed back in a command: quoted when it holds a space."""
    return f'"{value}"' if re.search(r"\s", value) else value


def classifier_command(line: str) -> Optional[Command]:
    """The classifier command a line asks for, or None when it names no classifier."""
    words = _words(QUOTED.sub(" ", line))
    if not any(_close(w, TRIGGERS) for w in words):
        return None
    quoted = _quoted_texts(line)
    # The first command word decides: "classify 'x' with test-set" classifies, whatever the name says.
    kinds = {"classify": ("classify",), **VERBS}
    kind = "classify" if SAYS_OF.search(line) and (quoted or ":" in line) else \
        next((k for w in words for k, forms in kinds.items() if _close(w, forms)), None)
    if kind is None and words in (["classifiers"], ["classifier"]):
        kind = "list"
    noun = next((w for w in words if _close(w, ("classifier",))), "classifier")
    readers = {"train": lambda: _train(line, noun), "check": lambda: _check(line, noun),
               "classify": lambda: _classify(line, quoted, noun), "list": lambda: Command(Intent.LIST_CLASSIFIERS)}
    if kind is None:
        return Command(Intent.UNKNOWN, confidence=0.0, suggestion="list classifiers")
    return readers[kind]()


# -- free word order ----------------------------------------------------------------------------------------------


def words_of(text: str) -> list[str]:
    """The words of a line, sentence punctuation cut off their ends."""
    return [word for word in (w.rstrip(".,;:!?") for w in WORD.findall(text)) if word]


def resolve_model(word: str, known: Sequence[str]) -> Optional[str]:
    """The model on disk a word names: the same name, or the only name that contains it ("q8_0" -> demo-q8_0).

    Only a word that looks like a piece of a name is matched in part: "chat" in "every single chat" is no
    reference to chat-helper-v2.
    """
    low = word.lower()
    exact = [k for k in known if k.lower() == low]
    partial = [k for k in known if low in k.lower()] if looks_like_model(word) else []
    return exact[0] if exact else partial[0] if len(partial) == 1 else None


def looks_like_model(word: str) -> bool:
    """Names like demo-q4_k_m, Qwen/Qwen2.5-0.5B, phi3: letters with separators or digits (plain words are not)."""
    return bool(re.search(r"[A-Za-z]", word) and re.search(r"[-_./:\d]", word))


def named_words(text: str, filler: frozenset[str]) -> list[str]:
    """The words of a line that may name something: no filler, no number, no $VARIABLE."""
    return [w for w in words_of(text) if w.lower() not in filler and not re.fullmatch(r"[\d.]+|\$.*", w)]


def _cued(text: str, known: Sequence[str], *cues: re.Pattern) -> list[str]:
    """The names the line's cues give a classifier, strongest first; a model on disk is never one."""
    found = [*_classifier_names(text, "classifier", FILLER),
             *(m.group(1).rstrip(".") for cue in cues for m in cue.finditer(text))]
    on_disk = {k.lower() for k in known}
    return [n for n in found if n.lower() not in FILLER and n.lower() not in on_disk]


def _pick_classifier(cued: list[str], words: list[str], known: Sequence[str], classifiers: Sequence[str],
                     new: bool = False) -> Optional[str]:
    """An existing classifier the line mentions or its cue (the cue first when `new`), else a lone leftover word."""
    listed = {c.lower(): c for c in classifiers}
    mentioned = [listed[w.lower()] for w in [*cued, *words] if w.lower() in listed]
    ranked = [*cued, *mentioned] if new else [*mentioned, *cued]
    if ranked:
        return ranked[0]
    left = [w for w in words if not looks_like_model(w) and not resolve_model(w, known)]
    return left[0] if len(left) == 1 and not listed else None


def _data_files(line: str) -> tuple[list[str], str]:
    """Every labelled file a line names (after "with/using/from ...", or by its suffix) and the line without them."""
    files, rest = [], line
    while (found := _data_file(rest))[0]:
        file, rest = found
        files.append(file)

    def take(match: re.Match) -> str:
        value = _unquote(match.group(0).rstrip(".,;:!?"))
        if value and DATA_SUFFIX.search(value):
            files.append(value)
            return " "
        return match.group(0)

    return files, ARG_TOKEN.sub(take, rest).replace('"', " ").replace("'", " ")


def _without_options(line: str) -> str:
    """The line without the training options' clauses (their words are no names)."""
    for pattern in (TEXT_COLUMN, LABEL_COLUMN, ALGORITHM, PCA):
        line = pattern.sub(" ", line)
    return line


def _embedding_model(text: str, words: list[str], known: Sequence[str], name: Optional[str]) -> Optional[str]:
    """The training's embedding model: one on disk the line names, else its cue's, else a model-like word."""
    others = [w for w in words if w != name]
    on_disk = [ref for w in others if (ref := resolve_model(w, known))]
    cued = [m.group(1).rstrip(".") for m in MODEL_CUE.finditer(text)
            if m.group(1).lower() not in FILLER and m.group(1).rstrip(".") != name]
    shaped = [w for w in others if looks_like_model(w)]
    return next(iter(on_disk + cued + shaped), None)


def _train_free(line: str, known: Sequence[str], classifiers: Sequence[str]) -> Command:
    files, rest = _data_files(line)
    rest = _without_options(rest)
    words = named_words(rest, FILLER)
    name = _pick_classifier(_cued(rest, known, TRAIN_OBJECT), words, known, classifiers, new=True)
    return _asked_train(Slots(classifier=name, file=files[0] if files else None,
                              model=_embedding_model(rest, words, known, name), **_training_options(line)))


def _variants(text: str, name: Optional[str], known: Sequence[str]) -> list[str]:
    """A check's variants: the models on disk or model-like words the line names, and any word after "on"."""
    words = words_of(text)
    on = next((i for i, w in enumerate(words) if w.lower() == "on"), len(words))
    out: list[str] = []
    for i, word in enumerate(words):
        if word.lower() in FILLER or word.lower() in SETS_ASIDE or word == name:
            continue
        ref = resolve_model(word, known)
        if (ref or looks_like_model(word) or i > on) and (ref or word) not in out:
            out.append(ref or word)
    return out


def _check_free(line: str, known: Sequence[str], classifiers: Sequence[str]) -> Command:
    files, rest = _data_files(DROP_UNKNOWN.sub(" ", line))
    name = _pick_classifier(_cued(rest, known, CHECK_OBJECT, SUBJECT), named_words(rest, FILLER), known, classifiers)
    return _asked_check(name, acted_on(rest, _variants(rest, name, known)), files, [])


def _classify_free(line: str, known: Sequence[str], classifiers: Sequence[str]) -> Command:
    texts, rest = _quoted_texts(line), QUOTED.sub(" ", line)
    if not texts and ":" in rest:  # "classify with spam: win a free phone": the text follows the colon
        rest, tail = rest.split(":", 1)
        texts = [tail.strip()] if tail.strip() else []
    cued = _cued(rest, known, BY_CLASSIFIER, CLASSIFY_OBJECT, SUBJECT)
    name = _pick_classifier(cued, named_words(rest, FILLER), known, classifiers)
    return _asked_classify(Slots(classifier=name, prompt=texts[0] if texts else None, texts=texts))


def classifier_slots(intent: Intent, line: str, known: Sequence[str] = (), classifiers: Sequence[str] = ()) -> Command:
    """The classifier command `intent` names, its slots read from the line in any word order."""
    readers = {Intent.TRAIN_CLASSIFIER: _train_free, Intent.CHECK_CLASSIFIER: _check_free,
               Intent.CLASSIFY_TEXT: _classify_free,
               Intent.LIST_CLASSIFIERS: lambda line, known, classifiers: Command(Intent.LIST_CLASSIFIERS)}
    if intent not in readers:
        raise ValueError(f"{intent.value} is no classifier command")
    return readers[intent](named_in_place(line, known), known, classifiers)
