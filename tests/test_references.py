"""Which models a line names and acts on: descriptions ("the gptq demo"), models set aside ("..., but chat with B",
"stop defaulting to A"), hyphenated English beside a model on disk. Word rules alone: exact, on any machine."""

from __future__ import annotations

import pytest

from agents.decision_agent import DecisionAgent
from agents.described_models import described, pieces
from agents.intents import Intent
from agents.line_words import split_line
from agents.references import acted_on
from agents.slot_reading import SLOT_READERS

NAMES = ["demo-f16", "demo-q8_0", "demo-q4_k_m", "demo-hf", "demo-gptq-4bit", "demo-bnb-int8", "smol-q4_1",
         "smol-hf", "smol-f16", "smol-bnb-nf4", "minilm-hf", "minilm-8bit", "load-balancer.v1", "chat-helper-v2",
         "stats-model-1", "Qwen2.5-0.5B-Instruct"]


@pytest.fixture(scope="module")
def agent():
    return DecisionAgent(lambda: NAMES)


def _believing(ranked, classifiers=(), seen=None) -> DecisionAgent:
    """The parser with a fake intent classifier that always ranks `ranked` (the masked lines it reads go to `seen`);
    no calibrator in this fake, so the reading alone is under test."""
    class Believes:
        calibrator = None

        def rank(self, masked_line):
            if seen is not None:
                seen.append(masked_line)
            return ranked

    agent = DecisionAgent(lambda: NAMES, meaning=Believes(), classifier_names=lambda: list(classifiers))
    agent._weigh = lambda *args: None
    return agent


def test_a_name_splits_into_pieces_with_levels_whole():
    assert pieces("demo-q4_k_m") == {"demo", "q4_k_m"}
    assert pieces("demo-gptq-4bit") == {"demo", "gptq", "4bit"}
    assert pieces("minilm-8bit") == {"minilm", "8bit"}


@pytest.mark.parametrize("line, model", [
    ("wipe the f16 copy of demo off the disk", "demo-f16"),
    ("chat with the q4_k_m demo model", "demo-q4_k_m"),
    ("show me the 8-bit minilm", "minilm-8bit"),
    ("serve the nf4 smol", "smol-bnb-nf4"),
    ("benchmark the fp16 smol", "smol-f16"),
    ("pls load the qwen one", "Qwen2.5-0.5B-Instruct"),  # one piece (a family's letters), then "one"
    ("open a chat with the qwen model", "Qwen2.5-0.5B-Instruct"),
])
def test_a_description_names_the_one_model_that_has_every_piece(line, model):
    assert [name for _, name in described(line, NAMES)] == [model]


@pytest.mark.parametrize("line", [
    "the bnb one",  # demo-bnb-int8 and smol-bnb-nf4 both fit: neither is named
    "load demo",  # one piece alone: the parser's partial match (here: several fit, so it asks)
    "unload the q8_0 one",  # a format's piece alone: the partial match again
    "which is the best chat model?",  # a command word is no name's piece alone
    "can you produce an nf4 bitsandbytes variant of demo-hf?",  # a format asked for, no model on disk named
    "quantize smol-hf to bnb nf4",
    "load demo-q4_k_m",  # a typed name is no description
    "run the llama-server export of demo",
    "quantize demo to q4_k_m",  # "to" ends the run: a level is asked for, not a model named
])
def test_no_description_where_none_or_several_fit(line):
    assert described(line, NAMES) == []


def test_two_descriptions_in_one_line_name_two_models(agent):
    command = agent.parse("compare the gptq demo with the bnb int8 demo")
    assert command.intent is Intent.COMPARE_MODELS
    assert command.slots.models == ["demo-gptq-4bit", "demo-bnb-int8"]


def test_a_quantization_s_target_format_stays_its_target(agent):
    command = agent.parse("quantize smol-hf to bnb nf4")
    assert command.intent is Intent.QUANTIZE_MODEL and command.slots.model == "smol-hf"
    assert (command.slots.method, command.slots.level) == ("bnb", "nf4")
    assert agent.parse("unload the q8_0 one").slots.model == "demo-q8_0"


def test_a_described_model_is_what_the_command_acts_on(agent):
    command = agent.parse("remove the f16 copy of demo")
    assert command.intent is Intent.REMOVE_MODEL and command.slots.model == "demo-f16"


@pytest.mark.parametrize("line, refs, acted", [
    ("I know demo-q8_0 is quicker, but today I want to chat with demo-f16", ["demo-q8_0", "demo-f16"], ["demo-f16"]),
    ("stop defaulting to smol-q4_1 and switch to demo-q4_k_m", ["smol-q4_1", "demo-q4_k_m"], ["demo-q4_k_m"]),
    ("load demo-f16 rather than demo-q8_0", ["demo-f16", "demo-q8_0"], ["demo-f16"]),
    ("benchmark demo-q8_0, but also demo-f16", ["demo-q8_0", "demo-f16"], ["demo-q8_0", "demo-f16"]),
    ("unload demo-q8_0 but keep demo-f16", ["demo-q8_0", "demo-f16"], ["demo-q8_0"]),
    ("compare demo-q8_0 and demo-f16 but not smol-hf", ["demo-q8_0", "demo-f16", "smol-hf"],
     ["demo-q8_0", "demo-f16"]),
    ("don t unload demo-q8_0; unload demo-q4_k_m instead", ["demo-q8_0", "demo-q4_k_m"], ["demo-q4_k_m"]),
    ("drop demo-f16 from memory, demo-q8_0 can stay", ["demo-f16", "demo-q8_0"], ["demo-f16"]),
    ("load demo-f16 and demo-q8_0", ["demo-f16", "demo-q8_0"], ["demo-f16", "demo-q8_0"]),
    ("now that demo-q8_0 works fine, delete demo-hf", ["demo-q8_0", "demo-hf"], ["demo-hf"]),
    ("compare demo-hf and demo-q8_0, skip demo-f16", ["demo-hf", "demo-q8_0", "demo-f16"], ["demo-hf", "demo-q8_0"]),
    ("benchmark smol-q4_1, I already did demo-q8_0", ["smol-q4_1", "demo-q8_0"], ["smol-q4_1"]),
])
def test_the_models_acted_on(line, refs, acted):
    assert acted_on(line, refs) == acted


def test_the_default_is_the_model_switched_to():
    """As the parser reads a USE line the intent classifier chose (the rules read "stop" as a verb)."""
    line = "stop defaulting to smol-q4_1 and switch to demo-q4_k_m"
    assert SLOT_READERS[Intent.USE_MODEL](split_line(line, NAMES), line, NAMES).slots.models == ["demo-q4_k_m"]


