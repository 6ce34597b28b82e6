"""Names dictated rather than typed ("demo q eight underscore zero"): written as the names on disk, and nothing else
in the line changed. Word rules alone: exact, on any machine."""

from __future__ import annotations

import pytest

from agents.decision_agent import DecisionAgent
from agents.intents import Intent
from agents.spoken_names import key, written

NAMES = ["demo-hf", "demo-f16", "demo-q8_0", "demo-q4_k_m", "demo-gptq-4bit", "demo-bnb-int8", "smol-hf", "smol-f16",
         "smol-q4_1", "smol-bnb-nf4", "minilm-hf", "minilm-8bit", "chat-helper-v2", "stats-model-1",
         "load-balancer.v1", "phi-3-mini", "llama-3-8b-q4_k_m", "gpu-box"]


def test_a_names_key_is_its_letters_and_digits():
    assert key("demo-q8_0") == "demoq80" and key("load-balancer.v1") == "loadbalancerv1"


@pytest.mark.parametrize("said, meant", [
    ("uh load demo q eight underscore zero into the api", "uh load demo-q8_0 into the api"),
    ("delete the demo f sixteen model", "delete the demo-f16 model"),
    ("make a copy of smol h f called smol backup", "make a copy of smol-hf called smol backup"),
    ("show me the model phi dash three dash mini", "show me the model phi-3-mini"),
    ("remove chat helper v two and also stats model one", "remove chat-helper-v2 and also stats-model-1"),
    ("fidelity of demo g p t q four bit", "fidelity of demo-gptq-4bit"),
    ("does spam hold on mini l m eight bit embeddings", "does spam hold on minilm-8bit embeddings"),
    ("put the q four k m demo in memory", "put the q4_k_m demo in memory"),
    ("run every prompt in prompts dot t x t", "run every prompt in prompts.txt"),
    ("train it from tickets dot csv", "train it from tickets.csv"),
    ("give me the v l l m command", "give me the vllm command"),
    ("perplexity and k l divergence", "perplexity and kl divergence"),
    ("fall back to cloud then gpu box", "fall back to cloud then gpu-box"),
    ("tune llama three eight b on this machine", "tune llama-3-8b-q4_k_m on this machine"),
    ("show load balancer dot v one", "show load-balancer.v1"),
    ("compare smol, h f and demo", "compare smol, hf and demo"),  # a comma parts two things said: no smol-hf
])
def test_a_dictated_name_is_written_as_the_name(said, meant):
    assert written(said, NAMES) == meant


@pytest.mark.parametrize("line", [
    "load demo-q8_0 and smol-hf",  # typed names: as typed
    "I have two demo files and one smol one",  # number words that spell no name
    "the top one agreement of a b test",
    "chat helper",  # the start of a name with no number said
])
def test_a_line_that_spells_no_name_is_unchanged(line):
    assert written(line, NAMES) == line


@pytest.mark.parametrize("line, intent, models", [
    ("compare demo h f demo q eight underscore zero and demo q four k m side by side", Intent.COMPARE_MODELS,
     ["demo-hf", "demo-q8_0", "demo-q4_k_m"]),
    ("forget the g p u box endpoint", Intent.REMOVE_ENDPOINT, ["gpu-box"]),
    ("quantize smol h f to q four k m", Intent.QUANTIZE_MODEL, ["smol-hf"]),
])
def test_the_parser_reads_dictated_names(line, intent, models):
    agent = DecisionAgent(lambda: NAMES, endpoint_names=lambda: ["gpu-box"])
    command = agent.parse(line)
    assert command.intent is intent
    assert (command.slots.models or [command.slots.model or command.slots.name]) == models
    if intent is Intent.QUANTIZE_MODEL:
        assert command.slots.level == "q4_k_m"
