"""Natural language -> intent and slots: the brief's phrasings, paraphrases, typos, tricky names."""

from __future__ import annotations

import pytest

from agents.decision_agent import DecisionAgent, llm_classifier
from agents.intents import Intent

KNOWN = [
    "demo-f16", "demo-q8_0", "demo-q4_k_m", "demo-gptq-4bit", "demo-bnb-nf4", "demo-bnb-int8", "demo-hf",
    "chat-helper-v2", "stats-model-1", "load-balancer.v1", "my_model", "Qwen2.5-0.5B-Instruct",
]
L, U, ST, SP, S = (Intent.LOAD_MODEL_API, Intent.UNLOAD_MODEL_API, Intent.START_API_SERVER,
                   Intent.STOP_API_SERVER, Intent.SHOW_API_STATUS)
LM, C, E, Q, D = (Intent.LIST_MODELS, Intent.CHAT_WITH_MODEL, Intent.EXPERIMENT_WITH_MODEL,
                  Intent.QUANTIZE_MODEL, Intent.DOWNLOAD_MODEL)
BATCH, CONV, BENCH, CMP, FID, AGR = (Intent.BATCH_EXPERIMENT, Intent.CONVERSATION_EXPERIMENT, Intent.BENCHMARK_MODELS,
                                     Intent.COMPARE_MODELS, Intent.FIDELITY_REPORT, Intent.AGREEMENT_REPORT)
LE, STATS, CFG, H, X = (Intent.LIST_EXPERIMENTS, Intent.SHOW_STATISTICS, Intent.SHOW_CONFIG,
                        Intent.SHOW_HELP, Intent.EXIT)

