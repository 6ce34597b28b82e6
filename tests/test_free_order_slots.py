"""Slots read in any word order once the intent is known: endpoints, the default model, exports, classifiers."""

from __future__ import annotations

import pytest

from agents.classifier_parse import classifier_command, classifier_slots
from agents.endpoint_commands import endpoint_command, endpoint_slots
from agents.intents import Intent

KNOWN = ["demo-hf", "demo-f16", "demo-q8_0", "demo-q4_k_m", "demo-gptq-4bit", "smol-hf", "smol-q4_1", "minilm-hf"]
CLASSIFIERS = ["spam", "sentiment", "topics", "code-lang"]
KEY = "remote-key-5b1e0c7d9a41"
API = "https://api.example.com/v1"


def _read(command, expected: dict) -> None:
    """The command's slots are exactly `expected` and it asks nothing."""
    assert (command.slots.to_dict(), command.question) == (expected, None)


# -- endpoints ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line, expected", [
    (f"register an endpoint named cloud at {API} model gpt-4o-mini key from OPENAI_API_KEY",
     {"name": "cloud", "urls": [API], "remote_model": "gpt-4o-mini", "key_env": "OPENAI_API_KEY"}),
    ("point a new endpoint gpu-box to http://10.0.0.5:8000/v1", {"name": "gpu-box", "urls": ["http://10.0.0.5:8000/v1"]}),
    ("https://x.example/v1 should be an endpoint called cloud", {"name": "cloud", "urls": ["https://x.example/v1"]}),
    ("add https://a:8000/v1 and https://b:8000/v1 as endpoint fleet serving llama-3 with key in $FLEET_KEY",
     {"name": "fleet", "urls": ["https://a:8000/v1", "https://b:8000/v1"], "remote_model": "llama-3",
      "key_env": "FLEET_KEY"}),
    (f"I want to add a remote server named cloud: {API}, the model is gpt-4o-mini and the key is in OPENAI_API_KEY",
     {"name": "cloud", "urls": [API], "remote_model": "gpt-4o-mini", "key_env": "OPENAI_API_KEY"}),
    (f"the cloud endpoint is at {API}.", {"name": "cloud", "urls": [API]}),  # the sentence's full stop is no URL's
    (f"register cloud at {API} serving a model called gpt-4o",
     {"name": "cloud", "urls": [API], "remote_model": "gpt-4o"}),
    (f"add endpoint cloud at {API} with api key OPENAI_API_KEY",
     {"name": "cloud", "urls": [API], "key_env": "OPENAI_API_KEY"}),
    (f"add endpoint cloud at {API}, no key needed", {"name": "cloud", "urls": [API]}),
])
def test_an_endpoint_is_read_in_any_order(line, expected):
    command = endpoint_slots(Intent.ADD_ENDPOINT, line, KNOWN)
    assert command.intent is Intent.ADD_ENDPOINT
    _read(command, expected)


@pytest.mark.parametrize("line", [
    f"add endpoint x at http://10.0.0.5:8000/v1 key {KEY}",
    f"register cloud at {API}, the key is {KEY}",
    f"I want a remote server named cloud: {API} and the token: {KEY}",
    f"add an endpoint cloud at {API} using sk-proj-abcdefghijklmnop",
    f"add endpoint cloud at {API}?api_key=abc123def",  # a key in the URL is a key too
    f"add endpoint cloud at {API} with key from {KEY}",  # not a variable's name, whatever the cue says
])
def test_a_typed_key_is_never_kept_and_its_variable_is_asked_for(line):
    command = endpoint_slots(Intent.ADD_ENDPOINT, line, KNOWN)
    assert command.question and "never the key" in command.question and "key from ENV_VAR" in command.question
    assert command.slots.to_dict() == {}  # not even the name or URL: the whole line is the user's to retype
    for secret in (KEY, "sk-proj-abcdefghijklmnop", "abc123def"):
        assert secret not in repr(command)