@pytest.mark.parametrize("line, model", [
    ("chat with smol-q4_1, a quick back-and-forth about my essay", "smol-q4_1"),
    ('experiment with chat-helper-v2, a single-prompt trial: "what is 2+2"', "chat-helper-v2"),
])
def test_hyphenated_english_beside_a_model_on_disk_is_no_model(agent, line, model):
    command = agent.parse(line)
    assert command.slots.model == model and command.slots.models in ([], [model])


def test_an_abbreviation_is_no_model(agent):
    assert agent.parse("show the lineage of demo-q4_k_m, i.e. what it was made from").slots.models in (
        [], ["demo-q4_k_m"])


def test_a_new_name_with_a_hyphen_is_still_read(agent):
    command = agent.parse("mv demo-q4_k_m small-one")
    assert command.intent is Intent.RENAME_MODEL and command.slots.model == "demo-q4_k_m"
    assert command.slots.name == "small-one"


def test_a_training_reads_its_model_after_the_embeddings_of(agent):
    command = agent.parse("train a classifier named lang on snippets.csv using the embeddings of demo-hf")
    assert command.intent is Intent.TRAIN_CLASSIFIER
    assert (command.slots.model, command.slots.classifier, command.slots.file) == ("demo-hf", "lang", "snippets.csv")


@pytest.mark.parametrize("line, intent", [
    ("dl Qwen/Qwen2.5-1.5B-Instruct", Intent.DOWNLOAD_MODEL),
    ("pull up the card for demo-q8_0", Intent.SHOW_MODEL),
    ("convo test demo-q8_0 using scripts/support.txt", Intent.CONVERSATION_EXPERIMENT),
    ("cmp demo-gptq-4bit demo-bnb-int8", Intent.COMPARE_MODELS),
    ("?", Intent.SHOW_HELP),
    ("??", Intent.SHOW_HELP),
])
def test_short_forms(agent, line, intent):
    assert agent.parse(line).intent is intent


@pytest.mark.parametrize("line, intent, model, models", [
    ("train a classifier named toxicity on comments.csv using the embeddings of minilm-hf.",
     Intent.TRAIN_CLASSIFIER, "minilm-hf", []),
    ("check classifier spam on the embeddings of demo-q8_0.", Intent.CHECK_CLASSIFIER, None, ["demo-q8_0"]),
    ("please delete demo-q8_0 from the disk, but keep demo-f16.", Intent.REMOVE_MODEL, "demo-q8_0", []),
    ("a/b demo-q8_0 vs demo-f16", Intent.COMPARE_MODELS, "demo-q8_0", ["demo-q8_0", "demo-f16"]),
])
def test_a_sentence_s_end_and_slashed_words_are_no_part_of_a_name(agent, line, intent, model, models):
    command = agent.parse(line)
    assert (command.intent, command.slots.model, command.slots.models) == (intent, model, models)


@pytest.mark.parametrize("line, model, prompt", [
    ("hey smol-hf, how do you say thank you in Korean?", "smol-hf", "how do you say thank you in Korean?"),
    ("demo-f16: write a haiku about rain", "demo-f16", "write a haiku about rain"),
    ("quick question for chat-helper-v2: what year did the Berlin wall fall", "chat-helper-v2",
     "what year did the Berlin wall fall"),
])
def test_a_model_spoken_to_by_name_is_a_chat_with_the_rest_as_its_prompt(agent, line, model, prompt):
    command = agent.parse(line)
    assert (command.intent, command.slots.model, command.slots.prompt, command.exact) == (
        Intent.CHAT_WITH_MODEL, model, prompt, True)


@pytest.mark.parametrize("line", [
    "demo-q8_0: benchmark it",  # a command word after the name: the name comes first, not a prompt
    "demo-f16, demo-q8_0 and smol-hf: compare them",  # a list of models
    "hey llama, what is 2+2",  # no model on disk by that name
    "ok demo-f16 is slow",  # no comma or colon: a statement
])
def test_not_every_name_first_is_a_chat(agent, line):
    assert not agent.parse(line).exact


def test_an_exact_form_stands_whatever_the_classifier_says():
    """The classifier may give a chat spoken to a model little (its words are the prompt's): the form stands."""
    ranked = [(Intent.UNKNOWN, 0.97), (Intent.CHAT_WITH_MODEL, 0.02), (Intent.SHOW_MODEL, 0.01)]

    class Meaning:
        calibrator = None

        def rank(self, masked_line):
            return ranked

    parser = DecisionAgent(lambda: NAMES, meaning=Meaning())
    reading = parser._by_meaning(Intent.CHAT_WITH_MODEL, split_line("hey smol-hf, what is 2+2", NAMES),
                                 "hey smol-hf, what is 2+2", exact=True)
    assert reading.intent is Intent.CHAT_WITH_MODEL
    assert parser._by_meaning(Intent.CHAT_WITH_MODEL, split_line("x", NAMES), "x").intent is Intent.UNKNOWN


@pytest.mark.parametrize("line, models", [
    ("use demo-q4_k_m then demo-f16", ["demo-q4_k_m", "demo-f16"]),
    ("the default answer from my manager is always no", []),  # plain words are no models
])
def test_the_default_chain_holds_models_only(line, models):
    assert SLOT_READERS[Intent.USE_MODEL](split_line(line, NAMES), line, NAMES).slots.models == models


@pytest.mark.parametrize("line", [
    "I loaded a model yesterday and it was slow",
    "I already deleted smol-f16 last week, it's fine",
    "yesterday I quantized smol-hf and it took forever",
    "we used to list our models in a spreadsheet",
    # a plan told, or another program's command line
    "In my thesis I plan to compare several quantization schemes, although I have not decided which ones yet.",
    "we plan to quantize everything next quarter",
    "tail -f /var/log/syslog",
    "git push failed again",
])
def test_a_story_that_asks_nothing_is_no_command(agent, line):
    command = agent.parse(line)
    assert command.intent is Intent.UNKNOWN and command.exact


@pytest.mark.parametrize("line", [
    "I loaded demo-q8_0 by mistake, load demo-q4_k_m",
    "I quantized smol-hf yesterday, can you benchmark it?",
    "we need demo-f16 loaded",
])
def test_a_story_followed_by_a_request_is_read_as_a_request(agent, line):
    command = agent.parse(line)
    assert not command.exact and command.intent is not Intent.UNKNOWN