CASES = [
    # The brief's own phrasings.
    ("start server", ST, {}),
    ("start api server", ST, {}),
    ("stop server", SP, {}),
    ("show api status", S, {}),
    ("api status", S, {}),
    ("load model api demo-q4_k_m", L, {"model": "demo-q4_k_m"}),
    ("serve model demo-q4_k_m", L, {"model": "demo-q4_k_m"}),
    ("unload model demo-q4_k_m", U, {"model": "demo-q4_k_m"}),
    ("show loaded models", S, {}),
    ("chat with model demo-q4_k_m", C, {"model": "demo-q4_k_m"}),
    ("talk to model demo-q4_k_m", C, {"model": "demo-q4_k_m"}),
    ("experiment with model demo-q4_k_m", E, {"model": "demo-q4_k_m"}),
    ("benchmark model demo-q4_k_m", BENCH, {"model": "demo-q4_k_m"}),
    ("compare models demo-q4_k_m and demo-f16", CMP, {"models": ["demo-q4_k_m", "demo-f16"]}),
    ("list experiments", LE, {}),
    ("show statistics", STATS, {}),
    # Server, paraphrased.
    ("start the server", ST, {}),
    ("please start the api server", ST, {}),
    ("start server on port 8080", ST, {"port": 8080}),
    ("start server port 9000", ST, {"port": 9000}),
    ("start api server on 8123", ST, {"port": 8123}),
    ("launch the api", ST, {}),
    ("boot up the server", ST, {}),
    ("spin up the api server on port 7000", ST, {"port": 7000}),
    ("run the server", ST, {}),
    ("start server :8181", ST, {"port": 8181}),
    ("Start Server", ST, {}),
    ("START API SERVER", ST, {}),
    ("could you start the server please", ST, {}),
    ("serve", ST, {}),
    ("serve the api on port 8001", ST, {"port": 8001}),
    ("stop the server", SP, {}),
    ("shut down the server", SP, {}),
    ("shutdown api", SP, {}),
    ("kill the server", SP, {}),
    ("please stop the api server", SP, {}),
    ("halt server", SP, {}),
    ("stop", SP, {}),
    ("server status", S, {}),
    ("status", S, {}),
    ("what's the api status", S, {}),
    ("is the server running?", S, {}),
    ("show status", S, {}),
    ("show server", S, {}),
    ("loaded models", S, {}),
    ("which models are loaded", S, {}),
    ("health", S, {}),
    # Typos.
    ("strat server", ST, {}),
    ("start sever", ST, {}),
    ("stpo server", SP, {}),
    ("laod demo-q4_k_m", L, {"model": "demo-q4_k_m"}),
    ("laod model demo-q8_0", L, {"model": "demo-q8_0"}),
    ("unlaod demo-q8_0", U, {"model": "demo-q8_0"}),
    ("chta with demo-f16", C, {"model": "demo-f16"}),
    ("lsit models", LM, {}),
    ("shwo models", LM, {}),
    ("benchmakr demo-q4_k_m", BENCH, {"model": "demo-q4_k_m"}),
    ("comapre demo-q4_k_m and demo-q8_0", CMP, {"models": ["demo-q4_k_m", "demo-q8_0"]}),
    ("quantzie demo-hf to q4_k_m", Q, {"model": "demo-hf", "level": "q4_k_m", "method": "gguf", "bits": 4}),
    ("statistcs", STATS, {}),
    ("hlep", H, {}),
    ("exti", X, {}),
    ("api staus", S, {}),
    # Loading and unloading.
    ("load demo-q4_k_m", L, {"model": "demo-q4_k_m"}),
    ("load model demo-q4_k_m", L, {"model": "demo-q4_k_m"}),
    ("Load Model DEMO-Q4_K_M", L, {"model": "demo-q4_k_m"}),
    ("please load demo-gptq-4bit", L, {"model": "demo-gptq-4bit"}),
    ("can you load the model demo-bnb-nf4 for me", L, {"model": "demo-bnb-nf4"}),
    ("load 'demo-hf'", L, {"model": "demo-hf"}),
    ('load "demo-hf"', L, {"model": "demo-hf"}),
    ("load q4_k_m", L, {"model": "demo-q4_k_m"}),
    ("load gptq-4bit", L, {"model": "demo-gptq-4bit"}),
    ("load bnb-int8", L, {"model": "demo-bnb-int8"}),
    ("demo-q8_0 load", L, {"model": "demo-q8_0"}),
    ("serve demo-f16", L, {"model": "demo-f16"}),
    ("host model demo-f16", L, {"model": "demo-f16"}),
    ("load chat-helper-v2", L, {"model": "chat-helper-v2"}),
    ("load stats-model-1", L, {"model": "stats-model-1"}),
    ("load load-balancer.v1", L, {"model": "load-balancer.v1"}),
    ("load my_model", L, {"model": "my_model"}),
    ("load Qwen2.5-0.5B-Instruct", L, {"model": "Qwen2.5-0.5B-Instruct"}),
    ("load model api chat-helper-v2", L, {"model": "chat-helper-v2"}),
    ("load", L, {}),
    ("load model", L, {}),
    ("unload demo-q4_k_m", U, {"model": "demo-q4_k_m"}),
    ("unload the model demo-q4_k_m please", U, {"model": "demo-q4_k_m"}),
    ("evict demo-f16", U, {"model": "demo-f16"}),
    ("release demo-hf from memory", U, {"model": "demo-hf"}),
    ("unload stats-model-1", U, {"model": "stats-model-1"}),
    ("unload chat-helper-v2", U, {"model": "chat-helper-v2"}),
    ("unload", U, {}),
    ("load llama", L, {"model": "llama"}),
    ("chat with mistral", C, {"model": "mistral"}),
    # Chat.
    ("chat with demo-q4_k_m", C, {"model": "demo-q4_k_m"}),
    ("chat demo-q4_k_m", C, {"model": "demo-q4_k_m"}),
    ("talk to demo-f16", C, {"model": "demo-f16"}),
    ("let's chat with demo-hf", C, {"model": "demo-hf"}),
    ("I want to talk to the model demo-bnb-nf4", C, {"model": "demo-bnb-nf4"}),
    ("chat with chat-helper-v2", C, {"model": "chat-helper-v2"}),
    ("talk to stats-model-1", C, {"model": "stats-model-1"}),
    ("chat with q8_0", C, {"model": "demo-q8_0"}),
    ('ask demo-q4_k_m "what does shuffle do?"', C, {"model": "demo-q4_k_m", "prompt": "what does shuffle do?"}),
    ("ask demo-q4_k_m: what does shuffle do?", C, {"model": "demo-q4_k_m", "prompt": "what does shuffle do?"}),
    ("chat", C, {}),
    ("chat with Qwen2.5-0.5B-Instruct", C, {"model": "Qwen2.5-0.5B-Instruct"}),
    # Listing.
    ("list models", LM, {}),
    ("show models", LM, {}),
    ("list", LM, {}),
    ("ls", LM, {}),
    ("models", LM, {}),
    ("what models are available", LM, {}),
    ("show me the available models", LM, {}),
    ("which models do i have", LM, {}),
    ("list all models on disk", LM, {}),
    ("show available models", LM, {}),
    ("display models", LM, {}),
    # Experiments.
    ("experiment with demo-q4_k_m", E, {"model": "demo-q4_k_m"}),
    ('experiment with demo-q4_k_m "hello there"', E, {"model": "demo-q4_k_m", "prompt": "hello there"}),
    ("run a batch experiment on demo-q4_k_m with prompts.txt", BATCH,
     {"model": "demo-q4_k_m", "file": "prompts.txt"}),
    ("batch demo-f16 prompts.jsonl", BATCH, {"model": "demo-f16", "file": "prompts.jsonl"}),
    ("conversation experiment with demo-hf", CONV, {"model": "demo-hf"}),
    ("benchmark demo-q4_k_m", BENCH, {"model": "demo-q4_k_m"}),
    ("bench demo-f16", BENCH, {"model": "demo-f16"}),
    ("how fast is demo-q8_0? benchmark it", BENCH, {"model": "demo-q8_0"}),
    ("benchmark stats-model-1", BENCH, {"model": "stats-model-1"}),
    ("benchmark", BENCH, {}),
    ("compare demo-q4_k_m and demo-f16", CMP, {"models": ["demo-q4_k_m", "demo-f16"]}),
    ("compare demo-q4_k_m vs demo-q8_0", CMP, {"models": ["demo-q4_k_m", "demo-q8_0"]}),
    ("demo-q4_k_m versus demo-f16", CMP, {"models": ["demo-q4_k_m", "demo-f16"]}),
    ("compare models", CMP, {}),
    ("compare demo-q4_k_m, demo-q8_0 and demo-f16", CMP,
     {"models": ["demo-q4_k_m", "demo-q8_0", "demo-f16"]}),
    ("compare q4_k_m and q8_0", CMP, {"models": ["demo-q4_k_m", "demo-q8_0"]}),
    ("compare chat-helper-v2 and stats-model-1", CMP, {"models": ["chat-helper-v2", "stats-model-1"]}),
    # Fidelity, agreement, multi-model benchmark, conversation scripts.
    ("fidelity of demo-q4_k_m", FID, {"model": "demo-q4_k_m"}),
    ("fidelity of demo-q4_k_m against demo-f16", FID,
     {"model": "demo-q4_k_m", "models": ["demo-q4_k_m", "demo-f16"]}),
    ("kld q4_k_m vs demo-hf", FID, {"model": "demo-q4_k_m", "models": ["demo-q4_k_m", "demo-hf"]}),
    ("how faithful is q8_0", FID, {"model": "demo-q8_0"}),
    ("perplexity of demo-q4_k_m on notes.txt", FID, {"model": "demo-q4_k_m", "file": "notes.txt"}),
    ("agreement of demo-q4_k_m and demo-hf on labels.jsonl", AGR,
     {"models": ["demo-q4_k_m", "demo-hf"], "file": "labels.jsonl"}),
    ("check agreement between demo-q4_k_m and http://127.0.0.1:8000/v1#demo-hf on labels.jsonl", AGR,
     {"models": ["demo-q4_k_m", "http://127.0.0.1:8000/v1#demo-hf"], "file": "labels.jsonl"}),
    ("benchmark demo-q4_k_m and demo-q8_0", BENCH, {"models": ["demo-q4_k_m", "demo-q8_0"]}),
    ("batch demo-q4_k_m /tmp/data/prompts.txt", BATCH, {"model": "demo-q4_k_m", "file": "/tmp/data/prompts.txt"}),
    ("batch demo-q4_k_m ~/prompts.txt", BATCH, {"model": "demo-q4_k_m", "file": "~/prompts.txt"}),
    ("batch demo-q4_k_m ./prompts.jsonl", BATCH, {"model": "demo-q4_k_m", "file": "./prompts.jsonl"}),
    ("conversation with demo-hf on script.txt", CONV, {"model": "demo-hf", "file": "script.txt"}),
    ("list experiments", LE, {}),
    ("show experiments", LE, {}),
    ("experiments", LE, {}),
    ("show experiment history", LE, {}),
    ("history", LE, {}),
    ("list past runs", LE, {}),
    # Quantization and download.
    ("quantize Qwen/Qwen2.5-0.5B-Instruct to 4-bit gguf", Q,
     {"model": "Qwen/Qwen2.5-0.5B-Instruct", "bits": 4, "method": "gguf"}),
    ("quantize demo-hf to q4_k_m", Q, {"model": "demo-hf", "level": "q4_k_m", "method": "gguf", "bits": 4}),
    ("quantize demo-hf with gptq 8 bits", Q, {"model": "demo-hf", "method": "gptq", "bits": 8}),
    ("quantize demo-hf to nf4", Q, {"model": "demo-hf", "method": "bnb", "level": "nf4", "bits": 4}),
    ("quantise demo-hf int8", Q, {"model": "demo-hf", "method": "bnb", "level": "int8", "bits": 8}),
    ("convert demo-hf to gguf q8_0", Q, {"model": "demo-hf", "method": "gguf", "level": "q8_0", "bits": 8}),
    ("compress demo-hf to 4bit bnb", Q, {"model": "demo-hf", "method": "bnb", "bits": 4}),
    ("quantize demo-hf", Q, {"model": "demo-hf"}),
    ("quantize", Q, {}),
    ("download Qwen/Qwen2.5-0.5B-Instruct", D, {"model": "Qwen/Qwen2.5-0.5B-Instruct"}),
    ("pull model Qwen/Qwen2.5-0.5B-Instruct", D, {"model": "Qwen/Qwen2.5-0.5B-Instruct"}),
    ("fetch TinyLlama/TinyLlama-1.1B-Chat-v1.0", D, {"model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0"}),
    ("download", D, {}),
    ("download TheBloke/Llama-2-7B-GGUF q4_k_m as llama2", D,
     {"model": "TheBloke/Llama-2-7B-GGUF", "level": "q4_k_m", "name": "llama2"}),
    ("quantize demo-hf to iq4_xs with imatrix and fidelity --yes as tiny-iq4", Q,
     {"model": "demo-hf", "method": "gguf", "level": "iq4_xs", "bits": 4, "name": "tiny-iq4", "yes": True,
      "imatrix": True, "fidelity": True}),
    ("quantize demo-hf to 4-bit gptq with calib.txt -y", Q,
     {"model": "demo-hf", "method": "gptq", "bits": 4, "file": "calib.txt", "yes": True}),
    ("quantise demo-hf to q5_k_m using the importance matrix", Q,
     {"model": "demo-hf", "method": "gguf", "level": "q5_k_m", "bits": 5, "imatrix": True}),
    ("import /data/models/qwen as qwen-local", Intent.IMPORT_MODEL,
     {"model": "/data/models/qwen", "name": "qwen-local"}),
    ("import ~/Downloads/model.gguf", Intent.IMPORT_MODEL, {"model": "~/Downloads/model.gguf"}),
    ("login", Intent.LOGIN, {}),
    ("log in to hugging face", Intent.LOGIN, {}),
    ("list quantizations", Intent.LIST_QUANTIZATIONS, {}),
    ("show quantization history", Intent.LIST_QUANTIZATIONS, {}),
    # Statistics, config, help, exit.
    ("show statistics", STATS, {}),
    ("stats", STATS, {}),
    ("show me the stats", STATS, {}),
    ("usage statistics", STATS, {}),
    ("show config", CFG, {}),
    ("config", CFG, {}),
    ("show settings", CFG, {}),
    ("what is the configuration", CFG, {}),
    ("help", H, {}),
    ("?", H, {}),
    ("what can you do", H, {}),
    ("show commands", H, {}),
    ("exit", X, {}),
    ("quit", X, {}),
    ("bye", X, {}),
    ("q", X, {}),
    ("Exit!", X, {}),
]


