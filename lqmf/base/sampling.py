"""The one table of sampling parameters: each one's default and limits, and the named profiles faces start from.

GenerationParams (server/runtime/backends/base.py) takes its defaults from this table and checks its values against
the same limits; the HTTP request bodies (server/http/schemas.py) publish and enforce them through pydantic. A
limit changed here changes both, so a value the API accepts is never one the core refuses.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional

# Below this, logits / temperature overflow float32 (and sampling turns into inf/nan); such a
# temperature means "the most likely token" anyway, so it decodes greedily, as 0 does.
GREEDY_BELOW = 1e-5
# Integers JSON (and OpenAPI's doubles) carry exactly: past 2^53 a published bound is not the one enforced.
JSON_SAFE_INT = 2**53
# The largest context window a request may name; a generation never outgrows it either.
CONTEXT_MAX = 1 << 20
STOP_MAX = 16  # stop strings per request
STOP_LENGTH_MAX = 256  # characters per stop string


@dataclass(frozen=True)
class Limit:
    """One sampling parameter: its type, default, and the range it must lie in (open or closed at each end)."""

    name: str
    kind: type  # int or float
    default: Any
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # True: `low` itself is outside the range
    high_open: bool = False
    doc: str = ""

    def problem(self, value: Any) -> Optional[str]:
        """Why `value` is not allowed, in words naming the parameter; None when it is (None is always allowed)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"{self.name} must be a number, not {value!r}"
        if self.kind is int and not isinstance(value, numbers.Integral):
            return f"{self.name} must be a whole number, not {value!r}"
        if not math.isfinite(value):
            return f"{self.name} must be a finite number, not {value!r}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            return f"{self.name} must be {self.range_text()}, not {value!r}"
        return None

    def range_text(self) -> str:
        """The range in interval notation ("in (0, 1]"), or one bound ("at least 1")."""
        if self.low is not None and self.high is not None:
            if self.low == self.high and not (self.low_open or self.high_open):
                return f"{_num(self.low)}"
            return (f"in {'(' if self.low_open else '['}{_num(self.low)}, "
                    f"{_num(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {_num(self.low)}"
        if self.high is not None:
            return f"{'below' if self.high_open else 'at most'} {_num(self.high)}"
        return "any number"

    def bounds(self) -> dict[str, float]:
        """The limits as pydantic / JSON Schema keywords: ge or gt, le or lt."""
        out: dict[str, float] = {}
        if self.low is not None:
            out["gt" if self.low_open else "ge"] = self.kind(self.low)
        if self.high is not None:
            out["lt" if self.high_open else "le"] = self.kind(self.high)
        return out


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _table(*limits: Limit) -> Mapping[str, Limit]:
    return MappingProxyType({limit.name: limit for limit in limits})


# The defaults are llama.cpp's sampler defaults: what a GenerationParams() means with nothing said.
LIMITS: Mapping[str, Limit] = _table(
    Limit("max_tokens", int, 256, 1, CONTEXT_MAX,
          doc="Tokens to generate at most; the context window left after the prompt bounds it too."),
    Limit("temperature", float, 0.8, 0, 5, doc=f"0 (or below {GREEDY_BELOW:g}) decodes greedily."),
    Limit("top_p", float, 0.95, 0, 1, low_open=True, doc="Nucleus sampling; 1: off."),
    Limit("top_k", int, 40, 0, CONTEXT_MAX, doc="0: off."),
    Limit("min_p", float, 0.05, 0, 1, high_open=True, doc="0: off."),
    Limit("repeat_penalty", float, 1.0, 0.01, 5, doc="1: off; above 1 makes repeating a token less likely."),
    Limit("seed", int, None, -JSON_SAFE_INT, JSON_SAFE_INT,
          doc="Any integer JSON carries exactly (|seed| <= 2^53)."),
    Limit("logprobs", int, None, 0, 20,
          doc="Log-probabilities of each token and this many most likely alternatives."),
    Limit("num_ctx", int, None, 1, CONTEXT_MAX,
          doc="This request's context window: at most the one the model is loaded with."),
    # Accepted from OpenAI clients only as their default: a sampler that ignored them would be silent.
    Limit("frequency_penalty", float, 0.0, 0, 0, doc="Not supported: use repeat_penalty."),
    Limit("presence_penalty", float, 0.0, 0, 0, doc="Not supported: use repeat_penalty."),
)
DEFAULTS: Mapping[str, Any] = MappingProxyType({name: limit.default for name, limit in LIMITS.items()})
# The knobs every API body carries under these names (Ollama's inside `options`).
SAMPLERS = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "repeat_penalty")

# Named profiles: changes to DEFAULTS a face or a measurement starts from (GenerationParams(**CHAT)).
# The shell's chat and the native /models/{name}/chat API.
CHAT: Mapping[str, Any] = MappingProxyType({"max_tokens": 256, "temperature": 0.7})
# Measurements (agreement, benchmarks, fidelity, verification): the most likely token, so runs repeat.
GREEDY: Mapping[str, Any] = MappingProxyType({"temperature": 0.0})
# OpenAI's API: temperature 1 and no other filter; LQMF caps an unbounded reply at 1024 tokens.
OPENAI: Mapping[str, Any] = MappingProxyType(
    {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "max_tokens": 1024})
# OpenAI's legacy /v1/completions: 16 tokens unless asked.
OPENAI_COMPLETION: Mapping[str, Any] = MappingProxyType({**OPENAI, "max_tokens": 16})
# Ollama's documented defaults (temperature 0.8, top_k 40, top_p 0.9, min_p 0); num_predict -1, "until the
# end", is 32768 tokens here (the context window stops a generation first).
OLLAMA: Mapping[str, Any] = MappingProxyType(
    {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "max_tokens": 32768})


def problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with `values` (parameter name -> value) against the table, one sentence each."""
    found = [LIMITS[name].problem(value) for name, value in values.items() if name in LIMITS]
    stop = values.get("stop") or ()
    if len(stop) > STOP_MAX:
        found.append(f"stop takes at most {STOP_MAX} strings, not {len(stop)}")
    if any(len(s) > STOP_LENGTH_MAX for s in stop):
        found.append(f"each stop string must be at most {STOP_LENGTH_MAX} characters")
    return [p for p in found if p]
