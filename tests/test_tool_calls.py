"""The tool-call format: schemas built from tools, bounds that make a reply end, replies read back."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from lqmf.base.errors import InvalidRequest
from server.http.tool_calls import (
    ARRAY_CAP,
    STRING_CAP,
    bounded,
    parse_tools,
    plan,
    read_reply,
    rendered_history,
)

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]},
                                            "days": {"type": "array", "items": {"type": "string"}}},
           "required": ["city"]}
TOOLS = parse_tools([{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
                     {"type": "function", "function": {"name": "add", "description": "Add"}}])
ASK = [{"role": "user", "content": "weather?"}]


def test_bounded_caps_only_what_has_no_bound():
    schema = bounded({"type": "object", "properties": {
        "free": {"type": "string"}, "short": {"type": "string", "maxLength": 5}, "long": {"type": "string",
                                                                                   "minLength": 1000},
        "choice": {"type": "string", "enum": ["a"]}, "code": {"type": "string", "pattern": "^[a-z]+$"},
        "list": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "inner": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": True}}})
    p = schema["properties"]
    assert p["free"]["maxLength"] == STRING_CAP and p["short"]["maxLength"] == 5
    assert p["long"]["maxLength"] == 1000  # never below what the schema demands
    assert "maxLength" not in p["choice"] and "maxLength" not in p["code"]
    assert p["list"]["maxItems"] == ARRAY_CAP and p["list"]["items"]["anyOf"][0]["maxLength"] == STRING_CAP
    assert schema["additionalProperties"] is False and p["inner"]["additionalProperties"] is True


def test_a_bounded_value_still_validates_against_the_original_schema():
    value = {"city": "x" * STRING_CAP, "unit": "c", "days": ["mon"] * ARRAY_CAP}
    jsonschema_rs.validate(bounded(WEATHER), value)
    jsonschema_rs.validate(WEATHER, value)


def test_forced_required_auto_and_none():
    forced = plan(ASK, TOOLS, {"type": "function", "function": {"name": "add"}})
    schema = json.loads(forced.schema)
    calls = schema["properties"]["tool_calls"]
    assert calls["maxItems"] == 1 and [t.name for t in forced.tools] == ["add"]
    assert calls["items"]["anyOf"][0]["properties"]["name"] == {"const": "add"}
    required = json.loads(plan(ASK, TOOLS, "required").schema)
    assert "anyOf" not in required and required["properties"]["tool_calls"]["minItems"] == 1
    auto = json.loads(plan(ASK, TOOLS, "auto").schema)
    assert {"response"} in [set(branch["properties"]) for branch in auto["anyOf"]]
    assert plan(ASK, TOOLS, "none") is None
    assert json.loads(plan(ASK, TOOLS, "required", parallel=False).schema)["properties"]["tool_calls"]["maxItems"] == 1


def test_the_tools_are_described_to_the_model():
    messages = plan([{"role": "system", "content": "Be brief."}, *ASK], TOOLS, "auto").messages
    assert len(messages) == 2 and messages[0]["content"].startswith("Be brief.")
    assert '"get_weather"' in messages[0]["content"] and '{"response"' in messages[0]["content"]


def test_bad_tool_requests_say_what_to_send():
    with pytest.raises(InvalidRequest, match="not among the tools"):
        plan(ASK, TOOLS, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(InvalidRequest, match="same name"):
        parse_tools([{"function": {"name": "a"}}, {"function": {"name": "a"}}])
    with pytest.raises(InvalidRequest, match="function tool with a name"):
        parse_tools([{"type": "retrieval"}])


def test_replies_are_read_back():
    content, calls = read_reply('{"tool_calls": [{"name": "add", "arguments": {"a": 1}}]}')
    assert content is None and calls[0].name == "add" and calls[0].arguments == {"a": 1}
    assert json.loads(calls[0].openai(0)["function"]["arguments"]) == {"a": 1}
    assert calls[0].ollama() == {"function": {"name": "add", "arguments": {"a": 1}}}
    assert read_reply('{"response": "hi"}') == ("hi", [])
    assert read_reply('{"tool_calls": [{"na') == ('{"tool_calls": [{"na', [])  # cut by max_tokens: text


def test_earlier_calls_are_written_back_in_the_same_format():
    history = rendered_history([
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "add", "arguments": '{"a": 1}'}},  # OpenAI: JSON text
            {"function": {"name": "add", "arguments": {"a": 2}}}]},  # Ollama: an object
        {"role": "tool", "content": "3"}])
    assert json.loads(history[0]["content"]) == {"tool_calls": [{"name": "add", "arguments": {"a": 1}},
                                                                {"name": "add", "arguments": {"a": 2}}]}
    assert history[1] == {"role": "tool", "content": "3"}