@pytest.fixture(scope="module")
def agent():
    return DecisionAgent(lambda: KNOWN)


def test_the_table_is_big_enough():
    assert len(CASES) >= 150


@pytest.mark.parametrize("text,intent,slots", CASES, ids=[c[0] for c in CASES])
def test_phrasing(agent, text, intent, slots):
    command = agent.parse(text)
    assert command.intent is intent, command.to_dict()
    got = command.slots.to_dict()
    for key, value in slots.items():
        assert got.get(key) == value, (key, got)
    if intent in (L, U, C) and "model" not in slots:
        assert command.question and command.choices  # asks instead of failing
    unexpected = set(got) - set(slots) - {"models", "model"}
    assert not unexpected, got


@pytest.mark.parametrize("text", ["frobnicate the flux capacitor", "asdf qwerty", "make me a sandwich"])
def test_unknown_with_a_suggestion(agent, text):
    command = agent.parse(text)
    assert command.intent is Intent.UNKNOWN and command.suggestion


def test_a_bare_model_name_suggests_chatting(agent):
    command = agent.parse("demo-q4_k_m")
    assert command.intent is Intent.UNKNOWN and command.suggestion == "chat with demo-q4_k_m"


def test_llm_assist_only_when_rules_cannot_place(agent):
    calls = []

    def assist(line):
        calls.append(line)
        return {"intent": "LIST_MODELS", "slots": {}}

    assisted = DecisionAgent(lambda: KNOWN, assist=assist)
    assert assisted.parse("load demo-q4_k_m").intent is L and calls == []  # rules win
    assert assisted.parse("gimme the goods").intent is LM and calls == ["gimme the goods"]


