"""The rule for a model's name, shared by discovery, the factory, endpoints and the HTTP schemas."""

from __future__ import annotations

import re

# One or more runs of name characters joined by single dots: a name a person types, never a path.
NEW_MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_+\-]*(\.[A-Za-z0-9_+\-]+)*$"
NEW_MODEL_NAME = re.compile(NEW_MODEL_NAME_PATTERN)
# A name as clients send it: Ollama's clients may add a ':latest' tag, which names the same model.
MODEL_NAME_PATTERN = NEW_MODEL_NAME_PATTERN[:-1] + "(:latest)?$"
MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
MODEL_NAME_MAX = 200
