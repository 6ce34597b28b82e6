"""The shell's classifier commands, read from the line as typed (the decision agent's first rule).

    train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] [pca 0.95]
    classify "text" with NAME
    check classifier NAME on VARIANT [and VARIANT ...] [with test.csv] [dropping unknown labels]
    list classifiers
"""

from __future__ import annotations

import difflib
import re
from typing import Optional

from agents.intents import Command, Intent, Slots

TRIGGERS = ("classifier", "classifiers", "classify")
NAME = r"[A-Za-z0-9][A-Za-z0-9_.+\-]*"
ARG = r"\"[^\"]+\"|'[^']+'|[^\s,;]+"
KEYWORDS = {"on", "with", "using", "for", "from", "named", "called", "as", "and", "a", "the", "new"}
VERBS: dict[str, tuple[str, ...]] = {
    "train": ("train", "fit", "build", "make", "create", "learn"),
    "check": ("check", "evaluate", "eval", "test", "compare", "validate"),
    "list": ("list", "show", "ls", "display", "which", "what"),
}
ALGORITHM = re.compile(r"\b(svm|svc|support[\s-]+vector(?:[\s-]+machine)?|logreg|logistic(?:[\s_-]*regression)?)\b",
                       re.I)
QUOTED = re.compile(r"\"([^\"]*)\"|'([^']*)'")
PCA = re.compile(r"\bpca\b(?:\s*[=:]?\s*(\d*\.\d+|\d+))?", re.I)
# A check's labelled file: "with|using FILE.csv", or any name after "with the file / test set / data ...".
DATA_SUFFIX = re.compile(r"\.(?:csv|jsonl|ndjson)$", re.I)
FILE_WORDS = r"(?:(?:the|a|my|this)\s+)?(?:labell?ed\s+)?(?:file|data(?:\s*set)?|test[\s_-]*(?:set|file|data)|examples)"
FILE_CLAUSE = re.compile(rf"\b(?:with|using|against|from)\s+({FILE_WORDS}\s+)?({ARG})", re.I)
DROP_UNKNOWN = re.compile(r"\b(?:drop|dropping|skip|skipping|ignore|ignoring|without)\s+(?:the\s+)?"
                          r"(?:rows\s+(?:with|of)\s+)?(?:unknown|unseen|new)\s+labels?\b", re.I)
LIST_ITEM = re.compile(r"\"[^\"]+\"|'[^']+'|[^\s,;&]+")
NOT_VARIANTS = KEYWORDS | {"variant", "variants", "model", "models", "please", "too", "both", "each", "of"}


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
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'" else value


def _after(pattern: str, line: str) -> Optional[str]:
    match = re.search(pattern, line, re.I)
    return _unquote(match.group(1)) if match else None


def _classifier_name(line: str, noun: str) -> Optional[str]:
    """NAME in 'classifier NAME', 'classifier named NAME', '... as NAME' or 'the NAME classifier' (`noun`:
    "classifier" as typed)."""
    for pattern in (rf"\b{re.escape(noun)}\s+(?:named\s+|called\s+)?({NAME})", rf"\b(?:named|called|as)\s+({NAME})",
                    rf"\b(?:the|my|our|this)\s+({NAME})\s+{re.escape(noun)}\b"):
        for match in re.finditer(pattern, line, re.I):
            if match.group(1).lower() not in KEYWORDS:
                return match.group(1).rstrip(".,;")
    return None


def _train(line: str, noun: str) -> Command:
    algorithm = ALGORITHM.search(line)
    pca = PCA.search(line)
    slots = Slots(
        classifier=_classifier_name(line, noun),
        file=_after(rf"\bon\s+({ARG})", line),
        model=_after(rf"\b(?:with|using)\s+(?:model\s+)?({ARG})", line),
        text_column=_after(rf"\btext[\s_-]*col(?:umn)?\s*[=:]?\s*({ARG})", line),
        label_column=_after(rf"\blabels?[\s_-]*col(?:umn)?\s*[=:]?\s*({ARG})", line),
        algorithm=("logreg" if algorithm.group(1).lower().startswith("log") else "svm") if algorithm else None,
        pca=(float(pca.group(1)) if pca.group(1) else 0.95) if pca else None,
    )
    command = Command(Intent.TRAIN_CLASSIFIER, slots)
    usage = "train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] [pca 0.95]"
    missing = [what for what, value in (("a name", slots.classifier), ("a labelled .csv or .jsonl file", slots.file),
                                        ("an embedding model", slots.model)) if not value]
    if missing:
        command.question = f"The classifier needs {' and '.join(missing)}: {usage}"
    return command


