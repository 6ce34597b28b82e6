"""The shell reads a budget in a quantize line (issue 27): "quantize NAME to fit 100 MB", "... to kld 0.02".

The word rules alone, on the sentences the issue's shell part lists; the slot they fill is a phrase that the
budget's own parser (agents.quantization.budget.target) reads to the budget meant. A size that is no budget stays
out of the slot, and the executor turns an unreadable budget into an error that says what to write.
"""

from __future__ import annotations

import pytest

from agents.decision_agent import DecisionAgent
from agents.intent_table import description
from agents.intents import Intent
from agents.quantization.budget.target import KLD, RAM, SIZE, Budget, parse_budget
from agents.results import ErrorResult

KNOWN = ["smol-hf", "demo-hf", "demo-q4_k_m"]

# text -> (budget slot, the Budget it stands for, other slots it must carry)
BUDGET_LINES = {
    "quantize smol-hf to fit 100 MB": ("fit 100 MB", Budget(SIZE, 100e6), {}),
    "quantize smol-hf to fit 100MB": ("fit 100 MB", Budget(SIZE, 100e6), {}),
    "quantize smol-hf to kld 0.02": ("kld 0.02", Budget(KLD, 0.02), {}),
    "quantize smol-hf to fit 4 GB of RAM": ("fit 4 GB of RAM", Budget(RAM, 4e9), {}),
    "quantize smol-hf to fit in 4 GiB of memory": ("fit 4 GiB of RAM", Budget(RAM, 4 * 2**30), {}),
    "make smol-hf fit in 90 MB": ("fit 90 MB", Budget(SIZE, 90e6), {}),
    "shrink smol-hf to 95 MB with the best quality you can": ("fit 95 MB", Budget(SIZE, 95e6), {}),
    "quantize smol-hf so the kl divergence stays under 0.02": ("kld 0.02", Budget(KLD, 0.02), {}),
    "quantize smol-hf to fit 100 MB with imatrix": ("fit 100 MB", Budget(SIZE, 100e6), {"imatrix": True}),
    "quantize smol-hf to the best mix under 100 MB": ("fit 100 MB", Budget(SIZE, 100e6), {}),
    # More ways to say it.
    "squeeze smol-hf into 1.5GiB of ram": ("fit 1.5 GiB of RAM", Budget(RAM, 1.5 * 2**30), {}),
    "compress smol-hf below 90 megs": ("fit 90 MB", Budget(SIZE, 90e6), {}),
    "quantize smol-hf to kld 0.02.": ("kld 0.02", Budget(KLD, 0.02), {}),
    "quantize smol-hf with a KL-divergence of at most 0.005": ("kld 0.005", Budget(KLD, 0.005), {}),
    "quantize smol-hf to fit 100 MB as smol-100 --yes": ("fit 100 MB", Budget(SIZE, 100e6),
                                                         {"name": "smol-100", "yes": True}),
}

# Lines with a size (or a KLD word) that ask for no budget: the slot stays empty, the rest reads as before.
NOT_BUDGETS = {
    "quantize demo-hf to q4_k_m": {"level": "q4_k_m", "method": "gguf"},
    "quantize demo-hf to 4-bit gguf": {"bits": 4, "method": "gguf"},
    "quantize demo-hf to 4-bit gptq with group size 64": {"bits": 4, "method": "gptq", "group_size": 64},
    "quantize smol-hf (270 MB) to q4_k_m": {"level": "q4_k_m"},
    "smol-hf is 270 MB, quantize it to q8_0": {"level": "q8_0"},
    "my laptop has 8 GB of RAM, quantize smol-hf to 4-bit gguf": {"bits": 4, "method": "gguf"},
    "the laptop only has 8 gigs of ram and smol-hf in full precision just doesn't fit, so I'd like to quantize it "
    "down to 4-bit gguf so it can actually run there": {"bits": 4, "method": "gguf"},
    # A level names the recipe: a size beside it is a remark, not a second target.
    "quantize smol-hf to q4_k_m so it fits under 100 MB": {"level": "q4_k_m"},
    "quantize smol-hf to 8k": {},
    "quantize demo-hf to q4_k_m and fidelity": {"level": "q4_k_m", "fidelity": True},
}


@pytest.fixture(scope="module")
def agent() -> DecisionAgent:
    return DecisionAgent(lambda: KNOWN)