@pytest.mark.parametrize("line, question", [
    ("add an endpoint called cloud",
     "The endpoint needs a URL: add endpoint cloud at http://HOST:PORT/v1 [model M] [key from ENV_VAR]"),
    (f"add {API} as an endpoint",
     f"The endpoint needs a name: add endpoint NAME at {API} [model M] [key from ENV_VAR]"),
    ("add an endpoint", "The endpoint needs a name and a URL: add endpoint NAME at http://HOST:PORT/v1 [model M] "
                        "[key from ENV_VAR]"),
])
def test_a_missing_name_or_url_is_asked_for_with_what_was_typed(line, question):
    assert endpoint_slots(Intent.ADD_ENDPOINT, line, KNOWN).question == question


@pytest.mark.parametrize("line, name", [
    ("forget the fleet endpoint", "fleet"),
    ("get rid of endpoint cloud", "cloud"),
    ("I no longer need the gpu-box endpoint", "gpu-box"),
    ("drop cloud please", "cloud"),
])
def test_an_endpoint_to_remove(line, name):
    _read(endpoint_slots(Intent.REMOVE_ENDPOINT, line, KNOWN), {"name": name})


def test_removing_asks_when_nothing_is_named_and_takes_the_one_known_name():
    ask = "Remove which endpoint? remove endpoint NAME (list endpoints shows them)"
    command = endpoint_slots(Intent.REMOVE_ENDPOINT, "remove an endpoint", KNOWN)
    assert (command.slots.name, command.question) == (None, ask)
    # The shell's known names include its endpoints (ModelManager.available): the one named is the one meant;
    # a local model's name reaches the handler, which says it is no endpoint.
    for line in ("I'd like cloud removed from the endpoints", "unregister cloud", "take cloud off the list"):
        assert endpoint_slots(Intent.REMOVE_ENDPOINT, line, [*KNOWN, "cloud", "fleet"]).slots.name == "cloud"
    both = "remove the remote endpoint cloud and keep fleet"
    assert endpoint_slots(Intent.REMOVE_ENDPOINT, both, [*KNOWN, "cloud", "fleet"]).slots.name == "cloud"


@pytest.mark.parametrize("line, chain", [
    ("make demo-q4_k_m the default model", ["demo-q4_k_m"]),
    ("I'd like smol-hf to be the default", ["smol-hf"]),
    ("switch the default to demo-f16, falling back to demo-q8_0", ["demo-f16", "demo-q8_0"]),
    ("default to demo-hf then demo-q8_0", ["demo-hf", "demo-q8_0"]),
    ("use far then q4_k_m", ["far", "demo-q4_k_m"]),  # an endpoint's name, and a part of a model's
    ("with demo-q8_0 as a fallback, make demo-f16 the default", ["demo-f16", "demo-q8_0"]),
    ("make demo-f16 the default instead of demo-q8_0", ["demo-f16"]),
])
def test_the_default_model_and_its_fallbacks(line, chain):
    _read(endpoint_slots(Intent.USE_MODEL, line, KNOWN), {"model": chain[0], "models": chain})


def test_a_default_with_no_model_asks_which():
    command = endpoint_slots(Intent.USE_MODEL, "change the default model", KNOWN)
    assert command.question == "Which model should be the default? use NAME [then OTHER]"
    assert command.choices == KNOWN and command.slots.model is None


@pytest.mark.parametrize("line, model, kind", [
    ("how would I serve demo-gptq-4bit with vllm?", "demo-gptq-4bit", "vllm"),
    ("give me the llama-server command for smol-q4_1", "smol-q4_1", "llama-server"),
    ("export demo-q8_0 to llama.cpp's server", "demo-q8_0", "llama-server"),
    ("can vllm run demo-hf?", "demo-hf", "vllm"),
    ("export demo-f16 for llama server", "demo-f16", "llama-server"),
    ("for llama.cpp, export q4_k_m", "demo-q4_k_m", "llama-server"),
])
def test_an_export_reads_the_model_and_the_engine(line, model, kind):
    _read(endpoint_slots(Intent.EXPORT_MODEL, line, KNOWN), {"model": model, "kind": kind})


