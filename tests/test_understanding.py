"""The shell's understanding: the intent classifier on all-MiniLM-L6-v2 fused with the word rules.

The real classifier (built by `make setup` into .cache/understanding) reads the sentences issue 26 was
filed with; a stub ranking tests the fusion, the question and the choice of a reading, exactly.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents.decision_agent import DecisionAgent
from agents.executor_agent import Executor
from agents.intent_table import guarded
from agents.intents import Intent
from agents.understanding.fusion import RULE_KEEP, fuse
from agents.understanding.intent_model import Calibrator, masked
from cli.shell import Shell

NAMES = ["demo-q4_k_m", "demo-f16", "demo-q8_0", "demo-gptq-4bit", "demo-bnb-int8", "smol-q4_1", "smol-bnb-nf4",
         "smol-f16", "smol-hf"]


@pytest.fixture(scope="module")
def understanding():
    from agents.understanding.runtime import Understanding
    from lqmf.base.settings import load_settings

    loaded = Understanding(load_settings())
    assert loaded.wait(600), loaded.problem
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def agent(understanding):
    return DecisionAgent(lambda: NAMES, meaning=understanding)


def runs_without_asking(command) -> bool:
    """Whether the executor would act on this parse at once (no question, no "Did you mean ...? [y/N]")."""
    return not command.question and Executor.confirmation(command) is None


# The issue's table: each sentence as written, and the reading it must get (or offer in its question).
ISSUE_SENTENCES = [
    ("how close is demo-q4_k_m to the original?", Intent.FIDELITY_REPORT, {"model": "demo-q4_k_m"}),
    ("register an endpoint named cloud at https://api.example.com/v1 model gpt-4o-mini key from OPENAI_API_KEY",
     Intent.ADD_ENDPOINT, {"name": "cloud", "urls": ["https://api.example.com/v1"], "remote_model": "gpt-4o-mini",
                           "key_env": "OPENAI_API_KEY"}),
    ('what does the spam classifier say about "win a free phone"?', Intent.CLASSIFY_TEXT,
     {"classifier": "spam", "texts": ["win a free phone"]}),
    ("how would I serve demo-gptq-4bit with vllm?", Intent.EXPORT_MODEL, {"model": "demo-gptq-4bit", "kind": "vllm"}),
    ("make demo-q4_k_m the default model", Intent.USE_MODEL, {"model": "demo-q4_k_m"}),
    ("throw away demo-bnb-int8", Intent.REMOVE_MODEL, {"model": "demo-bnb-int8"}),
    ("which remote servers do I have?", Intent.LIST_ENDPOINTS, {}),
    ("what formats can you quantize to?", Intent.LIST_QUANTIZATIONS, {}),
]


@pytest.mark.parametrize("text,intent,slots", ISSUE_SENTENCES, ids=[s[0][:40] for s in ISSUE_SENTENCES])
def test_the_issues_sentences_get_their_reading_or_offer_it(agent, text, intent, slots):
    command = agent.parse(text)
    readings = command.alternatives or [command]
    chosen = [c for c in readings if c.intent is intent]
    assert chosen, (command.to_dict(), intent)
    got = chosen[0].slots.to_dict()
    assert {k: got.get(k) for k in slots} == slots, got


@pytest.mark.parametrize("text", [
    "remove all doubt", "I loaded a model yesterday and it was slow", "please close the door on your way out",
    "drop it, it's not worth the argument", "the server at the restaurant was rude", "stop worrying so much",
    "we should compare notes sometime", "kill two birds with one stone",
])
def test_a_command_word_in_a_sentence_never_changes_anything_at_once(agent, text):
    """What names no action produces none: no state-changing command runs from it without a question."""
    command = agent.parse(text)
    assert not (guarded(command.intent) and runs_without_asking(command)), command.to_dict()


def test_many_fidelity_models_are_refused_not_dropped(agent):
    command = agent.parse("fidelity of smol-q4_1 and smol-bnb-nf4 and smol-f16 against smol-hf")
    assert command.intent is Intent.FIDELITY_REPORT
    assert command.slots.models == ["smol-q4_1", "smol-bnb-nf4", "smol-f16", "smol-hf"]
    executor = SimpleNamespace(library=None)
    result = Executor.fidelity(executor, command)
    assert not result.ok and "3" not in result.message and "4 were named" in result.message
    assert "compare smol-q4_1 and smol-bnb-nf4 and smol-f16" in result.hint


def test_the_stored_classifier_has_its_calibration_and_was_measured(understanding):
    from agents.understanding.build import BUILD_STAMP
    from agents.understanding.intent_model import CLASSIFIER_FOLDER, load

    model, manifest = load(understanding.settings.understanding_dir / CLASSIFIER_FOLDER)
    assert set(model.labels) == {i.value for i in Intent}
    assert 0 < model.calibrator.threshold < 1 and len(model.calibrator.coef) == 5
    assert manifest.cv["fused_accuracy"] > manifest.cv["rules_accuracy"]
    assert (understanding.settings.understanding_dir / BUILD_STAMP).is_file()


def test_confidence_follows_agreement(agent):
    """A canonical line (rules and classifier agree) is surer than a sentence only the classifier reads."""
    sure = agent.parse("load demo-q8_0")
    assert sure.intent is Intent.LOAD_MODEL_API and sure.agreed and sure.confidence >= 0.9
    assert runs_without_asking(sure)


# -- the mechanism, on a stub ranking ---------------------------------------------------------------------------
class Stub:
    """A fixed ranking and a calibrator that is never sure (0.5): the fusion's logic, without the model."""

    def __init__(self, ranked):
        self.ranked = ranked
        self.calibrator = Calibrator((0.0, 0.0, 0.0, 0.0, 0.0), 0.0, 0.67)

    def rank(self, text):
        return self.ranked


