"""Constrained decoding (json_schema) and logprobs on the transformers backend, with the real demo models.

Every output is parsed and validated with jsonschema_rs (an independent validator, installed with
schemathesis); logprobs are checked against a separate full forward pass (`backend.logits`).
"""

from __future__ import annotations

import json

import jsonschema_rs
import numpy as np
import pytest

from benchmarks.constrained_bench import SMALL, tool_call_schema
from lqmf.base.errors import FeatureUnsupported, InvalidRequest
from lqmf.base.generation import GenerationParams
from server.runtime.backends import backend_for
from server.runtime.discovery import discover

ASK = [{"role": "user", "content": "Reply with JSON describing a function."}]
SEEDS = (0, 1, 2, 3)
BUDGET = 200  # tokens: every schema below bounds its strings, numbers and arrays well inside this

PERSON = SMALL  # a flat object: a bounded string, an integer range and an enum, all required
NUMBERS = {"type": "array", "items": {"type": "integer", "minimum": -99, "maximum": 99}, "minItems": 1,
           "maxItems": 5}
TOOLS = {"anyOf": [
    tool_call_schema("get_weather", {
        "location": {"type": "object", "additionalProperties": False, "required": ["city"],
                     "properties": {"city": {"type": "string", "maxLength": 16}}},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    }, ["location", "unit"]),
    tool_call_schema("search", {
        "query": {"type": "string", "maxLength": 20},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
    }, ["query"]),
    tool_call_schema("send_email", {
        "to": {"type": "array", "items": {"type": "string", "maxLength": 16}, "minItems": 1, "maxItems": 2},
        "urgent": {"type": "boolean"},
    }, ["to", "urgent"]),
]}
SCHEMAS = {"object": PERSON, "array": NUMBERS, "tools": TOOLS}


def load(demo_dir, name: str):
    record = next(r for r in discover(demo_dir) if r.name == name)
    backend = backend_for(record)
    backend.load()
    return backend


@pytest.fixture(scope="module")
def hf(demo_dir):
    backend = load(demo_dir, "demo-hf")
    yield backend
    backend.unload()


def constrained(backend, schema: dict, max_tokens: int = BUDGET, **sampling):
    params = GenerationParams(max_tokens=max_tokens, json_schema=json.dumps(schema), **sampling)
    return backend.generate(backend.chat_prompt_ids(ASK), params)


def whitespace_outside_strings(text: str) -> list[int]:
    """Offsets of whitespace between JSON tokens (compact JSON has none); `text` is valid JSON."""
    found, in_string, escaped = [], False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in " \t\n\r":
            found.append(i)
    return found


def assert_valid(result, schema: dict) -> object:
    assert result.finish_reason == "stop", f"cut at {len(result.token_ids)} tokens: {result.text!r}"
    value = json.loads(result.text)
    jsonschema_rs.validate(schema, value)
    # Compact means no whitespace between tokens, not json.dumps's spelling: a sampled `[-0]`, `1E2` or
    # `"\u00e9"` is valid, compact JSON that the grammar may produce on any CPU (one sampled `[-0]` where
    # this machine's kernels gave `[0]`); json.dumps would write them `[0]`, `100.0` and `"é"`.
    assert not whitespace_outside_strings(result.text), f"not compact JSON: {result.text!r}"
    return value


# -- every output is one valid JSON value --------------------------------------------------------------

def test_the_check_takes_any_compact_spelling_of_a_valid_value():
    """`[-0]` (sampled on another CPU) passes; whitespace between tokens or an invalid value does not."""
    from types import SimpleNamespace as Result

    def check(text: str) -> object:
        return assert_valid(Result(finish_reason="stop", token_ids=[0], text=text), NUMBERS)

    assert check("[-0]") == [0] and check("[1E1,-5]") == [10, -5]
    for bad in ("[ 0]", "[0,\n1]", "[100]", "[]"):
        with pytest.raises((AssertionError, jsonschema_rs.ValidationError)):
            check(bad)


@pytest.mark.parametrize("label", list(SCHEMAS))
def test_greedy_and_sampled_generations_validate(hf, label):
    schema = SCHEMAS[label]
    assert_valid(constrained(hf, schema, temperature=0), schema)
    for seed in SEEDS:
        assert_valid(constrained(hf, schema, temperature=1.0, seed=seed), schema)


def test_sampling_without_truncation_still_validates(hf):
    """Hot sampling with top-k / top-p / min-p off: every allowed token can come up."""
    for seed in SEEDS:
        assert_valid(constrained(hf, PERSON, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed), PERSON)


BRANCHES = {  # one complete call per branch of TOOLS, keys in the schema's order
    "get_weather": '{"name":"get_weather","arguments":{"location":{"city":"Paris"},"unit":"celsius"}}',
    "search": '{"name":"search","arguments":{"query":"x","limit":5}}',
    "send_email": '{"name":"send_email","arguments":{"to":["bob"],"urgent":true}}',
}