def test_llm_assist_answers_are_validated():
    bad_answers = [None, "text", {"intent": "FLY"}, {"intent": "LOAD_MODEL_API", "slots": {"colour": "red"}}]
    for answer in bad_answers:
        agent = DecisionAgent(lambda: KNOWN, assist=lambda line, a=answer: a)
        assert agent.parse("gimme the goods").intent is Intent.UNKNOWN


def test_llm_classifier_reads_json_from_a_completion():
    classify = llm_classifier(lambda prompt: 'Sure! {"intent": "SHOW_CONFIG", "slots": {}} done')
    assert classify("x") == {"intent": "SHOW_CONFIG", "slots": {}}
    assert llm_classifier(lambda prompt: "no json here")("x") is None


@pytest.mark.parametrize("text", ["agreement of demo-q4_k_m and demo-hf", "agreement of demo-q4_k_m on labels.jsonl"])
def test_agreement_asks_for_what_is_missing(agent, text):
    command = agent.parse(text)
    assert command.intent is AGR and "two models" in command.question and "data.jsonl" in command.question


@pytest.mark.parametrize("text", ["the purple elephant sings quietly at dawn", "how many tokens do i have", "tokens",
                                  "the tests look good"])
def test_dictionary_words_are_not_turned_into_commands(agent, text):
    command = agent.parse(text)
    assert command.intent is Intent.UNKNOWN and not command.corrections


