"""The phrasing table: how well the shell reads what people type, by the word rules alone and with the intent
classifier on all-MiniLM-L6-v2 (agents/understanding).

    .venv/bin/python -m pytest -q -s tests/test_phrasings.py     # prints the figures
    .venv/bin/python tests/test_phrasings.py [--held-out]          # the same, with the dev misses listed

Dev rows: agents/understanding/examples/<intent>.txt (the classifier trains on them, the rules are tuned on
them). Held-out rows: tests/phrasings-held-out.txt, never trained or tuned on. Its first part is the first
table's held-out quarter; its second part (after "# Written in 2026-12") was written by someone who had not
read the rules: questions, indirect requests, two names, long chatty lines and non-commands with command
words. A row is right when the intent and every slot the row names are what the parser gives.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":  # run as a script from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.decision_agent import DecisionAgent  # noqa: E402
from agents.intents import Intent  # noqa: E402
from agents.understanding.examples import (  # noqa: E402
    Example,
    dev_examples,
    example_classifiers,
    example_endpoints,
    example_models,
    read_table,
    right_by_names,
)

HELD_OUT_FILE = Path(__file__).with_name("phrasings-held-out.txt")
FRESH_FILE = Path(__file__).with_name("phrasings-fresh.txt")
SECOND_PART = "# Written in 2026-12"
KNOWN = example_models()
CLASSIFIERS = example_classifiers()
ENDPOINTS = example_endpoints()
DEV = dev_examples()
_first, _second = HELD_OUT_FILE.read_text(encoding="utf-8").split(SECOND_PART, 1)
FIRST = read_table(_first, HELD_OUT_FILE.name)
SECOND = read_table(SECOND_PART + _second, HELD_OUT_FILE.name)
HELD_OUT = FIRST + SECOND
NON_COMMANDS = [row for row in HELD_OUT if row.intent is Intent.UNKNOWN]
# Its parts, each by other writers: "# Part N" starts one.
FRESH_PARTS = [rows for part in re.split(r"(?m)^(?=# Part )", FRESH_FILE.read_text(encoding="utf-8"))
               if (rows := read_table(part, FRESH_FILE.name))]
FRESH = [row for part in FRESH_PARTS for row in part]
# Measured floors (the figures are printed; the 97% on unseen sentences is not reached yet, and the
# closing note says so): with the classifier, on rows nobody tuned for.
FIRST_TARGET = 0.96
HELD_OUT_FLOOR = 0.94  # measured 97.7% (AMD EPYC, AVX2)
NON_COMMAND_FLOOR = 0.9
FRESH_FLOOR = 0.96  # measured 97.8% (AMD EPYC, AVX2; 6,341 rows, parts 1-22)


def right(agent: DecisionAgent, row: Example) -> bool:
    command = agent.parse(row.text)
    got = command.slots.to_dict()
    return command.intent is row.intent and all(got.get(k) == v for k, v in row.slots.items())


def named_right(agent: DecisionAgent, row: Example) -> bool:
    """The issue's measure: the intent, and the models the command acts on (as a set; an endpoint by its name)."""
    return right_by_names(agent.parse(row.text), row)


def accuracy(agent: DecisionAgent, part: list[Example], grade=right) -> tuple[float, list[Example]]:
    misses = [row for row in part if not grade(agent, row)]
    return 1 - len(misses) / len(part), misses


@pytest.fixture(scope="module")
def rules():
    return DecisionAgent(lambda: KNOWN, classifier_names=lambda: CLASSIFIERS,
                         endpoint_names=lambda: ENDPOINTS)


@pytest.fixture(scope="module")
def fused():
    """Rules and the intent classifier, as the shell reads a typed line (built by `make setup`)."""
    from agents.understanding.runtime import Understanding
    from lqmf.base.settings import load_settings

    understanding = Understanding(load_settings())
    assert understanding.wait(600), understanding.problem
    yield DecisionAgent(lambda: KNOWN, meaning=understanding, classifier_names=lambda: CLASSIFIERS,
                         endpoint_names=lambda: ENDPOINTS)
    understanding.close()


def test_the_table_is_big_and_split():
    assert len(DEV) >= 750 and len(HELD_OUT) >= 250 and len(NON_COMMANDS) >= 20
    assert {row.text for row in DEV}.isdisjoint({row.text for row in HELD_OUT})
    per_intent = {intent: sum(row.intent is intent for row in DEV) for intent in Intent}
    assert min(per_intent.values()) >= 5, per_intent


def test_rules_alone_on_the_first_table(rules):
    """The word rules keep what they had on the first table's held-out quarter."""
    score, misses = accuracy(rules, FIRST)
    print(f"\nrules alone, first table held out: {score:.1%} of {len(FIRST)}")
    assert score >= FIRST_TARGET, [m.text for m in misses]


def test_the_classifier_reads_what_the_rules_miss(rules, fused):
    """Held out, with the classifier: the whole table, its first part, and its non-commands, against the rules."""
    figures = {}
    for name, part in (("held-out", HELD_OUT), ("first part", FIRST), ("second part", SECOND),
                       ("non-commands", NON_COMMANDS)):
        figures[name] = (accuracy(rules, part)[0], accuracy(fused, part)[0])
        print(f"\n{name:>13}: rules {figures[name][0]:.1%}, rules + classifier {figures[name][1]:.1%} "
              f"of {len(part)}", end="")
    assert figures["first part"][1] >= FIRST_TARGET
    assert figures["held-out"][1] >= HELD_OUT_FLOOR and figures["held-out"][1] >= figures["held-out"][0] + 0.08
    assert figures["non-commands"][1] >= NON_COMMAND_FLOOR


def test_sentences_written_from_a_brief(rules, fused):
    """Rows by writers who saw only the intents' list: the intent and the models named, as the issue grades."""
    assert len(FRESH) >= 800 and {row.text for row in DEV}.isdisjoint({row.text for row in FRESH})
    parts = [(f"part {n}", part) for n, part in enumerate(FRESH_PARTS, 1)]
    for name, part in parts + [("all", FRESH)]:
        print(f"\nfrom a brief, {name}: rules {accuracy(rules, part, named_right)[0]:.1%}, rules + classifier "
              f"{accuracy(fused, part, named_right)[0]:.1%} of {len(part)}", end="")
    score, misses = accuracy(fused, FRESH, named_right)
    assert score >= FRESH_FLOOR, [row.text for row in misses]


def test_no_sentence_that_asks_nothing_changes_anything_without_asking(fused):
    """Every non-command row of both tables: at worst a harmless reading or a question, never a state-changing
    command that runs at once (remove, unload, stop, rename, quantize, download, endpoints, use)."""
    from agents.executor_agent import Executor
    from agents.intent_table import guarded

    rows = [row for row in HELD_OUT + FRESH if row.intent is Intent.UNKNOWN]
    acting = []
    for row in rows:
        command = fused.parse(row.text)
        if guarded(command.intent) and not command.question and Executor.confirmation(command) is None:
            acting.append((row.text, command.intent.value))
    score = accuracy(fused, rows, named_right)[0]
    print(f"\nnon-commands of both tables: {score:.1%} read as asking nothing, {len(acting)} of {len(rows)} would act")
    assert len(rows) >= 150 and not acting
