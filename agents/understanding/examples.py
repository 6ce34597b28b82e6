"""The example sentences, one file per intent: agents/understanding/examples/<intent>.txt.

Each line is `text | slot=value; slot=value` (models=A+B lists several; yes=true a flag); # starts a
comment. They train the intent classifier and tune the rules (the dev rows). The held-out rows live in
tests/phrasings-held-out.txt, as `text | INTENT | slots`, and nothing here reads them.
`_models.txt` lists the model names the sentences use, as if they were on disk (with the remote endpoints, as the
shell lists them); `_endpoints.txt` which of them are endpoints; `_classifiers.txt` the classifiers, as if saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Optional

from agents.intents import Intent

FOLDER = "examples"
MODELS_FILE = "_models.txt"
CLASSIFIERS_FILE = "_classifiers.txt"
ENDPOINTS_FILE = "_endpoints.txt"
LIST_SLOTS = frozenset({"models", "urls", "texts"})
INT_SLOTS = frozenset({"port", "bits", "group_size"})
FLAG_SLOTS = frozenset({"yes", "imatrix", "fidelity", "every"})


@dataclass(frozen=True)
class Example:
    """One sentence, what it asks for, and the slots it names (checked exactly by the tests)."""

    text: str
    intent: Intent
    slots: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # file:line, for a miss's report


def slot_value(key: str, raw: str) -> Any:
    """A slot as the parser gives it: lists split on +, numbers and flags typed."""
    if key in LIST_SLOTS:
        return [value for value in raw.split("+") if value]  # "models=" names none
    if key in INT_SLOTS:
        return int(raw)
    if key in FLAG_SLOTS:
        return raw == "true"
    return raw


def parse_slots(text: str) -> dict[str, Any]:
    """`slot=value; slot=value` -> {slot: value}."""
    out = {}
    for pair in filter(None, (p.strip() for p in text.split(";"))):
        key, _, raw = pair.partition("=")
        out[key.strip()] = slot_value(key.strip(), raw.strip())
    return out


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def read_table(text: str, where: str, intent: Optional[Intent] = None) -> list[Example]:
    """Rows of one file: `text | slots` when the file is one intent's, else `text | INTENT | slots`."""
    rows = []
    for number, line in _lines(text):
        if intent is None:
            sentence, name, slots = (part.strip() for part in line.rsplit("|", 2))
            row_intent = Intent[name]
        else:
            sentence, _, slots = line.rpartition("|") if "|" in line else (line, "", "")  # no "|": no slots
            sentence, row_intent = sentence.strip(), intent
        rows.append(Example(sentence, row_intent, parse_slots(slots), f"{where}:{number}"))
    return rows


# Intents whose object is no model on disk: a name read there is not graded.
NOT_ON_A_MODEL = frozenset({Intent.UNKNOWN, Intent.SHOW_HELP, Intent.IMPORT_MODEL, Intent.ADD_ENDPOINT})
# Intents whose handler acts on the list of models (agents/intent_table.py models_of, fidelity's reference, the
# default chain, a check's variants, "load A and B", "unload A and B", "remove A and B", "embed X with A and B",
# "is A or B the better pick?");
# the others act on the one model.
ON_THE_LIST = frozenset({Intent.BENCHMARK_MODELS, Intent.COMPARE_MODELS, Intent.AGREEMENT_REPORT,
                         Intent.FIDELITY_REPORT, Intent.USE_MODEL, Intent.CHECK_CLASSIFIER, Intent.LOAD_MODEL_API,
                         Intent.UNLOAD_MODEL_API, Intent.REMOVE_MODEL, Intent.EMBED_TEXT, Intent.RECOMMEND_MODEL})


def right_by_names(command, row: Example) -> bool:
    """Issue 26's measure: the intent, and the models the command acts on as its handler reads them (a set; an
    endpoint to remove by its name)."""
    slots = command.slots
    if command.intent is Intent.REMOVE_ENDPOINT:
        named = {slots.name}
    elif command.intent in ON_THE_LIST:
        named = set(slots.models or [slots.model])
    else:
        named = {slots.model}
    named.discard(None)
    wanted = set(row.slots.get("models", []))
    wanted.add(row.slots.get("model"))
    if row.intent is Intent.REMOVE_ENDPOINT:
        wanted.add(row.slots.get("name"))
    wanted.discard(None)
    return command.intent is row.intent and (named == wanted or (not wanted and row.intent in NOT_ON_A_MODEL))


def examples_folder() -> Path:
    """The folder of example files, inside the installed package."""
    return Path(str(resources.files("agents.understanding") / FOLDER))


def example_file(intent: Intent) -> Path:
    """Where one intent's examples are."""
    return examples_folder() / f"{intent.value.lower()}.txt"


def dev_examples() -> list[Example]:
    """Every intent's example sentences (the dev rows), intent by intent."""
    rows: list[Example] = []
    for intent in Intent:
        path = example_file(intent)
        if path.is_file():
            rows += read_table(path.read_text(encoding="utf-8"), path.name, intent)
    return rows


def example_models() -> list[str]:
    """The model names the example sentences treat as on disk."""
    return _names(MODELS_FILE)


def example_endpoints() -> list[str]:
    """Which of those names the example sentences treat as registered remote endpoints."""
    return _names(ENDPOINTS_FILE)


def example_classifiers() -> list[str]:
    """The classifier names the example sentences treat as saved."""
    return _names(CLASSIFIERS_FILE)


def _names(file: str) -> list[str]:
    text = (examples_folder() / file).read_text(encoding="utf-8")
    return [line.strip() for _, line in _lines(text)]