@pytest.mark.parametrize("line, acted", [
    ("compare demo-q8_0 and demo-f16, ignore smol-hf for now", ["demo-q8_0", "demo-f16"]),
    ("benchmark demo-q8_0 and demo-f16 excluding smol-hf", ["demo-q8_0", "demo-f16"]),
])
def test_ignored_models_are_set_aside(agent, line, acted):
    assert agent.parse(line).slots.models == acted


def test_the_model_swapped_out_is_the_default_no_more():
    line = "swap demo-f16 out for demo-q8_0 as the default"
    assert SLOT_READERS[Intent.USE_MODEL](split_line(line, NAMES), line, NAMES).slots.models == ["demo-q8_0"]


@pytest.mark.parametrize("line", [
    "how would I go about making a 4-bit version of something?",
    "is there a way to export a model to vllm?",
    "what does tune actually do?",
])
def test_how_to_questions_naming_no_model_are_help(agent, line):
    assert agent.parse(line).intent is Intent.SHOW_HELP


FAMILIES = NAMES + ["llama-3-8b-q4_k_m", "mistral-7b-instruct-q5_k_m", "phi-3-mini", "gpu-box"]


@pytest.mark.parametrize("line, models", [
    ("ask the 4-bit llama to write a haiku", ["llama-3-8b-q4_k_m"]),  # q4_k_m says 4-bit
    ("load the original smol onto the API server", ["smol-hf"]),  # not load-balancer.v1 ("load" is a verb)
    ("is it possible to quantize the unquantized demo to int8?", ["demo-hf"]),
    ("drop the mistral q5 off disk", ["mistral-7b-instruct-q5_k_m"]),
    ("does the spam classifier still work on the 8 bit minilm", ["minilm-8bit"]),
    ("inspect the 5-bit mistral", ["mistral-7b-instruct-q5_k_m"]),
    ("Use the full-precision minilm.", ["minilm-hf"]),
    ("could I chat with the 4-bit gguf of demo?", ["demo-q4_k_m"]),  # gguf tells it from demo-gptq-4bit
    ("get the llama into memory pls", ["llama-3-8b-q4_k_m"]),  # one model's own first word, after "the"
    ("speed check on the smol q4_1, f16 and nf4", ["smol-q4_1", "smol-f16", "smol-bnb-nf4"]),  # listed traits
    ("compare the f16, q8 and q4 demo", ["demo-f16", "demo-q8_0", "demo-q4_k_m"]),
    ("do the original and 8-bit minilm agree on test.csv?", ["minilm-hf", "minilm-8bit"]),
    ("compare the 8-bit minilm to the original", ["minilm-8bit", "minilm-hf"]),  # the original of that family
    ("how close is demo-q8_0 to the unquantized original?", ["demo-hf"]),
    ("how the gptq and bnb versions of demo stack up", ["demo-gptq-4bit", "demo-bnb-int8"]),
])
def test_a_model_named_by_family_and_traits(line, models):
    assert [name for _, name in described(line, FAMILIES)] == models


@pytest.mark.parametrize("line", [
    "make an 8-bit version of minilm",  # after "a"/"an": the quantization's target, no model on disk
    "the original analysis plan",  # "the original" before a noun is no model
    "ask the 8-bit demo a question",  # demo-q8_0 and demo-bnb-int8 are both 8-bit: neither
    "is the gpu busy",  # three letters: no name's first word alone
    "how would I build llama.cpp from source",  # a word glued to more is typed, not described
])
def test_no_model_named_by_traits_where_none_or_several_fit(line):
    assert described(line, FAMILIES) == []


@pytest.mark.parametrize("line, refs, acted", [
    ("benchmark demo-q8_0 - no wait, demo-f16", ["demo-q8_0", "demo-f16"], ["demo-f16"]),
    ("compare smol-hf with demo-q8_0 - no wait, with demo-f16", ["smol-hf", "demo-q8_0", "demo-f16"],
     ["smol-hf", "demo-f16"]),  # the correction replaces the last one said
    ("load demo-q8_0, make that demo-hf", ["demo-q8_0", "demo-hf"], ["demo-hf"]),
    ("How much did quantization hurt demo-q8_0? I mean ppl and KL vs demo-hf", ["demo-q8_0", "demo-hf"],
     ["demo-q8_0", "demo-hf"]),  # "I mean" explains, it corrects nothing
    ("I don't need demo-f16 anymore, remove it but leave demo-hf alone", ["demo-f16", "demo-hf"], ["demo-f16"]),
])
def test_a_correction_replaces_what_was_said(line, refs, acted):
    assert acted_on(line, refs) == acted


@pytest.mark.parametrize("line, intent, models", [
    ("Compute KL divergence and top-1 agreement of smol-q4_1 against smol-hf", Intent.FIDELITY_REPORT,
     ["smol-q4_1", "smol-hf"]),  # "top-1" is a measure, and its agreement fidelity's
    ("does demo-gptq-4bit agree with demo-hf on the top-1 token most of the time?", Intent.FIDELITY_REPORT,
     ["demo-gptq-4bit", "demo-hf"]),  # "token" with models named is no login
    ("benchmark demo-q8_0, the SLA says p95 under 400ms", Intent.BENCHMARK_MODELS, ["demo-q8_0"]),
    ("load demo-q8_0, the tests hit it at localhost:8000", Intent.LOAD_MODEL_API, ["demo-q8_0"]),
    ("feed the whole file at $PROMPT_FILE to demo-q8_0", None, ["demo-q8_0"]),
    ("Ask the nf4 smol to explain quantization error in one sentence.", Intent.CHAT_WITH_MODEL, ["smol-bnb-nf4"]),
    ("drop demo-q4_k_m from disk, the pipeline makes it nightly anyway", Intent.REMOVE_MODEL, ["demo-q4_k_m"]),
    ("which experiments did I run on smol-q4_1", Intent.LIST_EXPERIMENTS, ["smol-q4_1"]),
])
def test_what_looks_like_a_name_and_is_none(agent, line, intent, models):
    command = agent.parse(line)
    assert intent is None or command.intent is intent
    assert (command.slots.models or [command.slots.model]) == models


def test_an_ask_form_keeps_its_prompt(agent):
    command = agent.parse("ask smol-hf to explain what KL divergence is")
    assert command.intent is Intent.CHAT_WITH_MODEL and command.exact
    assert (command.slots.model, command.slots.prompt) == ("smol-hf", "explain what KL divergence is")


class _Believes:
    """A stand-in intent classifier with fixed beliefs: the fusion's logic around it, not the classifier."""

    def __init__(self, ranked):
        from agents.understanding.intent_model import Calibrator

        self.ranked = ranked
        self.calibrator = Calibrator((4.0, 2.0, 1.0, 0.0, -1.0), -3.0, 0.5)

    def rank(self, masked_line):
        return self.ranked


