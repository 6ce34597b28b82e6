"""Tool calling and structured output on any model, guaranteed by a JSON-schema constraint.

Most small and quantized models' chat templates know nothing of tools, and llama-server then
ignores them (measured: `tool_choice: "required"` on the demo model gave plain text). So LQMF uses
one format of its own for every model, the "generic" format llama.cpp once had: the tools are
described in a system message and the reply is one JSON object, constrained by a JSON schema that
the backend enforces while sampling (llama.cpp's grammar in the engine, the constrained decoder for
transformers formats). A forced or required call therefore always parses and its arguments always
validate against the tool's own schema, whatever the model.

    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}   a call
    {"response": "It is sunny."}                                                    a reply (tool_choice auto)
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Optional

from lqmf.base.errors import InvalidRequest

MAX_PARALLEL_CALLS = 8
# Caps on argument strings and arrays whose schema sets none. A constraint guarantees a valid reply
# only if the reply ends, and a small model caught in a loop inside a string never closes it
# (measured on the demo model: 300 tokens of digits inside "city"). A capped value still validates
# against the tool's own schema: the cap only narrows what may be generated.
STRING_CAP = 256
ARRAY_CAP = 64
NESTED_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    def openai(self, index: int) -> dict[str, Any]:
        return {"index": index, "id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}

    def ollama(self) -> dict[str, Any]:
        return {"function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolPlan:
    """What a request with tools becomes: the conversation to send and the schema its reply must meet."""

    messages: list[dict[str, str]]
    schema: str  # JSON text
    tools: tuple[Tool, ...]


def parse_tools(raw: list[dict[str, Any]]) -> list[Tool]:
    """Tools in OpenAI's (and Ollama's) shape: {"type": "function", "function": {name, description, parameters}}."""
    tools = []
    for i, item in enumerate(raw):
        fn = item.get("function") if isinstance(item, dict) else None
        if item.get("type", "function") != "function" or not isinstance(fn, dict) or not fn.get("name"):
            raise InvalidRequest(f"tool {i} is not a function tool with a name",
                                 'send {"type": "function", "function": {"name": ..., "parameters": {...}}}')
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise InvalidRequest(f"tool {fn['name']!r} has parameters that are not a JSON schema object",
                                 "send a JSON schema object as parameters")
        tools.append(Tool(str(fn["name"]), str(fn.get("description") or ""), params))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("two tools have the same name", "give every tool its own name")
    return tools


def selected(tools: list[Tool], choice: Any) -> tuple[Optional[str], list[Tool]]:
    """(mode, tools the reply may call) for a tool_choice: mode None means tools are off ("none")."""
    if choice is None or choice == "auto":
        return "auto", tools
    if choice == "none":
        return None, []
    if choice == "required":
        return "required", tools
    name = ((choice or {}).get("function") or {}).get("name") if isinstance(choice, dict) else None
    forced = [t for t in tools if t.name == name]
    if not forced:
        raise InvalidRequest(f"tool_choice names {name!r}, which is not among the tools",
                             f"name one of: {', '.join(t.name for t in tools) or '(no tools given)'}")
    return "required", forced


def bounded(schema: Any) -> Any:
    """A copy of a JSON schema with STRING_CAP / ARRAY_CAP on unbounded strings and arrays, no unnamed keys."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) if k in NESTED_KEYS or k in ("items", "additionalProperties") else v
           for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: bounded(sub) for name, sub in schema[key].items()}
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    free = not any(k in schema for k in ("enum", "const", "pattern", "format"))
    if "string" in kinds and free and "maxLength" not in schema:
        out["maxLength"] = max(STRING_CAP, int(schema.get("minLength", 0)))
    if "array" in kinds and "maxItems" not in schema:
        out["maxItems"] = max(ARRAY_CAP, int(schema.get("minItems", 0)))
    if "properties" in schema and "additionalProperties" not in schema:
        # Only the named arguments, as llama.cpp's grammar converter does by default: every engine then
        # constrains alike, and a model cannot wander into keys of its own.
        out["additionalProperties"] = False
    return out


def plan(messages: list[dict[str, Any]], tools: list[Tool], choice: Any, parallel: bool = True) -> Optional[ToolPlan]:
    """The constrained request for `tools` under `choice`, or None when tools are off."""
    mode, callable_tools = selected(tools, choice)
    if mode is None or not callable_tools:
        return None
    forced = choice not in (None, "auto", "required")
    parallel = parallel and not forced  # forcing a tool asks for one call of it
    call = {"anyOf": [{"type": "object", "properties": {"name": {"const": t.name}, "arguments": bounded(t.parameters)},
                       "required": ["name", "arguments"], "additionalProperties": False} for t in callable_tools]}
    calls = {"type": "object", "properties": {"tool_calls": {
        "type": "array", "items": call, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS if parallel else 1}},
        "required": ["tool_calls"], "additionalProperties": False}
    reply = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"],
             "additionalProperties": False}
    schema = calls if mode == "required" else {"anyOf": [calls, reply]}
    return ToolPlan(with_instructions(messages, callable_tools, mode), json.dumps(schema), tuple(callable_tools))


def with_instructions(messages: list[dict[str, Any]], tools: list[Tool], mode: str) -> list[dict[str, str]]:
    """The conversation with the tools described in a system message, history in the same JSON format."""
    listing = "\n".join(json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters},
                                   ensure_ascii=False) for t in tools)
    how = ('Reply with one JSON object: {"tool_calls": [{"name": <tool name>, "arguments": {...}}]} to call tools'
           + ('.' if mode == "required" else ', or {"response": <your reply>} to answer directly.'))
    instructions = f"You can call these tools:\n{listing}\n{how}"
    out = [dict(m) for m in rendered_history(messages)]
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{instructions}"
    else:
        out.insert(0, {"role": "system", "content": instructions})
    return out


def rendered_history(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages as plain role/content pairs: earlier tool calls written in the reply format."""
    out = []
    for m in messages:
        content = m.get("content") or ""
        calls = m.get("tool_calls") or []
        if calls:
            content = json.dumps({"tool_calls": [
                {"name": c["function"]["name"], "arguments": arguments_of(c["function"].get("arguments"))}
                for c in calls]}, ensure_ascii=False)
        out.append({"role": m["role"], "content": content})
    return out


def arguments_of(value: Any) -> Any:
    """Arguments as sent back in a conversation: a JSON string (OpenAI) or an object (Ollama)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value if value is not None else {}


def read_reply(text: str) -> tuple[Optional[str], list[ToolCall]]:
    """(content, calls) from a constrained reply; a reply cut short is returned as text, with no calls."""
    try:
        value = json.loads(text)
    except ValueError:
        return text, []  # only when max_tokens cut the JSON short: the constraint allows nothing else
    if isinstance(value, dict) and "tool_calls" in value:
        return None, [ToolCall(f"call_{secrets.token_hex(12)}", c["name"], c.get("arguments") or {})
                      for c in value["tool_calls"]]
    if isinstance(value, dict) and "response" in value:
        return str(value["response"]), []
    return text, []


def finish_with_calls(finish_reason: str, calls: list[ToolCall]) -> str:
    return "tool_calls" if calls else ("length" if finish_reason == "length" else "stop")
