"""A typed line split into command words and what it names: models, files, levels, methods, URLs, quoted text.

Multi-word phrases are rewritten to one command word first, outside double quotes (a prompt is never rewritten);
the remaining words are spelling-corrected (agents/command_words.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from agents.budget_words import SIZE_TOKEN
from agents.command_words import FILLER, GROUPS, VOCAB, VOCAB_SET, corrected
from agents.described_models import described_spans, descriptions

METHODS = {"gguf": "gguf", "gptq": "gptq", "bnb": "bnb", "bitsandbytes": "bnb", "llama.cpp": "gguf"}
LEVEL = re.compile(r"^(?:i?q[1-8](?:_k)?(?:_(?:[sml]|[01]|xs|xxs|nl))?|f16|bf16|f32)$", re.I)
BNB_LEVELS = {"nf4": 4, "fp4": 4, "int8": 8, "int4": 4}
FILE = re.compile(r"\.(?:txt|jsonl|json|csv|md|yaml|yml)$", re.I)
URL = re.compile(r"https?://\S+")
TOKEN = re.compile(r"(?:~?/|\.{1,2}/)?[A-Za-z0-9][A-Za-z0-9._/:+\-]*|\?")  # paths may start with / ~/ ./
PORT = re.compile(r"(?:\bport\s*[:=]?\s*|\bon\s+|:)(\d{2,5})\b", re.I)
# A repository on the hub: "...from the hub: download ORG/NAME" names it after the colon.
HUB_ID = re.compile(r"[a-z0-9][\w.-]*/[\w.-]+", re.I)
HUB_PROGRAM = re.compile(r"(?:huggingface|hf)(?:-cli)?")
BITS = re.compile(r"\b(\d{1,2})\s*-?\s*bits?\b", re.I)
# GPTQ's group size: "with group size 64", "--group-size 64", "group_size=64", or GPTQ's own "g64".
GROUP_SIZE = re.compile(r"\bgroup[\s_-]*size\s*(?:of\s+|=\s*|:\s*)?(\d{1,4})\b|(?<![\w.-])g(\d{2,4})(?![\w.-])", re.I)
# Multi-word verbs and question forms, rewritten to one command word before the words are split.
# Each says what people type that no single word carries: "fire up X" is a load, "take down the api"
# a stop, "how quick is X" a benchmark. Applied outside quotes only (a prompt is never rewritten).
PHRASES: list[tuple[re.Pattern, str]] = [(re.compile(pattern, re.I), word) for pattern, word in [
    (r"(?<=[A-Za-z0-9])'(s|re|ll|d|ve|m|t)\b", r" \1"),  # what's -> what s; X's speed -> X s speed
    (r"\b(?:fire|bring|spin|boot|power|start|warm|gear|start)\s+up\b", "start"),
    (r"\b(?:turn|switch|power)\s+on\b", "start"),
    (r"\b(?:take|shut|bring|tear|power|wind|close)\s+down\b", "stop"),
    (r"\b(?:turn|switch|power)\s+off\b", "stop"),
    (r"\bstop\s+serving\b", "stop"),
    (r"\b(?:bring|get|fire|spin|boot)\b(?=\s+(?:\S+\s+){1,3}?(?:up|running|going|ready|online)\b)", "start"),
    (r"\b(?:bring|take)\b(?=\s+(?:\S+\s+){1,3}?(?:down|offline)\b)", "stop"),
    (r"\b(?:put|stick|pop)\b(?=.*\b(?:memory|ram|gpu|vram)\b)", "load"),
    (r"\b(?:take|get|kick|throw|pull)\b(?=.*\bout\s+of\s+(?:memory|ram|gpu|vram)\b)", "unload"),
    (r"\bget\s+rid\s+of\b", "remove"),
    # The passive of a request: "A and B should be unloaded from the server", "the text should be embedded with A"
    (r"\b(?:should|must|needs?\s+to|has\s+to|have\s+to|to)\s+be\s+unloaded\b", "unload"),
    (r"\b(?:should|must|needs?\s+to|has\s+to|have\s+to|to)\s+be\s+loaded\b", "load"),
    (r"\b(?:should|must|needs?\s+to|has\s+to|have\s+to|to)\s+be\s+embedded\b", "embed"),
    (r"\bpull\s+up\b", "show"),  # "pull up the card for X"; a download is "pull X"
    # "make X fit in 90 MB", "squeeze X into 90 MB": a quantization to a budget (agents/budget_words.py reads it).
    (r"\b(?:make|get|squeeze|cram|squash)\b(?=\s+(?:\S+\s+){1,3}?(?:fits?\s+)?(?:in(?:to|side)?|within|under|below)"
     r"\s+(?:about\s+)?\d+(?:\.\d+)?\s*(?:[kmgt]i?b|gigs?|megs?)\b)", "quantize"),
    (r"\bhow\s+(?:fast|quick|quickly|speedy|slow|snappy|responsive)\b", "benchmark"),
    (r"\btok(?:en)?s?\s*(?:per|/|a)\s*(?:second|sec|s)\b", "benchmark"),
    (r"\bhow\s+(?:much|big)\b(?=.*\b(?:space|disk|storage|room|gb|gib|take|use|occupy)\b)", "disk usage"),
    (r"\bhow\s+big\s+(?:are|is)\b", "disk usage"),
    (r"\b(?:need|want|like)\s+(\S+)\s+loaded\b", r"load \1"),  # "i need X loaded" asks, "is X loaded" does not
    (r"\bkick\s+off\b", "start"),
    (r"\bhow\s+(?:do|can)\s+i\b", "help"),
    (r"\bsay\s+(?:hi|hello)\s+to\b", "chat"),
    (r"\bgood\s*bye\b", "bye"),
]]


@dataclass
class Words:
    """A line split into command words (lower-case, spelling fixed) and the model references in it."""

    words: list[str]
    raw: list[str]  # each word as typed, before spelling correction
    models: list[str]
    quoted: list[str]
    files: list[str]
    levels: list[str]
    methods: list[str]
    urls: list[str] = field(default_factory=list)  # remote OpenAI-compatible variants: URL#MODEL
    line: str = ""
    corrections: list[str] = field(default_factory=list)  # "laod -> load", as typed
    classifiers: list[str] = field(default_factory=list)  # the saved classifiers' names
    described: list[str] = field(default_factory=list)  # words that named a model by its pieces ("the gptq demo")
    guessed: list[str] = field(default_factory=list)  # references that only look like names (none on disk)

    def references(self) -> list[str]:
        """Everything in the line that stands for a model, as the intent classifier's mask hides it."""
        return self.models + self.levels + self.described

    def in_order(self, refs: list[str]) -> list[str]:
        """References in the order they were typed ("A against B": B is the reference)."""
        low = self.line.lower()
        return sorted(refs, key=lambda ref: low.find(ref.lower()) % (len(low) + 1))

    def has(self, group: str) -> bool:
        return any(w in GROUPS[group] for w in self.words)

    def first(self, *groups: str) -> int:
        """Index of the first word in any of the groups (len(words) when none)."""
        return next((i for i, w in enumerate(self.words) if any(w in GROUPS[g] for g in groups)), len(self.words))