def test_an_export_asks_for_what_it_lacks():
    no_engine = endpoint_slots(Intent.EXPORT_MODEL, "export q8_0", KNOWN)
    assert no_engine.slots.model == "demo-q8_0" and not no_engine.choices
    assert no_engine.question == ("Serve demo-q8_0 on which engine? export demo-q8_0 for vllm, or export demo-q8_0 "
                                  "for llama-server")
    no_model = endpoint_slots(Intent.EXPORT_MODEL, "give me the vllm command", KNOWN)
    assert (no_model.slots.kind, no_model.choices) == ("vllm", KNOWN)
    assert no_model.question == "Export which model? export NAME for vllm|llama-server"


def test_listing_endpoints_needs_no_slot_and_other_intents_are_refused():
    _read(endpoint_slots(Intent.LIST_ENDPOINTS, "what endpoints do I have?"), {})
    with pytest.raises(ValueError, match="LOAD_MODEL_API"):
        endpoint_slots(Intent.LOAD_MODEL_API, "load demo-hf")


def test_the_exact_forms_read_as_before():
    add = endpoint_command("add endpoint big at http://10.0.0.5:8000/v1, http://10.0.0.6:8000 model qwen key from VK")
    assert add.slots.to_dict() == {"name": "big", "urls": ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000"],
                                   "remote_model": "qwen", "key_env": "VK"}
    assert endpoint_command(f"add endpoint x at {API} key {KEY}").slots.to_dict() == {}
    assert endpoint_command("export demo-f16 for llama server").slots.kind == "llama-server"
    assert endpoint_command("use big then q4_k_m").slots.models == ["big", "q4_k_m"]


# -- classifiers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("classifiers", [CLASSIFIERS, ()])  # with the names on disk, and from the cues alone
@pytest.mark.parametrize("line, name, text", [
    ('what does the spam classifier say about "win a free phone"?', "spam", "win a free phone"),
    ('run sentiment on "I love it"', "sentiment", "I love it"),
    ('is "buy now!!!" spam according to spam?', "spam", "buy now!!!"),
    ('label "def f(): pass" using code-lang', "code-lang", "def f(): pass"),
    ("what's the sentiment classifier's take on 'it's great'", "sentiment", "it's great"),  # apostrophes open nothing
    ("classify with spam: win a free phone", "spam", "win a free phone"),
])
def test_a_text_to_classify_and_the_classifier(line, name, text, classifiers):
    command = classifier_slots(Intent.CLASSIFY_TEXT, line, KNOWN, classifiers)
    _read(command, {"classifier": name, "prompt": text, "texts": [text]})


def test_classifying_asks_for_a_missing_text_or_classifier():
    ask = 'Classify which text with which classifier? e.g. classify "def f(x): return x" with NAME'
    assert classifier_slots(Intent.CLASSIFY_TEXT, 'classify "x"', KNOWN, CLASSIFIERS).question == ask
    no_text = classifier_slots(Intent.CLASSIFY_TEXT, "what does the spam classifier say", KNOWN, CLASSIFIERS)
    assert (no_text.slots.classifier, no_text.question) == ("spam", ask)


@pytest.mark.parametrize("classifiers", [CLASSIFIERS, ()])
@pytest.mark.parametrize("line, expected", [
    ("how well does topics hold up on demo-q4_k_m and demo-q8_0?",
     {"classifier": "topics", "models": ["demo-q4_k_m", "demo-q8_0"]}),
    ("does the spam classifier still work on smol-q4_1 with holdout.csv",
     {"classifier": "spam", "models": ["smol-q4_1"], "file": "holdout.csv"}),
    ("on q8_0 and q4_k_m, check spam using the test set 'my data.jsonl'",
     {"classifier": "spam", "models": ["demo-q8_0", "demo-q4_k_m"], "file": "my data.jsonl"}),
    ("with tests.csv dropping unknown labels, evaluate the topics classifier on demo-f16",
     {"classifier": "topics", "models": ["demo-f16"], "file": "tests.csv"}),
])
def test_a_check_reads_the_classifier_the_variants_and_the_file(line, expected, classifiers):
    _read(classifier_slots(Intent.CHECK_CLASSIFIER, line, KNOWN, classifiers), expected)


