"""JSON schemas as llama.cpp grammars (GBNF), with whitespace held to at most one space.

llama-server's own converter lets JSON whitespace run to a newline and 20 spaces between tokens:
the demo model, measured, spent most of a 300-token budget on whitespace and never finished its
reply. llama-cpp-python's converter (a port of the same code) allows one optional space, so the
reply is compact and ends sooner. The in-process engine and the server engine use the same grammar.
"""

from __future__ import annotations

from lqmf.errors import InvalidRequest

# The port's string character allows raw control characters (a newline inside a string), which JSON
# forbids: strict parsers (Python's json, JavaScript's JSON.parse) then refuse the reply. llama.cpp's
# own converter excludes them; so does this rule.
LOOSE_CHAR = 'char ::= [^"\\\\] |'
STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def gbnf_for(schema_text: str) -> str:
    """The GBNF grammar for a JSON schema (JSON text); InvalidRequest when it cannot be converted."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = json_schema_to_gbnf(schema_text)
    except Exception as exc:  # the converter raises bare exceptions of several kinds for a bad schema
        raise InvalidRequest(f"the JSON schema cannot be used as a constraint: {exc}",
                             "send a valid JSON schema (types, properties, enum, anyOf, arrays, strings)") from exc
    return grammar.replace(LOOSE_CHAR, STRICT_CHAR)
