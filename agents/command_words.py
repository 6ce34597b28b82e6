"""The shell's command words: the word groups, the vocabulary they make, and spelling correction toward it.

A word typed slightly wrong ("laod", "strat", "sever") is corrected to the closest command word; a word that is
an English word ("sings", "tokens") only where its correction completes a command pair with a neighbour.
"""

from __future__ import annotations

import difflib
from typing import Optional

# Word groups. A word typed slightly wrong ("laod", "strat", "sever") is corrected to the closest.
GROUPS: dict[str, frozenset[str]] = {
    "start": frozenset({"start", "launch", "boot", "begin", "fire", "spin", "open", "run", "restart"}),
    "stop": frozenset({"stop", "shutdown", "shut", "kill", "halt", "terminate", "close"}),
    "remove": frozenset({"remove", "delete", "rm", "erase", "uninstall", "trash", "wipe", "purge"}),
    "rename": frozenset({"rename", "mv", "move"}),
    "copy": frozenset({"copy", "cp", "duplicate", "clone"}),
    "inspect": frozenset({"info", "details", "detail", "describe", "inspect", "about", "manifest", "lineage", "card"}),
    "disk": frozenset({"disk", "space", "storage", "du", "room"}),
    "server": frozenset({"server", "api", "service", "endpoint", "backend", "daemon"}),
    "status": frozenset({"status", "state", "health", "running", "loaded", "up", "served", "serving", "alive"}),
    "load": frozenset({"load", "mount", "preload"}),
    "unload": frozenset({"unload", "evict", "offload", "release", "free", "drop", "eject", "unmount"}),
    "serve": frozenset({"serve", "host", "deploy", "expose"}),
    "list": frozenset({"list", "show", "ls", "display", "see", "view", "available", "which", "what", "print", "get"}),
    "models": frozenset({"models", "model", "llms", "llm", "checkpoints"}),
    "chat": frozenset({"chat", "talk", "converse", "speak", "ask", "message", "chatting", "talking"}),
    "experiment": frozenset({"experiment", "test", "try", "evaluate", "eval", "probe"}),
    "benchmark": frozenset({"benchmark", "bench", "benchmarks", "speed", "perf", "performance", "throughput",
                            "faster", "fastest", "quicker", "slow", "slower", "latency", "tps"}),
    "compare": frozenset({"compare", "cmp", "versus", "vs", "against", "side-by-side", "comparison", "better", "best",
                          "worse", "difference", "differ", "diff"}),
    "fidelity": frozenset({"fidelity", "kld", "divergence", "faithful", "faithfulness", "perplexity", "ppl",
                           "report-card"}),
    "agreement": frozenset({"agreement", "agree", "consistency", "consistent", "classification"}),
    "quantize": frozenset({"quantize", "quantise", "quant", "quantization", "convert", "compress", "shrink",
                           "squeeze", "squash"}),
    "download": frozenset({"download", "pull", "fetch", "grab", "dl"}),
    "import": frozenset({"import", "adopt"}),
    "login": frozenset({"login", "authenticate", "signin", "token"}),
    "imatrix": frozenset({"imatrix", "importance"}),
    "embed": frozenset({"embed", "embedding", "embeddings", "vectorize", "vectorise", "encode", "encodes"}),
    "experiments": frozenset({"experiments", "history", "runs", "results", "past"}),
    "stats": frozenset({"statistics", "stats", "metrics", "numbers", "usage"}),
    "config": frozenset({"config", "configuration", "settings", "setting", "env", "environment", "options"}),
    "help": frozenset({"help", "commands", "?", "manual", "howto"}),
    "exit": frozenset({"exit", "quit", "bye", "goodbye", "q", "leave"}),
    "batch": frozenset({"batch", "file", "prompts"}),
    "conversation": frozenset({"conversation", "convo", "dialog", "dialogue", "multi-turn", "script"}),
}
VOCAB = sorted(set().union(*GROUPS.values()) - {"?"})
VOCAB_SET = frozenset(VOCAB)
FILLER = frozenset({
    "please", "pls", "plz", "can", "could", "would", "will", "you", "kindly", "hey", "hi", "hello", "i", "want",
    "to", "like", "id", "i'd", "lets", "let's", "let", "us", "me", "for", "the", "a", "an", "now", "thanks",
    "thank", "my", "of", "on", "up", "do", "just", "go", "ahead", "and", "with", "using", "this", "that", "it",
    "some", "all", "is", "are", "be", "into", "in", "at", "from", "quickly", "currently", "again", "new",
    # Contractions are split ("what's" -> "what s") so a possessive never glues to a model name.
    "s", "re", "ll", "d", "ve", "m", "t", "yes", "y", "called", "named", "does", "did", "right", "being", "mine",
    "your", "our", "its", "there", "here", "real", "maybe", "ok", "okay", "yo",
})
# Words a person types that spelling correction must never turn into a command word, beyond the
# dictionary: short technical words, and words the phrase rewrites (agents/line_words.py) may leave behind.
KEEP = frozenset({"memory", "ram", "gpu", "vram", "out", "offline", "online", "going", "ready", "much", "big",
                  "use", "used", "take", "takes", "anything", "everything", "right", "model's", "prompt", "text",
                  "vllm", "ollama"})