def test_the_rules_stand_while_the_classifier_allows_them():
    ranked = [(Intent.UNKNOWN, 0.9), (Intent.REMOVE_MODEL, RULE_KEEP + 0.01), (Intent.SHOW_MODEL, 0.01)]
    assert fuse(Intent.REMOVE_MODEL, ranked).intent is Intent.REMOVE_MODEL
    vetoed = [(Intent.UNKNOWN, 0.98), (Intent.REMOVE_MODEL, RULE_KEEP - 0.01)]
    reading = fuse(Intent.REMOVE_MODEL, vetoed)
    assert (reading.intent, reading.source, reading.agree) == (Intent.UNKNOWN, "meaning", False)


def test_an_unsure_reading_asks_and_a_number_picks_one():
    stub = Stub([(Intent.LOAD_MODEL_API, 0.5), (Intent.EXPORT_MODEL, 0.45), (Intent.UNKNOWN, 0.05)])
    agent = DecisionAgent(lambda: NAMES, meaning=stub)
    command = agent.parse("how would I serve demo-q8_0 with vllm?")
    assert command.question.startswith("Did you mean: 1) load demo-q8_0 2) export demo-q8_0 for vllm")
    assert [c.intent for c in command.alternatives] == [Intent.LOAD_MODEL_API, Intent.EXPORT_MODEL]
    shell = SimpleNamespace(pending=command, agent=agent)
    chosen = Shell._answer(shell, "2")
    assert (chosen.intent, chosen.slots.model, chosen.slots.kind) == (Intent.EXPORT_MODEL, "demo-q8_0", "vllm")
    assert runs_without_asking(chosen)  # chosen by the person: no second question
    assert Shell._answer(shell, "export demo-q8_0 for vllm").intent is Intent.EXPORT_MODEL
    assert Shell._answer(shell, "7") is None


def test_masking_hides_names_texts_urls_and_files():
    line = 'ask demo-q8_0 "hello there" about https://x.example/v1 using notes.txt'
    assert masked(line, ["demo-q8_0"], ["notes.txt"]) == 'ask X "text" about url using file'


def test_without_the_model_the_rules_decide(tmp_path):
    from agents.understanding.runtime import Understanding
    from lqmf.base.settings import Settings

    missing = Understanding(Settings(understanding_dir_override=tmp_path / "none"), build=False)
    assert not missing.wait(60) and "make setup" in (missing.problem or "") + " run `make setup`"
    assert missing.rank("load X") is None and "word rules only" in missing.status()
    command = DecisionAgent(lambda: NAMES, meaning=missing).parse("load demo-q8_0")
    assert command.intent is Intent.LOAD_MODEL_API and command.confidence == 1.0