@pytest.mark.parametrize("text", list(BUDGET_LINES))
def test_a_budget_line_is_a_quantization_with_its_budget(agent, text):
    phrase, meant, others = BUDGET_LINES[text]
    command = agent.parse(text)
    assert command.intent is Intent.QUANTIZE_MODEL and command.question is None, command.to_dict()
    slots = command.slots.to_dict()
    assert slots.get("model") == "smol-hf" and slots.get("budget") == phrase, slots
    assert parse_budget(slots["budget"]) == meant  # the phrase is one the budget's own parser reads as meant
    for key, value in others.items():
        assert slots.get(key) == value, slots
    # No level, bits or second model is read out of the budget's number or unit.
    assert not {"level", "bits", "models", "fidelity"} & set(slots), slots


@pytest.mark.parametrize("text", list(NOT_BUDGETS))
def test_a_size_that_is_no_budget_stays_out_of_the_slot(agent, text):
    command = agent.parse(text)
    assert command.intent is Intent.QUANTIZE_MODEL, command.to_dict()
    assert command.slots.budget is None
    assert command.slots.model in KNOWN
    for key, value in NOT_BUDGETS[text].items():
        assert getattr(command.slots, key) == value, command.to_dict()


def test_a_kld_budget_is_no_request_for_a_fidelity_report_unless_one_is_asked(agent):
    assert agent.parse("quantize smol-hf to kld 0.02").slots.fidelity is False
    asked = agent.parse("quantize smol-hf to kld 0.02 and a fidelity report").slots
    assert asked.budget == "kld 0.02" and asked.fidelity is True


def test_the_canonical_line_says_the_budget(agent):
    command = agent.parse("quantize smol-hf to fit 100 MB with imatrix")
    assert description(command) == "quantize smol-hf to fit 100 MB with imatrix"
    assert agent.parse(description(command)).slots == command.slots


def test_help_documents_the_budget_form():
    from agents.intent_table import SPECS

    rows = [row for row in SPECS[Intent.QUANTIZE_MODEL].help if "fit SIZE" in row.form]
    assert rows and "kld" in rows[0].form
    agent = DecisionAgent(lambda: ["NAME"])
    for example in (rows[0].example, *rows[0].more):  # each example reads back as a budget
        assert agent.parse(example).slots.budget is not None, example


@pytest.fixture
def executor(tmp_path, demo_dir):
    from agents.executor_agent import Executor
    from lqmf.base.settings import Settings
    from server.runtime.manager import ModelManager

    made = Executor(Settings(home=tmp_path, models_dir_override=demo_dir), ModelManager(Settings(
        home=tmp_path, models_dir_override=demo_dir)), server=None)
    yield made
    made.close()


def test_an_unreadable_budget_is_a_clear_error_not_a_crash(executor):
    command = DecisionAgent(lambda: ["demo-hf"]).parse("quantize demo-hf to kld 0 --yes")
    assert command.slots.budget == "kld 0"
    result = executor.execute(command)
    assert isinstance(result, ErrorResult), result
    assert "above zero" in result.message and "fit 100 MB" in result.hint


def test_the_executor_hands_the_budget_to_the_library(executor, monkeypatch):
    """The library call gets the Budget the line meant (the real call runs; the factory plans it)."""
    heard = {}
    real = executor.library.quantize

    def listening(*args, **kwargs):
        heard.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(executor.library, "quantize", listening)
    command = DecisionAgent(lambda: ["demo-hf"]).parse("quantize demo-hf to fit 4 GB of RAM with imatrix")
    executor.plan_quantization(command)
    assert heard["budget"] == Budget(RAM, 4e9) and heard["imatrix"] is True


@pytest.mark.parametrize("text, name", [
    ("quantize smol-hf under 100 MB, as good as possible", None),
    ("shrink smol-hf as far as it goes while the kl divergence stays under 0.04", None),
    ("quantize smol-hf under 90 MB, as small as possible, as smol-min", "smol-min"),
    ("quantize smol-hf to fit 100 MB as smol-100", "smol-100"),
])
def test_a_comparison_names_no_output(agent, text, name):
    """"as good as possible" is how a budget line often ends: "good" (or "it") is no output name."""
    slots = agent.parse(text).slots
    assert slots.name == name and slots.model == "smol-hf" and slots.budget is not None