def test_a_plain_word_taken_for_a_model_needs_more_belief_to_stand():
    """P(remove) 0.2 keeps "remove demo-f16" (a model on disk) but not "remove all doubt" (no model: "doubt")."""
    from agents.understanding.fusion import RULE_KEEP, UNGROUNDED_KEEP

    assert RULE_KEEP < 0.2 < UNGROUNDED_KEEP
    believes = _Believes([(Intent.UNKNOWN, 0.7), (Intent.REMOVE_MODEL, 0.2), (Intent.EXIT, 0.1)])
    agent = DecisionAgent(lambda: NAMES, meaning=believes)
    assert agent.parse("remove demo-f16").intent is Intent.REMOVE_MODEL
    assert agent.parse("let's remove all doubt and ship it").intent is Intent.UNKNOWN


@pytest.mark.parametrize("line, models", [
    ("how close is smol-f16 to the hf original, perplexity-wise", ["smol-hf"]),  # traits before "original"
    ("top-1 agreement between demo-gptq-4bit and its f16 parent", ["demo-f16"]),
    ("speed test the q8 and q4 demos", ["demo-q8_0", "demo-q4_k_m"]),  # a family's plural
    ("tok/s for all three smol quants: q4_1, f16, nf4", ["smol-q4_1", "smol-f16", "smol-bnb-nf4"]),  # a headed list
])
def test_a_model_named_beside_its_family(line, models):
    assert [name for _, name in described(line, FAMILIES)] == models


@pytest.mark.parametrize("line, intent, model", [
    ("q8_0 of minilm-hf pls", Intent.QUANTIZE_MODEL, "minilm-hf"),  # a recipe said of a model: the factory's verb
    ("nf4 smol-hf plz", Intent.QUANTIZE_MODEL, "smol-hf"),
    ("Turn smol-hf into an nf4 model", Intent.QUANTIZE_MODEL, "smol-hf"),
    ("a bnb nf4 version of demo-hf, no calibration needed", Intent.QUANTIZE_MODEL, "demo-hf"),
    ("quant smol-hf to q4_k_m", Intent.QUANTIZE_MODEL, "smol-hf"),  # "quant" as a verb stays one
    ("tok/s for all three smol quants: q4_1, f16, nf4", Intent.BENCHMARK_MODELS, "smol-q4_1"),  # ... a noun is none
    ("I need google/gemma-2-2b-it locally for the eval harness", Intent.DOWNLOAD_MODEL, "google/gemma-2-2b-it"),
    ("show statistics for smol-q4_1", Intent.SHOW_STATISTICS, "smol-q4_1"),
    ("benchmrk phi3 mini pls", Intent.BENCHMARK_MODELS, "phi-3-mini"),  # the same letters and digits
])
def test_forms_without_their_verb_or_spelled_otherwise(line, intent, model):
    command = DecisionAgent(lambda: FAMILIES).parse(line)
    assert (command.intent, command.slots.model) == (intent, model)


def test_of_two_readings_that_both_ask_the_fuller_is_kept():
    """The rules read "on minilm-hf" as the training file; the classifier's reading also finds the model in it."""
    believes = _Believes([(Intent.TRAIN_CLASSIFIER, 0.9), (Intent.UNKNOWN, 0.1)])
    command = DecisionAgent(lambda: NAMES, meaning=believes).parse("train a classifier from data/spam.csv on minilm-hf")
    assert command.intent is Intent.TRAIN_CLASSIFIER
    assert (command.slots.model, command.slots.file) == ("minilm-hf", "data/spam.csv")


def test_a_count_of_turns_is_no_model(agent):
    command = agent.parse("play the 5-turn script in scripts/onboarding.txt against demo-q8_0")
    assert command.slots.model == "demo-q8_0" and command.slots.models in ([], ["demo-q8_0"])


@pytest.mark.parametrize("line, models", [
    ("How much does the q4 version of demo lose compared to the full f16 one?", ["demo-q4_k_m", "demo-f16"]),
    ("is the nf4 smol still faithful to the f16 one?", ["smol-bnb-nf4", "smol-f16"]),  # "the TRAIT one"
    ("compare demo-q8_0 with the other one", []),  # "other" says no trait: no model
])
def test_the_trait_one_beside_a_family(line, models):
    assert [name for _, name in described(line, FAMILIES)] == models


def test_a_model_set_aside_by_description_is_named_and_not_acted_on(agent):
    assert [name for _, name in described("load the gptq demo rather than the bnb one", NAMES)] == [
        "demo-gptq-4bit", "demo-bnb-int8"]
    command = agent.parse("load the gptq demo rather than the bnb one")
    assert command.intent is Intent.LOAD_MODEL_API and command.slots.model == "demo-gptq-4bit"


@pytest.mark.parametrize("line, intent, model", [
    ("chat w/ mistral", Intent.CHAT_WITH_MODEL, "mistral-7b-instruct-q5_k_m"),  # "w/" is no name
    ("unload llama", Intent.UNLOAD_MODEL_API, "llama-3-8b-q4_k_m"),  # not inside ollama-local
    ("lets have a chat with the default model", Intent.CHAT_WITH_MODEL, None),  # the default: asked, not named
])
def test_a_plain_word_names_the_model_whose_piece_it_is(line, intent, model):
    command = DecisionAgent(lambda: FAMILIES + ["ollama-local"]).parse(line)
    assert (command.intent, command.slots.model) == (intent, model)


VERSIONED = FAMILIES + ["ollama-local"]


@pytest.mark.parametrize("line, models", [
    ("cmp phi-3-mini mistral-7b-instruct-q5_k_m qwen", ["Qwen2.5-0.5B-Instruct"]),  # a versioned family alone
    ("rank the mistral and phi on quality", ["mistral-7b-instruct-q5_k_m", "phi-3-mini"]),
    ("ollama show mistral", ["mistral-7b-instruct-q5_k_m"]),  # "ollama" before its CLI's verb is the program
    ("default to fleet, then the local llama", ["llama-3-8b-q4_k_m"]),  # a word of place between
])
def test_a_family_alone_names_its_one_model(line, models):
    assert [name for _, name in described(line, VERSIONED)] == models


@pytest.mark.parametrize("line", [
    "what is a llama, anyway",  # "llama" is English: only "the llama" names it
    "I want a mistral like that one",  # after "a" it is a kind
    "the benchmarks for the new GPU looked impressive",  # an acronym typed in capitals
    "did you know ollama pull resumes interrupted downloads?",  # the program, not the endpoint
    "is the gpu busy",  # three letters of a name with no version: gpu-box is not named
])
def test_a_family_word_that_names_no_model(line):
    assert described(line, VERSIONED) == []