# Words of a question that count as a listing verb, but pair with no typo: "what's sitting" is no "what setting".
QUESTION_WORDS = frozenset({"what", "which", "who", "how", "why", "when", "where"})
# Command words that go together: a dictionary word is corrected only when its correction completes
# such a pair with a neighbour ("start sever" -> "start server"), never on its own ("sings" stays).
PAIRS = frozenset({
    ("start", "server"), ("stop", "server"), ("server", "status"), ("list", "models"), ("load", "models"),
    ("unload", "models"), ("chat", "models"), ("benchmark", "models"), ("compare", "models"),
    ("list", "experiments"), ("list", "quantize"), ("list", "config"), ("list", "stats"), ("list", "status"),
})


def distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count one: "laod"), cut off above limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def nearest(word: str) -> Optional[str]:
    """The command word within a small edit distance (1 for short words, 2 for long), if one is nearest."""
    limit = 1 if len(word) <= 5 else 2
    near = [(d, v) for v in VOCAB if abs(len(v) - len(word)) <= limit and (d := distance(word, v, limit)) <= limit]
    # The tie-breaks (same letters, then difflib's ratio) only for the few within reach: they cost the most.
    scored = sorted((d, sorted(v) != sorted(word), -difflib.SequenceMatcher(None, word, v).ratio(), v)
                    for d, v in near)
    return scored[0][3] if scored else None


def group_of(word: str) -> Optional[str]:
    """The group a command word belongs to ("evict" -> "unload"), if any."""
    return next((name for name, members in GROUPS.items() if word in members), None)


def corrected(words: list[str]) -> tuple[list[str], list[str]]:
    """Words with typos fixed, and what changed ("laod -> load").

    Only a word that is no dictionary word is corrected freely; a dictionary word ("sever", "sings",
    "tokens") only when its correction forms a known command pair with a neighbour.
    """
    from agents.english_words import WORDS  # loaded on the first line typed, not at start-up

    out, corrections = list(words), []
    for i, word in enumerate(words):
        if word in VOCAB or len(word) < 3 or not word.isalpha() or word in KEEP:
            continue
        fix = nearest(word)
        if fix is None:
            continue
        if word in WORDS:
            group = group_of(fix)
            neighbours = [group_of(w) for w in (out[i - 1] if i else "", words[i + 1] if i + 1 < len(words) else "")
                          if w not in QUESTION_WORDS]  # "what's sitting in ...": "what" asks, it lists nothing
            if not any((n, group) in PAIRS or (group, n) in PAIRS for n in neighbours if n):
                continue
        out[i] = fix
        if word not in (fix + "s", fix + "es"):  # a plural ("quantizations") is read, not a typo to report
            corrections.append(f"{word} -> {fix}")
    return out, corrections