def test_the_tools_schema_reaches_every_branch(hf):
    """Every anyOf branch is open to the model, token by token, to its end. Which branch a seed samples is
    the model's choice: it differs between machines (the demo model is trained on each, and sampled with
    its CPU's kernels), so sampling only has to give valid calls, whichever branches they take."""
    from server.runtime.constrained import JsonConstraint

    for name, text in BRANCHES.items():
        jsonschema_rs.validate(TOOLS, json.loads(text))
        constraint = JsonConstraint.for_backend(hf, json.dumps(TOOLS))
        ids = hf.tokenize(text, add_special=False)
        for i, token in enumerate(ids):
            assert not constraint.done and constraint.allowed_mask()[token], (name, hf.detokenize(ids[: i + 1]))
            constraint.advance(token)
        assert constraint.done and constraint.accepts_eos, name
    # The sampled calls, each valid whatever its branch: test_greedy_and_sampled_generations_validate[tools].


def completes_to_json(prefix: str) -> bool:
    """Whether `prefix` is the start of some JSON text: json.loads (not our grammar) judges a few closings."""
    stack, in_string, escape, hex_left = [], False, False, 0
    for ch in prefix:
        if in_string:
            if hex_left:
                hex_left -= 1
            elif escape:
                escape, hex_left = False, 4 if ch == "u" else 0
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    close_string = ("n" if escape else "0" * hex_left) + '"' if in_string else ""
    closers = "".join(reversed(stack))
    middles = ("", "0", ":0", '"":0', "e", "l", "ue", "se", "le", "lse", "ll", "rue", "alse", "ull")
    for middle in middles:
        try:
            json.loads(prefix + close_string + middle + closers)
            return True
        except ValueError:
            continue
    return False


def test_json_object_gives_an_object(hf):
    """{"type": "object"} (OpenAI's json_object mode): keys and values are free, so this docstring-trained
    model often runs out of tokens inside a long key; every sample that ends is an object, and every
    sample cut by max_tokens is the start of one. How many of the samples end is the model's choice (on
    one machine about half within 120 tokens, on another 2 of 20): the grammar's side of ending, EOS
    allowed exactly when the object is complete, is shown token by token in the next test."""
    schema = {"type": "object"}
    assert completes_to_json('{"a\\u00') and completes_to_json('{"a":[tru') and not completes_to_json('{"a"}')
    ended = 0
    for seed in range(10):
        result = constrained(hf, schema, max_tokens=120, temperature=1.0, repeat_penalty=1.3, seed=seed)
        if result.finish_reason == "stop":
            assert isinstance(assert_valid(result, schema), dict)
            ended += 1
            if ended == 2:
                break
        else:
            assert result.finish_reason == "length" and len(result.token_ids) == 120
            assert result.text.startswith("{") and completes_to_json(result.text), result.text


def test_json_object_admits_any_object_and_ends_with_it(hf):
    """The grammar itself, fed a nested object token by token: every token allowed, done at the last."""
    from server.runtime.constrained import JsonConstraint

    text = '{"a":[1,-2.5e3,{"b":null}],"c":"x\\n\\u0007 y","d":{},"e":true}'  # control characters escaped
    constraint = JsonConstraint.for_backend(hf, '{"type": "object"}')
    ids = hf.tokenize(text, add_special=False)
    for i, token in enumerate(ids):
        assert not constraint.done and constraint.allowed_mask()[token], hf.detokenize(ids[: i + 1])
        constraint.advance(token)
    assert constraint.done and constraint.accepts_eos
    assert set(np.flatnonzero(constraint.allowed_mask())) <= hf.eos_ids


def test_eos_is_allowed_only_when_complete_and_ignore_eos_cannot_extend(hf):
    result = constrained(hf, PERSON, temperature=0, ignore_eos=True)
    assert_valid(result, PERSON)


def test_cut_by_max_tokens_is_a_length_finish(hf):
    params = GenerationParams(max_tokens=4, temperature=0, json_schema=json.dumps(PERSON))
    result = hf.generate(hf.chat_prompt_ids(ASK), params)
    assert result.finish_reason == "length" and len(result.token_ids) == 4 and result.text.startswith("{")


# -- schemas that cannot be used ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    '{"type": "strnig"}',
    '{"type": "object", "required": "name"}',
    '{"$ref": "#/$defs/missing"}',
    "not json {",
    "false",
    "[1, 2]",
])
def test_an_invalid_schema_is_an_invalid_request(hf, text):
    params = GenerationParams(max_tokens=8, json_schema=text)
    with pytest.raises(InvalidRequest) as caught:
        hf.generate(hf.chat_prompt_ids(ASK), params)
    assert "json_schema" in caught.value.message and caught.value.hint