def test_a_family_alone_is_read_as_typed_by_the_classifier():
    """The slots get the model; the intent classifier's mask leaves the word, as it read it before."""
    split = split_line("who trained Qwen originally?", VERSIONED)
    assert split.models == ["Qwen2.5-0.5B-Instruct"] and "Qwen" not in split.references()
    assert split_line("open a chat with the qwen model", VERSIONED).described == ["qwen model"]


def test_a_possessive_family_and_the_noun_it_ends_on():
    split = split_line("embed it with minilm's 8-bit copy", VERSIONED)
    assert split.models == ["minilm-8bit"] and "copy" not in split.words


@pytest.mark.parametrize("line, refs, acted", [
    ("delete demo-hf, no sorry, delete smol-f16", ["demo-hf", "smol-f16"], ["smol-f16"]),
    ("chat with smol-q4_1, no, smol-bnb-nf4", ["smol-q4_1", "smol-bnb-nf4"], ["smol-bnb-nf4"]),
    ("benchmark demo-q8_0 - no, demo-f16", ["demo-q8_0", "demo-f16"], ["demo-f16"]),
    ("no, compare demo-f16 and demo-q8_0", ["demo-f16", "demo-q8_0"], ["demo-f16", "demo-q8_0"]),  # nothing before
])
def test_more_ways_to_correct(line, refs, acted):
    assert acted_on(line, refs) == acted


def test_a_corrected_default_is_the_one_after_the_correction():
    line = "set the default model to demo-q8_0 - no wait, demo-f16"
    assert SLOT_READERS[Intent.USE_MODEL](split_line(line, NAMES), line, NAMES).slots.models == ["demo-f16"]


@pytest.mark.parametrize("line, intent, model", [
    ("I just loaded demo-q8_0, now let me talk to it", Intent.CHAT_WITH_MODEL, "demo-q8_0"),
    ("before I delete the f16 smol, show me its manifest", Intent.SHOW_MODEL, "smol-f16"),
    ("I just downloaded smol-hf, now squeeze it down to q8_0", Intent.QUANTIZE_MODEL, "smol-hf"),
])
def test_a_story_then_a_request_acts_on_the_story_s_model(agent, line, intent, model):
    command = agent.parse(line)
    assert (command.intent, command.slots.model) == (intent, model) and command.text == line


def test_a_story_with_no_request_after_it_stays_a_story(agent):
    assert agent.parse("I loaded demo-q8_0 yesterday, and it was slow").intent is Intent.UNKNOWN


@pytest.mark.parametrize("line", ["take everything out of memory", "unload all models", "unload everything"])
def test_unloading_everything_is_every_loaded_model(agent, line):
    command = agent.parse(line)
    assert command.intent is Intent.UNLOAD_MODEL_API and command.slots.every and command.question is None


def test_the_hub_s_program_typed_out_of_habit_is_no_model(agent):
    command = agent.parse("huggingface-cli download microsoft/Phi-3-mini-4k-instruct")
    assert (command.intent, command.slots.model) == (Intent.DOWNLOAD_MODEL, "microsoft/Phi-3-mini-4k-instruct")


@pytest.mark.parametrize("line, classifier, text", [
    ("spam: win a free phone now", "spam", "win a free phone now"),
    ("what does the sentiment classifier say about: this update broke everything", "sentiment",
     "this update broke everything"),
    ('what does the spam classifier say about "win a free phone"?', "spam", "win a free phone"),
])
def test_a_text_to_a_classifier_by_its_name(line, classifier, text):
    agent = DecisionAgent(lambda: NAMES, classifier_names=lambda: ["spam", "sentiment"])
    command = agent.parse(line)
    assert (command.intent, command.slots.classifier, command.slots.texts) == (Intent.CLASSIFY_TEXT, classifier,
                                                                               [text])


def test_a_classifier_checked_on_one_variant_instead_of_another():
    from agents.classifier_parse import classifier_slots

    command = classifier_slots(Intent.CHECK_CLASSIFIER, "verify code-lang on minilm-8bit instead of minilm-hf",
                               NAMES, ["code-lang"])
    assert command.slots.models == ["minilm-8bit"]


@pytest.mark.parametrize("line, intent, model", [
    ("demo-q8_0: tell me a joke", Intent.CHAT_WITH_MODEL, "demo-q8_0"),  # spoken to
    ("demo-q8_0: how fast is it? tokens per second please", None, "demo-q8_0"),  # asked about: not a chat
    ("smol-hf: what's its lineage?", None, "smol-hf"),
    ("Create an 8-bit bitsandbytes copy of smol-hf for the memory tests.", Intent.QUANTIZE_MODEL, "smol-hf"),
    ("Since smol-q4_1 came out badly, please quantize smol-hf to q5_k_m instead.", Intent.QUANTIZE_MODEL, "smol-hf"),
])
def test_forms_about_a_model_and_copies_that_are_quantizations(agent, line, intent, model):
    command = agent.parse(line)
    assert command.slots.model == model
    assert command.intent is intent if intent else (command.intent is not Intent.CHAT_WITH_MODEL and not command.exact)


@pytest.mark.parametrize("line", ["note to self: never delete demo-f16", "never quantize smol-hf below q4",
                                  "reminder: benchmark demo-q8_0 after the update"])
def test_a_note_or_a_rule_for_later_asks_for_nothing(agent, line):
    command = agent.parse(line)
    assert command.intent is Intent.UNKNOWN and command.exact


def test_a_story_then_i_d_like_is_a_request(agent):
    command = agent.parse("I benchmarked demo-q8_0 yesterday, but now I'd like to chat with smol-hf")
    assert command.intent is Intent.CHAT_WITH_MODEL and command.slots.model == "smol-hf"


def test_help_or_exit_alone_stands_whatever_the_classifier_says():
    """ "HELP!!" read 0.15 SHOW_HELP by the classifier once; alone, help and exit are exact forms."""
    agent = DecisionAgent(lambda: NAMES)
    for line, intent in (("HELP!!", Intent.SHOW_HELP), ("q!", Intent.EXIT)):
        command = agent.parse(line)
        assert command.intent is intent and command.exact
    assert not agent.parse("endpoints?").exact and not agent.parse("help me quantize").exact