def _classify(line: str, quoted: list[str]) -> Command:
    # The classifier comes after the last "with": the text itself may say "with".
    rest = QUOTED.sub(" ", line)
    names = re.findall(rf"\b(?:with|using|by)\s+(?:classifier\s+)?({ARG})", rest, re.I)
    slots = Slots(classifier=_unquote(names[-1]) if names else None, prompt=quoted[0] if quoted else None,
                  texts=list(quoted))
    command = Command(Intent.CLASSIFY_TEXT, slots)
    if not slots.classifier or not quoted:
        command.question = 'Classify which text with which classifier? e.g. classify "def f(x): return x" with NAME'
    return command


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


def _check(line: str, noun: str) -> Command:
    name = _classifier_name(line, noun)
    file, rest = _data_file(DROP_UNKNOWN.sub(" ", line))
    after_on = re.search(r"\bon\s+(.+)$", rest, re.I)  # not unquoted whole: each item keeps its own quotes
    tail = after_on.group(1) if after_on else ""
    items = [_unquote(v) for v in LIST_ITEM.findall(tail) if v.lower() not in NOT_VARIANTS]
    # A labelled file where a variant belongs ("on test.csv") is the file, not a model to look for.
    in_list = [v for v in items if v and DATA_SUFFIX.search(v)]
    variants = [v for v in items if v and v not in in_list]
    files = ([file] if file else []) + in_list
    slots = Slots(classifier=name, models=variants, file=files[0] if files else None)
    command = Command(Intent.CHECK_CLASSIFIER, slots)
    shown = name or "NAME"
    form = f"check classifier {shown} on demo-q8_0 and demo-q4_k_m"
    if len(files) > 1:
        command.question = (f"One labelled file per check ({' and '.join(files)} were named): "
                            f"{form} with {_quoted(files[0])}")
    elif in_list and not variants:
        command.question = (f"{files[0]} is a labelled file, not a variant: name the variants after 'on' and the file "
                            f"after 'with', e.g. {form} with {_quoted(files[0])}")
    elif not name or not variants:
        command.question = (f"Check which classifier on which variants? e.g. {form}" if not files else
                            f"Check classifier {shown} with {files[0]} on which variants? e.g. {form} with "
                            f"{_quoted(files[0])}")
    return command


def _quoted(value: str) -> str:
    """A value as typed back in a command: quoted when it holds a space."""
    return f'"{value}"' if re.search(r"\s", value) else value


def classifier_command(line: str) -> Optional[Command]:
    """The classifier command a line asks for, or None when it names no classifier."""
    words = _words(QUOTED.sub(" ", line))
    if not any(_close(w, TRIGGERS) for w in words):
        return None
    quoted = [a or b for a, b in QUOTED.findall(line)]
    # The first command word decides: "classify 'x' with test-set" classifies, whatever the name says.
    kinds = {"classify": ("classify",), **VERBS}
    kind = next((k for w in words for k, forms in kinds.items() if _close(w, forms)), None)
    if kind is None and words in (["classifiers"], ["classifier"]):
        kind = "list"
    noun = next((w for w in words if _close(w, ("classifier",))), "classifier")
    readers = {"train": lambda: _train(line, noun), "check": lambda: _check(line, noun),
               "classify": lambda: _classify(line, quoted), "list": lambda: Command(Intent.LIST_CLASSIFIERS)}
    if kind is None:
        return Command(Intent.UNKNOWN, confidence=0.0, suggestion="list classifiers")
    return readers[kind]()
