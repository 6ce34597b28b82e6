"""Compact, bounded JSON from llama-server: tools, json_schema and Ollama's format, as the in-process engine
writes them (no whitespace between tokens, unbounded strings and arrays capped), with the real server."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from server.http.tool_calls import ARRAY_CAP, STRING_CAP
from server.runtime.backends.gguf_engine import COMPACT_SPACE, compact_grammar, tokenized_literals
from tests.test_constrained import whitespace_outside_strings
from tests.test_server import start_server

MODEL = "demo-q4_k_m"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# Bounded, so that a call fits 64 tokens whatever the model writes: the demo model writes drivel into a free
# string until a bound stops it, on either engine. The fixed text is 46 tokens at most in the model's own
# tokens (EOS included), the city 12 ASCII characters (one token each at most), the days 2 digits.
SMALL_WEATHER = {"type": "object", "properties": {"city": {"type": "string", "pattern": "^[A-Za-z ]{1,12}$"},
                                                  "days": {"type": "integer", "minimum": 1, "maximum": 14}},
                 "required": ["city", "days"]}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
           "required": ["city", "days"]}
SAMPLINGS = ({"temperature": 0}, {"temperature": 0.9, "seed": 1}, {"temperature": 0.9, "seed": 2})
REPLY = {"type": "object", "properties": {
    "answer": {"type": "string", "enum": ["yes", "no"]}, "score": {"type": "integer", "minimum": 0, "maximum": 100},
    "note": {"type": "string", "maxLength": 40},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "maxItems": 3}},
    "required": ["answer", "score", "note", "tags"], "additionalProperties": False}
# No maxLength / maxItems: only the caps end them. The minimums hold the model in the value up to the cap.
LONG_TEXT = {"type": "object", "properties": {"text": {"type": "string", "minLength": STRING_CAP - 6}},
             "required": ["text"]}
MANY = {"type": "object", "properties": {"values": {"type": "array", "minItems": ARRAY_CAP - 4,
                                                    "items": {"type": "integer", "minimum": 0, "maximum": 9}}},
        "required": ["values"]}


@pytest.fixture(scope="module")
def served(demo_dir, tmp_path_factory):
    server, manager, url = start_server(demo_dir, tmp_path_factory.mktemp("engine-json-home"), parallel=2)
    if not manager.engine().server:
        server.stop()
        manager.close()
        pytest.skip(f"llama-server is not built: {manager.engine().reason}")
    yield url, manager
    server.stop()
    manager.close()


@pytest.fixture(scope="module")
def in_process(demo_dir, tmp_path_factory):
    """The same server with GGUF in process (llguidance): what the engine must match."""
    server, manager, url = start_server(demo_dir, tmp_path_factory.mktemp("in-process-home"),
                                        gguf_engine="in-process")
    yield url
    server.stop()
    manager.close()


def client_of(url: str):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def openai_client(served):
    return client_of(served[0])


@pytest.fixture(scope="module")
def ollama_client(served):
    import ollama

    return ollama.Client(host=served[0])


def tool(name: str, parameters: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"{name} for a city",
                                             "parameters": parameters}}


def forced_call(client, name: str, parameters: dict, max_tokens: int, **sampling):
    """One forced call of the tool: (the response, its arguments) after checking it ended as a valid call."""
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=[tool(name, parameters)],
                                       tool_choice={"type": "function", "function": {"name": name}},
                                       max_tokens=max_tokens, **sampling)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", f"cut after {r.usage.completion_tokens}: {choice.message.content!r}"
    arguments = json.loads(choice.message.tool_calls[0].function.arguments)
    jsonschema_rs.validate(parameters, arguments)
    return r, arguments


def assert_compact(text: str, schema: dict) -> None:
    jsonschema_rs.validate(schema, json.loads(text))
    assert whitespace_outside_strings(text) == [], f"whitespace between tokens: {text!r}"


def test_the_scanner_sees_whitespace_outside_strings_only():
    assert whitespace_outside_strings('{"a b":"c\\" d","e":[1,2]}') == []
    assert whitespace_outside_strings('{\n  "a": [1, 2]}') == [1, 2, 3, 8, 12]


def test_the_grammars_space_rule_is_made_empty_and_nothing_else_changes():
    gbnf = ('root ::= "{" space "\\"a\\"" space ":" space string "}" space\n'
            'space ::= | " " | "\\n"{1,2} [ \\t]{0,20}\n'
            'string ::= "\\"" char* "\\"" space\n')
    lines = compact_grammar(gbnf).splitlines()
    assert lines == [gbnf.splitlines()[0], COMPACT_SPACE, gbnf.splitlines()[2]]


def test_literals_become_the_models_tokens_and_nothing_else_does():
    spelled = {'"a"': [7, 8, 7], '"\\\n"': [7, 9, 7], "\u00e9t\u00e9": [5]}  # "\<newline>" and "été"
    gbnf = (r'root ::= "{" space "\"a\"" ":" [^"\\\x7F\x00-\x1F] "\"\\\n\"" "\u00e9t\xe9" "ab"' "\n"
            r'space ::= ""' "\n")
    # Single characters, character classes (a quote inside), the empty rule and what has no spelling stay.
    assert tokenized_literals(gbnf, spelled.get) == (
        r'root ::= "{" space (<[7]> <[8]> <[7]>) ":" [^"\\\x7F\x00-\x1F] (<[7]> <[9]> <[7]>) (<[5]>) "ab"' "\n"
        r'space ::= ""' "\n")


# -- on the engine --------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["llama-server", "in-process"])
def test_a_forced_tool_call_fits_in_64_tokens(request, engine):
    url = request.getfixturevalue("served")[0] if engine == "llama-server" else request.getfixturevalue("in_process")
    for sampling in SAMPLINGS:
        r, _ = forced_call(client_of(url), "get_weather", SMALL_WEATHER, max_tokens=64, **sampling)
        assert r.usage.completion_tokens <= 64


def test_json_schema_and_ollama_format_are_compact(openai_client, ollama_client):
    for sampling in SAMPLINGS:
        r = openai_client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=256, **sampling,
            response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": REPLY}})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        assert_compact(r.choices[0].message.content, REPLY)
    options = {"temperature": 0, "num_predict": 256}
    assert_compact(ollama_client.chat(model=MODEL, messages=ASK, format=REPLY, options=options).message.content, REPLY)
    reply = ollama_client.chat(model=MODEL, messages=ASK, format="json", options=options)
    if reply.done_reason == "stop":  # any object: the model may not close it within the budget
        assert_compact(reply.message.content, {"type": "object"})
    else:
        assert whitespace_outside_strings(reply.message.content) == []


def test_an_unbounded_string_ends_at_the_cap(openai_client):
    _, arguments = forced_call(openai_client, "write", LONG_TEXT, max_tokens=1024, temperature=0)
    assert STRING_CAP - 6 <= len(arguments["text"]) <= STRING_CAP
    for seed in (0, 1):  # sampled: the model may close the string anywhere, never past the cap
        _, arguments = forced_call(openai_client, "get_weather", WEATHER, max_tokens=1024, temperature=1.5, seed=seed)
        assert len(arguments["city"]) <= STRING_CAP


def test_an_unbounded_array_ends_at_the_cap_within_a_compact_budget(openai_client):
    # At most 64 one-digit items and 63 commas, one token each, plus the fixed text in the model's own tokens
    # (about 40): 200 tokens hold any such reply. With llama.cpp's whitespace it took 334-372 (measured).
    for sampling in SAMPLINGS:
        _, arguments = forced_call(openai_client, "count", MANY, max_tokens=200, **sampling)
        assert ARRAY_CAP - 4 <= len(arguments["values"]) <= ARRAY_CAP