@pytest.mark.parametrize("line, refs, acted", [
    ("drop demo-f16 from memory, demo-q8_0 stays loaded", ["demo-f16", "demo-q8_0"], ["demo-f16"]),
    ("unload demo-f16; demo-q8_0 stays", ["demo-f16", "demo-q8_0"], ["demo-f16"]),
    ("check how close demo-q8_0 stays to demo-hf", ["demo-q8_0", "demo-hf"], ["demo-q8_0", "demo-hf"]),
])
def test_a_model_that_stays_is_set_aside_but_not_one_that_stays_close(line, refs, acted):
    assert acted_on(line, refs) == acted


@pytest.mark.parametrize("line, models", [
    ("um tell me about the four bit llama", ["llama-3-8b-q4_k_m"]),  # a bit width said in words, as dictated
    ("check the spam classifier on the eight bit minilm", ["minilm-8bit"]),
    ("okay so chat with the sixteen bit smol", ["smol-f16"]),
])
def test_bit_widths_said_in_words(line, models):
    assert [name for _, name in described(line, FAMILIES + ["smol-f16"])] == models


def test_a_classifier_line_reads_the_models_it_describes(agent):
    command = agent.parse("okay so train a new classifier called urgency on urgent.csv with minilm hf")
    assert command.intent is Intent.TRAIN_CLASSIFIER and command.slots.model == "minilm-hf"
    check = agent.parse("check how the spam classifier does on the eight bit minilm")
    assert check.intent is Intent.CHECK_CLASSIFIER and check.slots.models == ["minilm-8bit"]


@pytest.mark.parametrize("line, models", [
    ("please remove demo-hf and smol-hf from my machine", ["demo-hf", "smol-hf"]),
    ("trash smol-bnb-nf4, smol-q4_1 & demo-hf", ["smol-bnb-nf4", "smol-q4_1", "demo-hf"]),
    ("remove the nf4 smol and the q4_1 smol, regenerating both", ["smol-bnb-nf4", "smol-q4_1"]),
])
def test_a_removal_of_models_listed_together_removes_each(agent, line, models):
    command = agent.parse(line)
    assert command.intent is Intent.REMOVE_MODEL and command.slots.models == models


def test_a_model_named_beside_a_removal_as_context_is_not_removed(agent):
    command = agent.parse("is it possible to remove the q4_1 smol? we have the nf4 version now")
    assert (command.slots.model, command.slots.models) == ("smol-q4_1", [])


def test_an_apostrophe_does_not_end_a_description():
    assert [name for _, name in described("swap its embedder for minilm's 8 bit version", NAMES)] == ["minilm-8bit"]


def test_the_embedding_of_a_text_on_a_model_is_an_embedding(agent):
    command = agent.parse("whats the embedding of hello world on the original minilm")
    assert command.intent is Intent.EMBED_TEXT and command.slots.model == "minilm-hf"


def test_a_classify_reading_with_a_model_and_no_classifier_gives_way():
    """The classifier once read a prompt run on a model as a text to classify: with a model on disk named and no
    saved classifier, its next reading that is no classifier command is taken."""
    agent = _believing([(Intent.CLASSIFY_TEXT, 0.8), (Intent.EXPERIMENT_WITH_MODEL, 0.15),
                        (Intent.CHAT_WITH_MODEL, 0.05)], classifiers=["spam"])
    command = agent.parse('run "summarize this refund policy" on the qwen one')
    assert command.intent is Intent.EXPERIMENT_WITH_MODEL and command.slots.model == "Qwen2.5-0.5B-Instruct"
    kept = agent.parse('run spam on "win a free phone"')
    assert kept.intent is Intent.CLASSIFY_TEXT and kept.slots.classifier == "spam"


def test_int8_said_of_an_8_bit_family_that_is_no_gguf():
    """ "minilm's int8 copy" is minilm-8bit; "the int8 demo" stays demo-bnb-int8 (demo-q8_0 is 8-bit, no int8)."""
    assert [name for _, name in described("embed it with minilm's int8 copy", NAMES)] == ["minilm-8bit"]
    assert [name for _, name in described("serve the int8 demo", NAMES)] == ["demo-bnb-int8"]


def test_sorry_i_mean_corrects():
    assert acted_on("remove demo-hf, sorry, I mean smol-hf", ["demo-hf", "smol-hf"]) == ["smol-hf"]


def test_what_a_saved_classifier_says_about_a_text():
    agent = DecisionAgent(lambda: NAMES, classifier_names=lambda: ["code-lang"])
    command = agent.parse("what does code-lang say about: def foo(): return 42")
    assert (command.intent, command.slots.classifier, command.slots.texts) == (Intent.CLASSIFY_TEXT, "code-lang",
                                                                               ["def foo(): return 42"])


# -- part 18's forms ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, intent, model, prompt", [
    ('ask chat-helper-v2 "how do I quantize a model?" and record the answer', Intent.EXPERIMENT_WITH_MODEL,
     "chat-helper-v2", "how do I quantize a model?"),
    ('ask chat-helper-v2 "how do I quantize a model?"', Intent.CHAT_WITH_MODEL, "chat-helper-v2",
     "how do I quantize a model?"),
    ("run the prompt write a haiku about rain on the q4_1 smol and record it", Intent.EXPERIMENT_WITH_MODEL,
     "smol-q4_1", None),
])
def test_asked_to_record_the_answer_is_an_experiment(agent, line, intent, model, prompt):
    command = agent.parse(line)
    assert (command.intent, command.slots.model) == (intent, model)
    if prompt:
        assert command.slots.prompt == prompt


def test_the_same_as_another_model_is_no_object_and_no_new_name(agent):
    command = agent.parse("do a gptq 4 bit of the real smol, same as demo-gptq-4bit")
    assert command.intent is Intent.QUANTIZE_MODEL and command.slots.model == "smol-hf"
    assert command.slots.name is None and (command.slots.method, command.slots.bits) == ("gptq", 4)


def test_a_copy_under_the_name(agent):
    command = agent.parse("make a copy of the real smol under the name smol-hf-pristine")
    assert (command.intent, command.slots.model, command.slots.name) == (Intent.COPY_MODEL, "smol-hf",
                                                                         "smol-hf-pristine")


@pytest.mark.parametrize("line, name", [
    ("quantize demo-hf to q5_k_m as my-q5 --yes", "my-q5"),  # "my" is an article only before a space
    ("quantize demo-hf to q4_k_m as the-best", "the-best"),
    ("quantize demo-hf to q4_k_m as a local model", None),
])
def test_an_output_name_that_begins_like_an_article(agent, line, name):
    command = agent.parse(line)
    assert (command.intent, command.slots.model, command.slots.name) == (Intent.QUANTIZE_MODEL, "demo-hf", name)