def outside_double_quotes(line: str, change: Callable[[str], str]) -> str:
    """Apply change to the parts of line that are not inside "double quotes" (prompts stay as typed)."""
    parts = re.split(r'("[^"]*")', line)
    return "".join(part if part.startswith('"') and part.endswith('"') and len(part) > 1 else change(part)
                   for part in parts)


def split_line(line: str, known: list[str]) -> Words:
    """The line's command words (spelling fixed) and its references; `known`: the model names on disk."""
    line = outside_double_quotes(line, lambda part: PHRASES[0][0].sub(PHRASES[0][1], part))
    urls = URL.findall(line)
    line = URL.sub(" ", line)
    quoted = [a or b for a, b in re.findall(r'"([^"]*)"|\'([^\']*)\'', line)]
    known_lower = {k.lower(): k for k in known}
    quoted_models = [known_lower[q.lower()] for q in quoted if q.lower() in known_lower]
    quoted = [q for q in quoted if q.lower() not in known_lower]
    rest = re.sub(r'"[^"]*"|\'[^\']*\'', " ", line)
    prompt_tail = ""
    if ":" in rest and not PORT.search(rest):
        head, tail = rest.split(":", 1)
        # "which is better: A or B" names models after the colon; "ask X: what is ..." a prompt; after
        # "batch experiment: X, prompts.txt" the colon only introduces the command's names.
        words_after = [w.lower().strip(",;.") for w in tail.split()]
        names_it = any(w in known_lower or FILE.search(w) or HUB_ID.fullmatch(w) for w in words_after) or \
            any(start > len(head) for start, _, _ in described_spans(rest, known))  # "the smol quants: q4_1, f16"
        if not names_it and not all(w in known_lower or w in ("or", "and", "vs") for w in words_after):
            rest, prompt_tail = head, tail
    spans, alone = descriptions(rest, known)
    # A family word alone names its model for the slots, but the classifier reads it as typed: "who trained Qwen
    # originally?" asks about the world, as it did before the word named anything.
    masked = [rest[start:end] for start, end, name in spans if (start, end, name) not in alone]
    typed_names = [(rest[start:end], name) for start, end, name in spans]
    for start, end, name in reversed(spans):  # "the f16 copy of demo" names demo-f16 (in the line too)
        rest = f"{rest[:start]} {name} {rest[end:]}"
    for typed, name in typed_names:
        said = re.compile(rf"(?<![\w.-]){re.escape(typed)}(?![\w-])")
        line = outside_double_quotes(line, lambda part, said=said, name=name: said.sub(f" {name} ", part, 1))
    for pattern, word in PHRASES[1:]:
        rest = pattern.sub(word, rest)
    rest = RULED_OUT.sub(" ", rest)
    words, raw_words, models, files, levels, methods, guessed = [], [], list(quoted_models), [], [], [], []
    for raw in TOKEN.findall(rest):
        low = raw.lower().rstrip(".,!?;:")
        if raw == "?":
            if set(rest.strip()) <= {"?"}:  # "?" alone asks for help; at the end of a question it is punctuation
                words.append("?")
                raw_words.append("?")
        elif low in known_lower:
            models.append(known_lower[low])
        elif FILE.search(low):
            files.append(raw)
        elif low in METHODS:
            methods.append(METHODS[low])
        elif LEVEL.match(low) or low in BNB_LEVELS:
            levels.append(low)
        elif low.isdigit() or BITS.fullmatch(low) or re.fullmatch(r"\d{1,2}-?bits?", low) or \
                SIZE_TOKEN.fullmatch(low):
            continue  # numbers are read by the port / bits / budget patterns
        elif HUB_PROGRAM.fullmatch(low):
            continue  # "huggingface-cli download ORG/NAME": the program typed out of habit, no model
        elif looks_like_model(raw, low):
            models.append(raw.rstrip(".,!?;:"))
            guessed.append(models[-1])
        elif low in FILLER:
            continue
        else:
            words.append(low)
            raw_words.append(raw.rstrip(".,!?;:"))
    if prompt_tail.strip():
        quoted.append(prompt_tail.strip())
    words, corrections = corrected(words)
    return Words(words, raw_words, models, quoted, files, levels, methods, urls, line, corrections,
                 described=masked, guessed=guessed)


