"""Models named by description: "the f16 copy of demo" is demo-f16, "the gptq demo" demo-gptq-4bit.

People name a model by the pieces of its name in their own order, with small words between them. A run of
words that holds two or more pieces of names on disk, and only pieces and small words, names the model whose
name holds every piece, when exactly one does; so does one piece (no command word) followed by "one" or
"model" ("the llama one", "the qwen model"). One piece besides the format's ("gptq", "q8_0", "nf4") is
needed: "an nf4 bnb variant of X" names a format. A bare piece is left to the partial-name match the parser
already makes; two models that both fit ("the bnb one") name neither.
"""

from __future__ import annotations

import re
from typing import Sequence

from agents.command_words import VOCAB

# Spellings of the same piece: "8-bit" and "8bit", "fp16" and "f16", "bitsandbytes" and "bnb".
SAME_PIECE = {"8-bit": "8bit", "4-bit": "4bit", "fp16": "f16", "float16": "f16", "bitsandbytes": "bnb",
              "fp32": "f32", "float32": "f32"}
# Small words inside a description: "the f16 copy of demo", "the q4_k_m demo model", "the gptq version of demo".
BETWEEN = frozenset({"the", "a", "an", "of", "copy", "version", "variant", "build", "one", "model", "quant",
                     "flavor", "flavour", "edition"})
# After one piece, these make it a description too: "the llama one", "the qwen model". (Not "version" or
# "variant": "a q8_0 version of smol-hf" is a quantization's target, not the model demo-q8_0.)
ONE_OF = frozenset({"one", "model"})
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*(?:-bit)?")
# Pieces that say how a model is stored, not which model it is. A description needs one piece besides these:
# "an nf4 bitsandbytes variant of demo-hf" or "to q8_0 gguf" asks for a format, it names no model on disk.
FORMAT_PIECE = re.compile(r"i?q\d(?:_[a-z0-9]+)*|b?f\d+|fp\d+|\d+bit|int\d|nf4|fp4|gptq|gguf|bnb|awq|hf")
# A level is one piece ("q4_k_m"), never split at its underscores.
NAME_PIECE = re.compile(r"i?q\d(?:_k)?(?:_[a-z0-9]+)*|[a-z0-9]+")


def pieces(name: str) -> frozenset[str]:
    """The pieces of a model name: demo-q4_k_m -> {demo, q4_k_m}; minilm-8bit -> {minilm, 8bit}; a family's
    letters count alone too: Qwen2.5-0.5B-Instruct -> {qwen2, qwen, 5, 0, 5b, instruct}."""
    found = NAME_PIECE.findall(name.lower())
    family = [m.group(1) for piece in found if not FORMAT_PIECE.fullmatch(piece)
              and (m := re.fullmatch(r"([a-z]{3,})\d+", piece))]
    return frozenset(found + family)


def _piece(word: str) -> str:
    low = word.lower()
    return SAME_PIECE.get(low, low)


def described(line: str, known: Sequence[str]) -> list[tuple[str, str]]:
    """(the words as typed, the model they describe) for each description in the line that fits one model."""
    by_pieces = {name: pieces(name) for name in known}
    every_piece = frozenset().union(*by_pieces.values()) if by_pieces else frozenset()
    found: list[tuple[str, str]] = []
    for run in _runs(line, every_piece):
        # The longest spans that fit, from the left: "load the gptq demo" is "gptq demo" (load-balancer.v1 has
        # "load" but no "gptq"); "demo hf q4_k_m" is "demo hf", then "q4_k_m" alone.
        start = 0
        while start < len(run):
            fit = next(((end, name) for end in range(len(run), start + 1, -1)
                        for name in [_fits(run[start:end], by_pieces, every_piece)] if name), None)
            if fit is None:
                start += 1
                continue
            end, name = fit
            found.append((line[run[start].start():run[end - 1].end()], name))
            start = end
    return found


def _fits(span: list[re.Match], by_pieces: dict[str, frozenset[str]], every_piece: frozenset[str]) -> str:
    """The one model whose name holds every piece of the span (two at least, starting and ending on one); else ""."""
    words = [_piece(m.group()) for m in span]
    core = {w for w in words if w in every_piece and w not in BETWEEN}
    # "the llama one"; not a command word ("the chat model", "the stats one" are no names)
    one_piece = len(words) == 2 and words[0] in core and words[1] in ONE_OF and words[0] not in VOCAB
    if not one_piece and (words[0] not in every_piece or words[-1] not in every_piece or len(core) < 2):
        return ""
    if all(FORMAT_PIECE.fullmatch(word) for word in core):
        return ""
    fits = [name for name, have in by_pieces.items() if core <= have]
    return fits[0] if len(fits) == 1 else ""


def _runs(line: str, every_piece: frozenset[str]) -> list[list[re.Match]]:
    """Runs of words, separated by spaces only, that are pieces of names or small words between them."""
    runs: list[list[re.Match]] = []
    run: list[re.Match] = []
    position = 0
    for match in WORD.finditer(line):
        word = _piece(match.group())
        usable = (word in every_piece or word in BETWEEN) and not _touches_name(line, match)
        if line[position:match.start()].strip() or not usable:  # a comma or a typed name ends a run
            runs.append(run)
            run = []
        position = match.end()
        if usable and (run or word in every_piece):
            run.append(match)
    runs.append(run)
    out = []
    for run in runs:
        # A run ends on a piece ("the gptq demo, please" ends at "demo"), or on "one" after one ("the llama one").
        while run and _piece(run[-1].group()) not in every_piece and not (
                _piece(run[-1].group()) in ONE_OF and len(run) > 1 and _piece(run[-2].group()) in every_piece):
            run.pop()
        if run:
            out.append(run)
    return out


def _touches_name(line: str, match: re.Match) -> bool:
    """A word glued to more of a name by - . / ("demo-q4_k_m", "Qwen2.5"): a typed name, not a description."""
    before = line[match.start() - 1] if match.start() else " "
    after = line[match.end() + 1] if match.end() + 1 < len(line) else " "
    return before in "-./" or (line[match.end():match.end() + 1] in ("-", ".", "/") and after.isalnum())