def test_i_mean_between_commas_corrects_but_not_an_explanation():
    assert acted_on("the gptq demo, I mean, Org_Model_gptq_4bit, load that one",
                    ["demo-gptq-4bit", "Org_Model_gptq_4bit"]) == ["Org_Model_gptq_4bit"]
    assert acted_on("did it hurt demo-q4_k_m? I mean ppl and KL vs demo-f16",
                    ["demo-q4_k_m", "demo-f16"]) == ["demo-q4_k_m", "demo-f16"]


@pytest.mark.parametrize("line, intent", [
    ("wait, is smol-f16 still there? actually never mind that, just list my models", Intent.LIST_MODELS),
    ("nvm, start the server", Intent.START_API_SERVER),
])
def test_what_follows_never_mind_is_the_request(agent, line, intent):
    assert agent.parse(line).intent is intent


def test_a_story_about_the_machine_then_a_request(agent):
    command = agent.parse("after the migration last night some folders moved around; show me every model")
    assert command.intent is Intent.LIST_MODELS


def test_a_check_on_a_variant_s_embeddings_names_the_variant():
    agent = DecisionAgent(lambda: NAMES, classifier_names=lambda: ["sentiment"])
    for line in ("check whether the sentiment classifier still holds up on minilm-8bit's embeddings",
                 "after swapping to the quantized minilm, check whether the sentiment classifier still holds up "
                 "on its embeddings"):
        command = agent.parse(line)
        assert (command.intent, command.slots.classifier, command.slots.models) == (
            Intent.CHECK_CLASSIFIER, "sentiment", ["minilm-8bit"]), line


def test_a_saved_classifier_and_a_quoted_text_classify():
    agent = DecisionAgent(lambda: NAMES, classifier_names=lambda: ["code-lang"])
    command = agent.parse('which language does code-lang think "def remove(self, x): pass" is?')
    assert (command.intent, command.slots.classifier, command.slots.texts) == (
        Intent.CLASSIFY_TEXT, "code-lang", ["def remove(self, x): pass"])
    trained = agent.parse('train code-lang on "data/code.csv" with minilm-hf')
    assert trained.intent is not Intent.CLASSIFY_TEXT  # a training verb: no text to classify


def test_a_quoted_word_asking_for_no_label_is_no_classification():
    """The classifier read quotes as a text to classify: with no classifier named and no word asking for a label,
    the line is no command."""
    agent = _believing([(Intent.CLASSIFY_TEXT, 0.9), (Intent.UNKNOWN, 0.05),
                        (Intent.SHOW_HELP, 0.05)], classifiers=["spam"])
    assert agent.parse('how do you say "remove" in German?').intent is Intent.UNKNOWN
    assert agent.parse('what category is "refund my order" in?').intent is Intent.CLASSIFY_TEXT
    assert agent.parse('is "win a free phone" spam?').intent is Intent.CLASSIFY_TEXT


def test_a_misspelled_command_word_reaches_the_classifier_spelled_right():
    seen = []
    agent = _believing([(Intent.BENCHMARK_MODELS, 0.9), (Intent.UNKNOWN, 0.1)], seen=seen)
    command = agent.parse("bnech demo-q4_k_m demo-q8_0")
    assert command.intent is Intent.BENCHMARK_MODELS and "bench" in seen[0] and "bnech" not in seen[0]


@pytest.mark.parametrize("line, models", [
    ("is demo-q8_0 or demo-q4_k_m the better pick, going by the recorded numbers?", ["demo-q8_0", "demo-q4_k_m"]),
    ("which is the best between smol-q4_1 and smol-bnb-nf4, according to the measures we have",
     ["smol-q4_1", "smol-bnb-nf4"]),
])
def test_a_choice_among_named_models_from_the_records_is_a_recommendation(agent, line, models):
    command = agent.parse(line)
    assert command.intent is Intent.RECOMMEND_MODEL and command.slots.models == models


def test_which_is_faster_of_two_without_the_records_measures_them(agent):
    assert agent.parse("which is faster, demo-q8_0 or demo-q4_k_m?").intent is Intent.BENCHMARK_MODELS


def test_removing_a_registered_endpoint_forgets_it():
    agent = DecisionAgent(lambda: NAMES + ["gpu-box", "ollama-local"], endpoint_names=lambda: ["gpu-box",
                                                                                              "ollama-local"])
    command = agent.parse("don't remove gpu-box, remove ollama-local")
    assert (command.intent, command.slots.name) == (Intent.REMOVE_ENDPOINT, "ollama-local")
    assert agent.parse("remove demo-f16").intent is Intent.REMOVE_MODEL


def test_a_verb_and_names_on_disk_is_exact_whatever_the_classifier_says():
    agent = _believing([(Intent.QUANTIZE_MODEL, 0.95), (Intent.COMPARE_MODELS, 0.05)])
    command = agent.parse("cmp demo-q8_0 demo-q4_k_m demo-gptq-4bit")
    assert command.intent is Intent.COMPARE_MODELS and command.slots.models == ["demo-q8_0", "demo-q4_k_m",
                                                                                "demo-gptq-4bit"]
    assert agent.parse("cmp demo-q8_0 and then some words").intent is Intent.QUANTIZE_MODEL  # not terse: fused
    # "time A and B": "time" is no command word; the rules' "A and B" (a comparison) is no exact form
    assert not agent.parse("time demo-q8_0 and demo-gptq-4bit").exact


# -- part 20's forms ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, intent", [
    ("I was wondering whether it would be possible to benchmark demo-q8_0 on this machine.", Intent.BENCHMARK_MODELS),
    ("I was wondering which models I have on disk at the moment.", Intent.LIST_MODELS),
])
def test_i_was_wondering_whether_is_a_polite_request_not_a_story(agent, line, intent):
    assert agent.parse(line).intent is intent


@pytest.mark.parametrize("line, model", [
    ("I'd like to inspect the details of the original SmolLM, in particular its manifest.", "smol-hf"),
    ("Would it be possible to create a 4-bit GPTQ version of the original SmolLM?", "smol-hf"),
    ("load the nf4 SmolLM2", "smol-bnb-nf4"),
])
def test_a_family_said_by_its_models_own_name(agent, line, model):
    assert agent.parse(line).slots.model == model


@pytest.mark.parametrize("line, models", [
    ("benchmark the original SmolLM against its f16 and q4_1 variants", ["smol-hf", "smol-f16", "smol-q4_1"]),
    ("benchmark demo-hf and its q8_0, q4_k_m and f16 versions", ["demo-hf", "demo-q8_0", "demo-q4_k_m", "demo-f16"]),
    ("embed 'the cat sat' with both the original MiniLM and its 8-bit copy", ["minilm-hf", "minilm-8bit"]),
    ("compare all 3 smol quants: f16 q4_1 nf4", ["smol-f16", "smol-q4_1", "smol-bnb-nf4"]),
    ("compare the three smol quants: q4_1, f16, nf4", ["smol-q4_1", "smol-f16", "smol-bnb-nf4"]),
])
def test_traits_listed_of_the_lines_family(agent, line, models):
    assert agent.parse(line).slots.models == models