@pytest.mark.parametrize("schema", [
    {"not": {"type": "string"}},
    {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
    {"type": "object", "if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}},
])
def test_a_keyword_that_cannot_be_enforced_is_refused_not_ignored(hf, schema):
    with pytest.raises(FeatureUnsupported, match="cannot enforce"):
        constrained(hf, schema, temperature=0)


def test_true_and_empty_schemas_admit_any_value(hf):
    for text in ("true", "{}"):
        params = GenerationParams(max_tokens=BUDGET, temperature=0.8, seed=1, repeat_penalty=1.2, json_schema=text)
        result = hf.generate(hf.chat_prompt_ids(ASK), params)
        if result.finish_reason == "stop":
            json.loads(result.text)


# -- logprobs ------------------------------------------------------------------------------------------

def log_softmax(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    shifted = rows - rows.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def check_logprobs(backend, prompt: list[int], result, top_n: int) -> None:
    """Each token's logprob is the model's own log_softmax at that step, and its top_n are the n best."""
    assert len(result.logprobs) == len(result.token_ids) > 0
    expected = log_softmax(backend.logits(prompt + result.token_ids[:-1])[len(prompt) - 1:])
    for step, (token, entry) in enumerate(zip(result.token_ids, result.logprobs, strict=True)):
        assert entry.logprob == pytest.approx(expected[step, token], abs=2e-3)
        assert entry.token == backend.tokenizer.decode([token])
        assert bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token or len(entry.bytes) == 1
        assert len(entry.top) == top_n
        values = [lp for _, lp, _ in entry.top]
        assert values == sorted(values, reverse=True)
        best = np.argsort(-expected[step])[:top_n]
        np.testing.assert_allclose(values, expected[step, best], atol=2e-3)
        # Each alternative is a token with that logprob among the n best, not one fixed order of ids: two
        # tokens within float noise of each other (the generation's cached steps against this one full
        # pass, or another CPU's kernels) may be listed in either order.
        contenders = np.flatnonzero(expected[step] >= expected[step, best[-1]] - 2e-3)
        for alternative, logprob, _ in entry.top:
            assert any(backend.tokenizer.decode([int(i)]) == alternative and abs(expected[step, i] - logprob) <= 2e-3
                       for i in contenders), (step, alternative, logprob)


def test_logprobs_are_the_models_log_softmax_with_sorted_alternatives(hf):
    prompt = hf.chat_prompt_ids(ASK)
    result = hf.generate(prompt, GenerationParams(max_tokens=12, temperature=0, logprobs=5))
    check_logprobs(hf, prompt, result, 5)
    # Greedy: the chosen token is the most likely one, or tied with it (then either may be listed first).
    assert all(e.top[0][1] == pytest.approx(e.logprob, abs=1e-6) for e in result.logprobs)
    assert all(e.top[0][0] == e.token for e in result.logprobs if e.top[1][1] < e.top[0][1] - 1e-6)


def test_logprobs_under_a_schema_are_unmasked_and_ride_on_each_chunk(hf):
    prompt = hf.chat_prompt_ids(ASK)
    params = GenerationParams(max_tokens=BUDGET, temperature=1.0, seed=3, logprobs=2,
                              json_schema=json.dumps(PERSON))
    chunks = list(hf.stream(prompt, params))
    assert all(len(c.logprobs) == len(c.token_ids) for c in chunks)
    result = hf.generate(prompt, params)
    assert result.token_ids == [t for c in chunks for t in c.token_ids]
    assert_valid(result, PERSON)
    # The model's distribution, not renormalised over the allowed tokens ("{" is unlikely unmasked).
    check_logprobs(hf, prompt, result, 2)
    assert result.logprobs[0].token == "{" and result.logprobs[0].logprob < -1


def test_logprobs_zero_reports_the_token_alone_and_none_reports_nothing(hf):
    prompt = hf.chat_prompt_ids(ASK)
    zero = hf.generate(prompt, GenerationParams(max_tokens=4, temperature=0, logprobs=0))
    assert len(zero.logprobs) == 4 and all(e.top == [] for e in zero.logprobs)
    off = hf.generate(prompt, GenerationParams(max_tokens=4, temperature=0))
    assert off.logprobs == [] and off.token_ids == zero.token_ids


# -- through the manager (the path every face takes) -----------------------------------------------------

def test_the_manager_lets_the_transformers_backend_constrain_and_report_logprobs(demo_dir, tmp_path):
    from lqmf.base.settings import Settings
    from server.runtime.manager import ModelManager

    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir))
    try:
        params = GenerationParams(max_tokens=BUDGET, temperature=0, logprobs=1, json_schema=json.dumps(PERSON))
        result = manager.generate("demo-hf", ASK, params)
        assert_valid(result, PERSON)
        assert len(result.logprobs) == len(result.token_ids) and all(len(e.top) == 1 for e in result.logprobs)
    finally:
        manager.close()


# -- the quantized transformers formats -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["demo-bnb-nf4", "demo-gptq-4bit"])
def test_quantized_formats_constrain_too(demo_dir, name):
    backend = load(demo_dir, name)
    try:
        assert_valid(constrained(backend, TOOLS, temperature=0), TOOLS)
        assert_valid(constrained(backend, PERSON, temperature=1.0, seed=0), PERSON)
    finally:
        backend.unload()