# "talk to A directly, not a recorded experiment, not a benchmark", "rather than benchmarking it, chat with A": a
# command's noun or verb ruled out asks for nothing.
RULED_OUT = re.compile(r"\bnot\s+(?:a|an)\s+(?:[a-z]+\s+)?(?:benchmark|experiment|comparison|chat|quantization|"
                       r"download|fidelity\s+report)\b|\b(?:rather\s+than|instead\s+of|not)\s+(?:benchmark|quantiz|"
                       r"compar|load|unload|remov|delet|download|chatt|experiment|tun)ing(?:\s+(?:it|them|that|this))?\b",
                       re.I)
# Measures, times, sizes, hosts and environment variables look like names but name no model: "top-1
# agreement", "p95", "400ms", "2am", "404s", "localhost:8000", "$PROMPT_FILE", "VENDOR_API_KEY", "q3", "num_thread".
METRIC = re.compile(r"top-?\d+|p\d{2}(?:\.\d)?|\d+(?:st|nd|rd|th|x|ms|am|pm|gb|mb|gib|mib|tb|k|s|%)|x\d+|"
                    r"[\w.-]+:\d+(?:/\S*)?|\$\w+|i?q\d(?:_[a-z0-9]+)*|[a-z]+(?:_[a-z]+)+|\d+-[a-z]+")


def looks_like_model(raw: str, low: str) -> bool:
    """Names like demo-q4_k_m, stats-model-1, Qwen/Qwen2.5-0.5B: separators or letters mixed with digits."""
    if low in VOCAB or low in FILLER or re.fullmatch(r"(?:[a-z]\.){1,3}[a-z]?", low):  # "i.e", "e.g."
        return False
    if METRIC.fullmatch(low) or re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+", raw.rstrip(".,!?;:")):
        return False
    if re.search(r"[-_./:]", low) and re.search(r"[a-z0-9]", low):
        return not re.fullmatch(r"\d+(?:\.\d+)?", low) and not _hyphenated_words(low)
    return bool(re.search(r"[a-z]", low) and re.search(r"\d", low))


def _hyphenated_words(low: str) -> bool:
    """English words joined by hyphens ("one-shot", "head-to-head"), or a letter and a slash ("w/"): no model name.

    Only what is not on disk gets here: a model named so is still found by its exact name.
    """
    from agents.english_words import WORDS

    if re.fullmatch(r"[a-z]{1,2}/", low):
        return True
    parts = re.split(r"[-/]", low)
    return len(parts) > 1 and all(part.isalpha() and any(form in WORDS or form in VOCAB_SET or form in FILLER
                                                         for form in _stems(part)) for part in parts)


def _stems(word: str) -> list[str]:
    """The word and what it may be inflected from: cheaper -> cheap, slots -> slot, tokens -> token."""
    forms = [word]
    for suffix, stem in (("ier", "y"), ("iest", "y"), ("er", ""), ("est", ""), ("es", ""), ("s", ""), ("ing", ""),
                         ("ed", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            forms.append(word[: -len(suffix)] + stem)
    return forms