def test_the_copy_alone_says_no_trait():
    assert described("compare minilm-hf with the copy", NAMES) == []


@pytest.mark.parametrize("line, intent, models", [
    ("Rather than benchmarking it, I would simply like to chat with the original SmolLM for a while.",
     Intent.CHAT_WITH_MODEL, ["smol-hf"]),
    ("measure the perplexity of the int8 demo relative to the original demo, rather than to the f16 one",
     Intent.FIDELITY_REPORT, ["demo-bnb-int8", "demo-hf"]),
])
def test_a_verb_or_a_model_ruled_out_with_rather_than(agent, line, intent, models):
    command = agent.parse(line)
    assert command.intent is intent and (command.slots.models or [command.slots.model]) == models


def test_a_number_in_the_plural_is_no_model_and_a_model_named_twice_is_one(agent):
    command = agent.parse("users are hitting 404s on the qwen, load Qwen2.5-0.5B-Instruct")
    assert command.intent is Intent.LOAD_MODEL_API
    assert (command.slots.models or [command.slots.model]) == ["Qwen2.5-0.5B-Instruct"]


def test_a_text_verb_typed_first_and_its_text_is_exact_whatever_the_classifier_says():
    agent = _believing([(Intent.UNLOAD_MODEL_API, 0.9), (Intent.EMBED_TEXT, 0.1)], classifiers=["topics"])
    command = agent.parse("embed this: oom killer took the server again")
    assert command.intent is Intent.EMBED_TEXT and command.slots.texts == ["oom killer took the server again"]
    command = agent.parse("topics classifier on: gpu prices spike again")
    assert (command.intent, command.slots.classifier, command.slots.texts) == (
        Intent.CLASSIFY_TEXT, "topics", ["gpu prices spike again"])


def test_leaving_something_else_is_no_exit():
    agent = _believing([(Intent.EXIT, 0.9), (Intent.UNKNOWN, 0.1)])
    assert agent.parse("I'll close the ticket once legal signs off.").intent is Intent.UNKNOWN
    assert agent.parse("ok I quit my old job today").intent is Intent.UNKNOWN
    assert agent.parse("that's all, please close the shell").intent is Intent.EXIT
    assert agent.parse("bye, I'll close the ticket tomorrow").intent is Intent.EXIT


def test_dropping_that_endpoint_after_a_story_forgets_it():
    agent = DecisionAgent(lambda: NAMES + ["fleet"], endpoint_names=lambda: ["fleet"])
    command = agent.parse("We cancelled the fleet contract, please drop that endpoint.")
    assert (command.intent, command.slots.name) == (Intent.REMOVE_ENDPOINT, "fleet")
    assert agent.parse("drop demo-f16 from memory").intent is Intent.UNLOAD_MODEL_API


# -- part 21's forms ----------------------------------------------------------------------------------------------

def test_the_help_on_a_topic_inside_a_sentence(agent):
    command = agent.parse("let's bring up the help on quantization so you can read along")
    assert (command.intent, command.slots.kind) == (Intent.SHOW_HELP, "quantize")


def test_a_question_word_makes_no_typo_of_an_english_word():
    split = split_line("so what's sitting in our model folder right now? let's list them", NAMES)
    assert "setting" not in split.words and not split.corrections


def test_a_familys_plural_then_a_comma_heads_its_list(agent):
    command = agent.parse("let's benchmark the three GGUF demos, f16, q8_0 and q4_k_m, and see how speed scales")
    assert command.slots.models == ["demo-f16", "demo-q8_0", "demo-q4_k_m"]


def test_its_original_before_like(agent):
    command = agent.parse("how much does demo-q4_k_m drift from its original like perplexity and kl divergence")
    assert command.intent is Intent.FIDELITY_REPORT and command.slots.models == ["demo-q4_k_m", "demo-hf"]


LLAMA = NAMES + ["llama-3-8b-q4_k_m", "mistral-7b-instruct-q5_k_m", "phi-3-mini", "cloud"]


@pytest.mark.parametrize("line, models", [
    ("compare qwen, phi-3-mini, llama", ["Qwen2.5-0.5B-Instruct", "phi-3-mini", "llama-3-8b-q4_k_m"]),
    ("speed test llama vs mistral", ["llama-3-8b-q4_k_m", "mistral-7b-instruct-q5_k_m"]),
])
def test_an_english_word_that_is_a_family_names_its_model_in_a_list(line, models):
    assert DecisionAgent(lambda: LLAMA).parse(line).slots.models == models


def test_an_english_word_that_is_a_family_alone_is_english():
    for line in ("I saw a llama at the zoo", "llama farmers are nice"):
        command = DecisionAgent(lambda: LLAMA).parse(line)
        assert command.intent is Intent.UNKNOWN and "llama-3-8b-q4_k_m" not in (command.slots.models or
                                                                               [command.slots.model]), line


def test_a_hub_repository_after_a_colon_is_named(agent):
    command = agent.parse("let's pull a fresh model from the hub: download HuggingFaceTB/SmolLM2-360M-Instruct")
    assert (command.intent, command.slots.model) == (Intent.DOWNLOAD_MODEL, "HuggingFaceTB/SmolLM2-360M-Instruct")


# -- part 22's forms ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, intent, model", [
    ("step 2b: quantize demo-hf to q4_1", Intent.QUANTIZE_MODEL, "demo-hf"),  # "2b" is the step, no model
    ("3) load demo-q8_0", Intent.LOAD_MODEL_API, "demo-q8_0"),
])
def test_a_runbooks_step_label_is_no_model(agent, line, intent, model):
    command = agent.parse(line)
    assert (command.intent, command.slots.model) == (intent, model)


def test_a_line_that_ends_on_an_exit_word_exits(agent):
    assert agent.parse("peace out chat! quit").intent is Intent.EXIT
    assert agent.parse("done for today. exit").intent is Intent.EXIT


def test_should_i_use_a_or_b_from_the_logged_benchmarks_is_a_recommendation(agent):
    command = agent.parse("from the logged benchmarks, should I use smol-q4_1 or smol-bnb-nf4?")
    assert command.intent is Intent.RECOMMEND_MODEL and command.slots.models == ["smol-q4_1", "smol-bnb-nf4"]
