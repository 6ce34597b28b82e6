"""Names as a voice typist's dictation writes them: "demo q eight underscore zero" is demo-q8_0.

Dictation spells a name out: letters one by one ("smol h f", "mini l m"), numbers as words ("f sixteen", "chat
helper v two"), separators as words ("phi dash three dash mini", "q four underscore one"), a file's dot as "dot"
("prompts dot t x t"). A run of words whose letters and digits, read so, are exactly those of one model on disk, of
a quantization level, or of a file, is written as that name; nothing else in the line changes. A run must hold at
least one spoken piece (a number word, a lone letter, a separator word), or be a whole name on disk in plain words
("fall back to gpu box"), so a line that types its names is read as typed. The start of one name, with a number
said in it, is that name ("llama three eight b").
"""

from __future__ import annotations

import re
from typing import Sequence

from agents.line_words import BNB_LEVELS
from agents.quantization.gguf_levels import FLOAT_BITS, GGUF_LEVELS

UNITS = {"zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
         "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}
SEPARATORS = frozenset({"underscore", "dash", "hyphen", "minus", "point", "dot"})
# The levels a name may hold, spoken alone ("the q four k m demo"): GGUF's, its float types, bitsandbytes' words.
LEVELS = (*GGUF_LEVELS, *FLOAT_BITS, *BNB_LEVELS)
# Words of the trade a typist spells out: "the v l l m command", "k l divergence".
SPELLED = ("vllm", "llama-server", "kl", "gptq", "bnb", "gguf", "hf", "api", "gpu", "ppl", "awq")
FILE_ENDINGS = frozenset({"txt", "csv", "json", "jsonl", "yaml", "yml", "gguf", "md", "tsv"})
TOKEN = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]+")
LONGEST = 12  # words in one spoken name: "demo g p t q four bit" is seven


def key(name: str) -> str:
    """What is left of a name to say: its letters and digits, lower case (demo-q8_0 -> demoq80)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _spoken(word: str, following: str) -> tuple[str, bool]:
    """(the word's letters and digits as the name would hold them, whether it was spoken rather than typed)."""
    low = word.lower()
    if low in UNITS:
        return str(UNITS[low]), True
    if low in TENS:  # "thirty two" is 32: the unit word adds to it
        return (str(TENS[low] // 10) if following.lower() in UNITS and UNITS[following.lower()] < 10
                else str(TENS[low])), True
    if low in SEPARATORS:
        return "", True
    if len(low) == 1 and low.isalpha():
        return low, True
    return low, False


def written(line: str, known: Sequence[str]) -> str:
    """The line with each spoken-out name of a model on disk, a level or a file written as the name."""
    tokens = list(TOKEN.finditer(line))
    words = [m for m in tokens if m.group()[0].isalnum()]
    if not words:
        return line
    spoken = [_spoken(w.group(), words[i + 1].group() if i + 1 < len(words) else "") for i, w in enumerate(words)]
    families = [first.group() for name in known if (first := re.match(r"[a-z]{3,}", name.lower()))]
    targets = {key(name): name for name in list(SPELLED) + list(LEVELS) + families + list(known) if key(name)}
    whole = {key(name) for name in known}  # a name said in plain words ("gpu box") needs no spoken piece
    out, position, i = [], 0, 0
    while i < len(words):
        found = _longest_name(words, spoken, i, targets, whole, line)
        if found is None:
            i += 1
            continue
        end, name = found
        out += [line[position:words[i].start()], name]
        position = words[end - 1].end()
        i = end
    return "".join(out) + line[position:] if out else line


def _longest_name(words: list[re.Match], spoken: list[tuple[str, bool]], start: int, targets: dict[str, str],
                  whole: set[str], line: str) -> tuple[int, str] | None:
    """(the end, the name) of the longest spoken run from `start` that says one name, or a file ("NAME dot t x t")."""
    for end in range(min(len(words), start + LONGEST), start, -1):
        if _broken(words, start, end, line):
            continue
        pieces = "".join(piece for piece, _ in spoken[start:end])
        if not any(said for _, said in spoken[start:end]) and pieces not in whole:
            continue
        if pieces in targets and end - start > 1:
            return end, targets[pieces]
        # "llama three eight b": the start of one name on disk, its numbers said, is that name
        starting = [name for name in whole if name.startswith(pieces)]
        if len(starting) == 1 and len(pieces) >= 5 and end - start > 1 and any(
                w.group().lower() in UNITS or w.group().lower() in TENS for w in words[start:end]):
            return end, targets[starting[0]]
        file = _a_file(words, spoken, start, end)
        if file:
            return end, file
    return None


def _broken(words: list[re.Match], start: int, end: int, line: str) -> bool:
    """A comma or other mark between two words of the run: two things said, not one name."""
    return any(line[words[k].end():words[k + 1].start()].strip() for k in range(start, end - 1))


def _a_file(words: list[re.Match], spoken: list[tuple[str, bool]], start: int, end: int) -> str:
    """ "prompts dot t x t", "tickets dot csv": NAME.ENDING, where the ending is a known file type."""
    said = [w.group().lower() for w in words[start:end]]
    if "dot" not in said[1:-1] or said.count("dot") != 1:
        return ""
    dot = said.index("dot")
    stem = "_".join(said[:dot])
    ending = "".join(piece for piece, _ in spoken[start + dot + 1:end])
    return f"{stem}.{ending}" if ending in FILE_ENDINGS and dot == 1 else ""