def test_a_check_asks_with_the_exact_forms_words():
    form = "check classifier spam on demo-q8_0 and demo-q4_k_m"
    assert classifier_slots(Intent.CHECK_CLASSIFIER, "is spam still any good?", KNOWN, CLASSIFIERS).question == \
        f"Check which classifier on which variants? e.g. {form}"
    assert classifier_slots(Intent.CHECK_CLASSIFIER, "check spam with tests.csv", KNOWN, CLASSIFIERS).question == \
        f"Check classifier spam with tests.csv on which variants? e.g. {form} with tests.csv"
    two = classifier_slots(Intent.CHECK_CLASSIFIER, "check spam on demo-q8_0 with a.csv and b.csv", KNOWN)
    assert two.question.startswith("One labelled file per check (a.csv and b.csv were named)")


@pytest.mark.parametrize("classifiers", [CLASSIFIERS, ()])
@pytest.mark.parametrize("line, expected", [
    ("teach a classifier called sentiment from reviews.csv on top of minilm-hf",
     {"classifier": "sentiment", "file": "reviews.csv", "model": "minilm-hf"}),
    ("using minilm-hf, train spam on mail.jsonl", {"classifier": "spam", "file": "mail.jsonl", "model": "minilm-hf"}),
    ("with logreg and pca 0.9, train spam on mail.jsonl using smol-hf, label column tag, text column body",
     {"classifier": "spam", "file": "mail.jsonl", "model": "smol-hf", "algorithm": "logreg", "pca": 0.9,
      "label_column": "tag", "text_column": "body"}),
    ("build a new topics classifier over demo-hf from 'my data.csv' with an svm",
     {"classifier": "topics", "file": "my data.csv", "model": "demo-hf", "algorithm": "svm"}),
])
def test_a_training_reads_the_name_the_file_the_model_and_the_options(line, expected, classifiers):
    _read(classifier_slots(Intent.TRAIN_CLASSIFIER, line, KNOWN, classifiers), expected)


def test_a_training_names_what_it_still_needs():
    usage = "train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] [pca 0.95]"
    command = classifier_slots(Intent.TRAIN_CLASSIFIER, "train on mail.jsonl", KNOWN, CLASSIFIERS)
    assert command.slots.to_dict() == {"file": "mail.jsonl"}
    assert command.question == f"The classifier needs a name and an embedding model: {usage}"
    assert classifier_slots(Intent.TRAIN_CLASSIFIER, "train spam with minilm-hf", KNOWN).question == \
        f"The classifier needs a labelled .csv or .jsonl file: {usage}"


def test_listing_classifiers_needs_no_slot_and_other_intents_are_refused():
    _read(classifier_slots(Intent.LIST_CLASSIFIERS, "which classifiers do I have?"), {})
    with pytest.raises(ValueError, match="EMBED_TEXT"):
        classifier_slots(Intent.EMBED_TEXT, 'embed demo-hf "x"')


def test_the_exact_classifier_forms_read_as_before():
    train = classifier_command("train classifier spam on 'my data.csv' with hf, label column tag, svm")
    assert train.slots.to_dict() == {"classifier": "spam", "file": "my data.csv", "model": "hf",
                                     "label_column": "tag", "algorithm": "svm"}
    classify = classifier_command('classify "train the test set" with test-clf')
    assert (classify.slots.classifier, classify.slots.texts) == ("test-clf", ["train the test set"])
    check = classifier_command("check classifier spam on tests.csv")
    assert check.question.startswith("tests.csv is a labelled file, not a variant")
