"""Constrained decoding benchmark: llguidance vs xgrammar on a demo model's tokenizer, side by side.

For three JSON schemas (a small object, an anyOf of three tool calls with nested arguments, and
{"type": "object"}) it measures, per library: grammar compile time (median of --compiles fresh
compilations, nothing cached), the first token mask, the per-token mask time over real decoding,
and correctness: --samples sampled generations (plus one greedy) by the model under each grammar,
each output parsed and validated with jsonschema_rs. Both libraries emit compact JSON (no free
whitespace). The tokenizer set-up (once per tokenizer) is timed too.

    .venv/bin/pip install xgrammar==0.2.8   # not a project dependency: only this comparison uses it
    .venv/bin/python benchmarks/constrained_bench.py [--model demo-hf] [--samples 8] [--tokens 96]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from dataclasses import dataclass, field

from lqmf.base.environment import apply_environment_quirks
from lqmf.base.settings import load_settings

SMALL = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "color": {"enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "color"],
    "additionalProperties": False,
}


def tool_call_schema(name: str, arguments: dict, required: list[str]) -> dict:
    """One tool call, {"name": NAME, "arguments": {...}}, with no keys beyond the given ones."""
    return {
        "type": "object",
        "properties": {
            "name": {"const": name},
            "arguments": {"type": "object", "properties": arguments, "required": required,
                          "additionalProperties": False},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


TOOLS = {"anyOf": [
    tool_call_schema("get_weather", {
        "location": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                                      "country": {"type": "string", "maxLength": 16}},
                     "required": ["city"], "additionalProperties": False},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    }, ["location"]),
    tool_call_schema("search", {
        "query": {"type": "string", "maxLength": 24},
        "filters": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
    }, ["query"]),
    tool_call_schema("send_email", {
        "to": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 1, "maxItems": 2},
        "subject": {"type": "string", "maxLength": 24},
        "urgent": {"type": "boolean"},
    }, ["to", "subject"]),
]}

ANY_OBJECT = {"type": "object"}

SCHEMAS = {"small object": SMALL, "anyOf 3 tools": TOOLS, "any object": ANY_OBJECT}
PROMPT = [{"role": "user", "content": "Answer in JSON."}]
PAIRED = {"llguidance": "1.9.1", "xgrammar": "0.2.8"}  # the versions compared in docs/ARCHITECTURE.md


class Llg:
    """llguidance: LLTokenizer once, then one LLMatcher per generation."""

    name = "llguidance"

    def __init__(self, tokenizer, vocab: int, eos: list[int]) -> None:
        import llguidance.hf

        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=eos)

    def compile(self, schema: dict):
        from llguidance import LLMatcher

        grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults={"whitespace_flexible": False})
        matcher = LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def fill(self, matcher, bitmask) -> None:
        # What llguidance.torch.fill_next_token_bitmask does, without importing that module (its
        # torch.compile decorator costs half a second at import, which would land in the first mask).
        matcher.unsafe_compute_mask_ptr(bitmask.data_ptr(), bitmask.numel() * 4)

    def accept(self, matcher, token: int) -> None:
        if not matcher.consume_token(token):
            raise RuntimeError(matcher.get_error())

    def complete(self, matcher) -> bool:
        return matcher.is_accepting()


class Xgr:
    """xgrammar: TokenizerInfo once, one GrammarCompiler (cache off, so every compile is timed), one
    GrammarMatcher per generation. strict_mode off: {"type": "object"} then allows any properties, as the
    schema says (strict mode would admit only {})."""

    name = "xgrammar"

    def __init__(self, tokenizer, vocab: int, eos: list[int]) -> None:
        import xgrammar

        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=eos)
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)

    def compile(self, schema: dict):
        import xgrammar

        grammar = self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=False,
                                                   separators=(",", ":"))
        return xgrammar.GrammarMatcher(grammar)

    def fill(self, matcher, bitmask) -> None:
        matcher.fill_next_token_bitmask(bitmask)

    def accept(self, matcher, token: int) -> None:
        if not matcher.accept_token(token):
            raise RuntimeError(f"xgrammar rejected token {token}")

    def complete(self, matcher) -> bool:
        return matcher.is_completed()


# Keywords a library may not implement, each with a value that breaks it: refusing the schema is correct,
# accepting the value means the library ignored the keyword and generation can emit invalid JSON.
KEYWORDS = [
    ("not", {"not": {"type": "string"}}, '"abc"'),
    ("uniqueItems", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "[1,1]"),
    ("if/then", {"type": "object", "if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}}, '{"a":1}'),
    ("dependentRequired", {"type": "object", "dependentRequired": {"a": ["b"]}}, '{"a":1}'),
    ("minProperties", {"type": "object", "minProperties": 2}, "{}"),
    ("multipleOf", {"type": "integer", "multipleOf": 5}, "7"),
    ("format: email", {"type": "string", "format": "email"}, '"zz"'),
]


def enforcement(lib, tokenizer, schema: dict, invalid: str) -> str:
    """'refused', 'enforced' (the invalid value is rejected) or 'IGNORED' (the invalid value passes)."""
    try:
        matcher = lib.compile(schema)
    except Exception:  # each library's own error type
        return "refused"
    try:
        for token in tokenizer.encode(invalid, add_special_tokens=False):
            lib.accept(matcher, token)
    except RuntimeError:
        return "enforced"
    return "IGNORED" if lib.complete(matcher) else "enforced"


def unpack(bitmask, vocab: int):
    """A [1, ceil(vocab/32)] int32 bitmask as a bool tensor [vocab] (True = allowed)."""
    import torch

    bits = (bitmask[0].unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    return bits.reshape(-1)[:vocab].bool()


@dataclass
class Row:
    tokenizer_s: float = 0.0
    compile_s: dict[str, float] = field(default_factory=dict)
    first_mask_s: dict[str, float] = field(default_factory=dict)
    mask_s: dict[str, list[float]] = field(default_factory=dict)
    valid: dict[str, int] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    keywords: dict[str, str] = field(default_factory=dict)
    forward_s: list[float] = field(default_factory=list)


def generate(lib, matcher, model, prompt_ids, vocab, eos, tokens: int, seed, times: list[float],
             forward: list[float]):
    """Decode under the grammar (greedy when seed is None); returns ids and whether the grammar completed.

    The same rule for both libraries: the mask lets end-of-generation through only where the value is
    complete; sampling it, or a mask that allows nothing else, ends the generation as complete.
    """
    import torch

    generator = torch.Generator().manual_seed(seed or 0)
    bitmask = torch.full((1, (vocab + 31) // 32), -1, dtype=torch.int32)
    ids: list[int] = []
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        for _ in range(tokens):
            start = time.perf_counter()
            lib.fill(matcher, bitmask)
            times.append(time.perf_counter() - start)
            allowed = unpack(bitmask, vocab)
            if not allowed.any() or allowed.nonzero().flatten().tolist() == [t for t in eos if allowed[t]]:
                return ids, True
            logits = out.logits[0, -1, :vocab].float().masked_fill(~allowed, float("-inf"))
            if seed is None:
                token = int(torch.argmax(logits))
            else:
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if token in eos:
                return ids, True
            lib.accept(matcher, token)
            ids.append(token)
            start = time.perf_counter()
            out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
            forward.append(time.perf_counter() - start)
    return ids, False


def measure(lib_cls, tokenizer, model, prompt_ids, vocab, eos, args) -> Row:
    import jsonschema_rs
    import torch

    row = Row()
    start = time.perf_counter()
    lib = lib_cls(tokenizer, vocab, eos)
    row.tokenizer_s = time.perf_counter() - start
    for label, schema in SCHEMAS.items():
        compiles, firsts = [], []
        for _ in range(args.compiles):
            start = time.perf_counter()
            matcher = lib.compile(schema)
            compiles.append(time.perf_counter() - start)
            bitmask = torch.full((1, (vocab + 31) // 32), -1, dtype=torch.int32)
            start = time.perf_counter()
            lib.fill(matcher, bitmask)
            firsts.append(time.perf_counter() - start)
        row.compile_s[label] = statistics.median(compiles)
        row.first_mask_s[label] = statistics.median(firsts)
        validator = jsonschema_rs.validator_for(schema)
        times: list[float] = []
        forward: list[float] = []
        valid = finished = 0
        seeds = [None] + list(range(1, args.samples + 1))
        for seed in seeds:
            matcher = lib.compile(schema)
            ids, done = generate(lib, matcher, model, prompt_ids, vocab, eos, args.tokens, seed, times, forward)
            text = tokenizer.decode(ids, skip_special_tokens=True)
            finished += done
            try:
                valid += done and validator.is_valid(json.loads(text))
            except ValueError:
                pass
            if seed is None:
                row.examples[label] = text
        row.mask_s[label] = times
        row.valid[label], row.finished[label], row.runs[label] = valid, finished, len(seeds)
        row.forward_s.extend(forward)
    for keyword, schema, invalid in KEYWORDS:
        row.keywords[keyword] = enforcement(lib, tokenizer, schema, invalid)
    return row


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo-hf")
    parser.add_argument("--samples", type=int, default=8, help="sampled generations per schema (plus one greedy)")
    parser.add_argument("--tokens", type=int, default=96, help="max new tokens per generation")
    parser.add_argument("--compiles", type=int, default=5)
    args = parser.parse_args()
    apply_environment_quirks()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    path = load_settings().models_dir / args.model
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, device_map="cpu").eval()
    vocab = len(tokenizer)
    eos = sorted({int(tokenizer.eos_token_id)} | set(model.generation_config.eos_token_id or []))
    prompt_ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True)
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "keys"):
        prompt_ids = prompt_ids["input_ids"]
    rows = {}
    for cls in (Llg, Xgr):
        if importlib.util.find_spec(cls.name) is None:  # only llguidance is a project dependency
            print(f"{cls.name} is not installed: .venv/bin/pip install {cls.name}=={PAIRED[cls.name]} to compare")
            continue
        rows[cls.name] = measure(cls, tokenizer, model, list(prompt_ids), vocab, eos, args)

    names = list(rows)
    print(f"model {args.model}, vocab {vocab}, {args.samples} sampled + 1 greedy generation(s) per schema, "
          f"<= {args.tokens} tokens, torch threads 1, xgrammar compiler threads 1")
    print(f"{'':34}" + "".join(f"{n:>16}" for n in names))
    print(f"{'tokenizer set-up (ms, once)':34}" + "".join(f"{ms(rows[n].tokenizer_s):>16}" for n in names))
    for label in SCHEMAS:
        print(f"[{label}]")
        print(f"{'  compile (ms, median)':34}" + "".join(f"{ms(rows[n].compile_s[label]):>16}" for n in names))
        print(f"{'  first mask (ms)':34}" + "".join(f"{ms(rows[n].first_mask_s[label]):>16}" for n in names))
        print(f"{'  mask per token (ms, median)':34}"
              + "".join(f"{ms(statistics.median(rows[n].mask_s[label])):>16}" for n in names))
        print(f"{'  mask per token (ms, max)':34}"
              + "".join(f"{ms(max(rows[n].mask_s[label])):>16}" for n in names))
        print(f"{'  completed / runs':34}"
              + "".join(f"{rows[n].finished[label]}/{rows[n].runs[label]:<3}".rjust(16) for n in names))
        print(f"{'  completed and valid':34}" + "".join(f"{rows[n].valid[label]:>16}" for n in names))
    print(f"{'model forward per token (ms, med)':34}"
          + "".join(f"{ms(statistics.median(rows[n].forward_s)):>16}" for n in names))
    print("[a keyword the library cannot enforce: refused, or IGNORED (invalid output possible)]")
    for keyword, _, _ in KEYWORDS:
        print(f"{'  ' + keyword:34}" + "".join(f"{rows[n].keywords[keyword]:>16}" for n in names))
    for n in names:
        for label in SCHEMAS:
            print(f"{n} greedy, {label}: {rows[n].examples[label][:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