def test_corrections_are_recorded_and_lower_the_confidence(agent):
    command = agent.parse("unlaod demo-q8_0")
    assert command.intent is U and command.corrections == ["unlaod -> unload"] and command.confidence < 0.9
    assert agent.parse("unload demo-q8_0").confidence == 1.0
    # A dictionary word is corrected only when it completes a command pair with its neighbour.
    assert agent.parse("start sever").corrections == ["sever -> server"]


def test_unknown_suggests_the_two_closest_commands_with_the_model_name(agent):
    command = agent.parse("frobnicate demo-q8_0")
    assert command.intent is Intent.UNKNOWN and len(command.choices) == 2
    assert all("demo-q8_0" in choice for choice in command.choices)


def test_guarded_intents_ask_when_guessed():
    from agents.executor_agent import Executor

    parse = DecisionAgent(lambda: KNOWN).parse
    confirm = Executor.confirmation(parse("unlaod demo-q8_0"))
    assert confirm is not None and confirm.question == "Did you mean: unload demo-q8_0? [y/N]"
    assert Executor.confirmation(parse("unlaod demo-q8_0 --yes")) is None
    assert Executor.confirmation(parse("unload demo-q8_0")) is None
    assert Executor.confirmation(parse("laod demo-q8_0")) is None  # loading loses nothing
    assert Executor.confirmation(parse("stpo server")).question == "Did you mean: stop server? [y/N]"


def test_a_guess_asks_before_it_acts(agent):
    """Below the confidence floor any command asks, except one that only reads (it runs, saying what it
    understood); a corrected word makes a destructive one ask too."""
    from agents import intent_table as table
    from agents import results as r
    from agents.executor_agent import Executor

    unsure = agent.parse("laod modle demo-q8_0")  # two corrections
    assert unsure.intent is Intent.LOAD_MODEL_API and unsure.confidence < 0.8
    assert isinstance(Executor.confirmation(unsure), r.Confirm)
    reading = agent.parse("shwo stauts")  # two corrections too, but it only reads
    assert reading.intent is S and reading.confidence < 0.8 and table.runs_as_understood(reading)
    assert Executor.confirmation(reading) is None
    assert Executor.confirmation(agent.parse("laod demo-q8_0")) is None  # one typo, harmless: it loads
    destructive = agent.parse("unlaod demo-q8_0")
    assert isinstance(Executor.confirmation(destructive), r.Confirm)
    assert "unload demo-q8_0" in Executor.confirmation(destructive).question
    assert Executor.confirmation(agent.parse("unlaod demo-q8_0 --yes")) is None
    assert Executor.confirmation(agent.parse("unload demo-q8_0")) is None  # typed right: no question
