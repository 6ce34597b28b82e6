"""Models named by description: "the f16 copy of demo" is demo-f16, "the 4-bit llama" llama-3-8b-q4_k_m.

People name a model by its family ("demo", "llama", "minilm") and how it is stored ("f16", "4-bit", "gptq",
"the original", "quantized"), in their own order, with small words between. A run of such words with a family
word in it names the model of that family that has every trait said, when exactly one does; so does one family
word (no command word) followed by "one" or "model" ("the llama one"). Formats alone name no model ("an nf4
bnb variant of X" asks for a format), and neither does a description after "a"/"an" ("an 8-bit version of
minilm" is a quantization's target). Two models that both fit ("the 8-bit demo") name neither.

"the llama" names the one model whose name starts with that word. Three more forms lean on a family the line
names: traits listed beside a model share its family ("the smol q4_1, f16 and nf4", "the original and 8-bit
minilm", "the three smol quants: q4_1, f16, nf4"); "the original", "the hf original", "its f16 parent" and
"the f16 one" name a model of the family every other model in the line belongs to ("compare the 8-bit minilm
to the original").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from agents.command_words import VOCAB_SET

# Spellings of the same piece: "8-bit" and "8bit", "fp16" and "f16", "bitsandbytes" and "bnb".
SAME_PIECE = {"8-bit": "8bit", "4-bit": "4bit", "fp16": "f16", "float16": "f16", "bitsandbytes": "bnb",
              "fp32": "f32", "float32": "f32", "int4": "4bit", "quantised": "quantized", "unquantised": "original",
              "unquantized": "original", "base": "original", "half": "f16", "real": "original"}
# Small words inside a description: "the f16 copy of demo", "the q4_k_m demo model", "the gptq version of demo".
# "s" is what is left of a possessive ("minilm's 8-bit copy" reads "minilm s 8-bit copy"); "the minilm copy in 8
# bit".
BETWEEN = frozenset({"the", "a", "an", "of", "copy", "version", "variant", "build", "one", "model", "quant",
                     "flavor", "flavour", "edition", "copies", "versions", "variants", "builds", "ones", "models",
                     "quants", "s", "in"})
# Words between "the" and a family that say nothing of which model: "the local llama", "the small qwen".
SIZE_OR_PLACE = r"(?:(?:local|small|little|tiny|big|large|new|latest|old|current)\s+)?"
# After one family word, these make it a description too: "the llama one", "the qwen model". (Not "version" or
# "variant": "a q8_0 version of smol-hf" is a quantization's target, not the model demo-q8_0.)
ONE_OF = frozenset({"one", "model"})
# The nouns a description may end on.
NOUNS = BETWEEN - {"the", "a", "an", "of", "s"}
# Bit widths said in words, as a voice typist does: "the four bit llama".
NUMBER_WORDS = {"two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "eight": "8", "sixteen": "16"}
WORD = re.compile(rf"(?:\d+|{'|'.join(NUMBER_WORDS)})[- ]?bits?\b|full[- ]precision|[A-Za-z0-9][A-Za-z0-9_]*(?:-bit)?",
                  re.I)
# Pieces that say how a model is stored, not which model it is.
FORMAT_PIECE = re.compile(r"i?q\d(?:_[a-z0-9]+)*|b?f\d+|fp\d+|\d+bit|int\d|nf4|fp4|gptq|gguf|bnb|awq|hf")
# A level is one piece ("q4_k_m"), never split at its underscores.
NAME_PIECE = re.compile(r"i?q\d(?:_k)?(?:_[a-z0-9]+)*|[a-z0-9]+")
# Traits said in words that are no piece of a name.
TRAIT_WORDS = frozenset({"original", "quantized"})
# "the original" stands alone before these (or the line's end): "compare the 8-bit minilm to the original".
ALONE_BEFORE = frozenset({"one", "model", "version", "weights", "copy", "checkpoint", "and", "or", "as", "for",
                          "on", "in", "to", "with", "before", "please", "pls", "too", "again", "like"})
# "the original", "the hf original", "its f16 parent", "the unquantized base model".
# "its 8-bit copy": a noun after traits, too.
ORIGINAL = re.compile(r"\b(?:the|its|their) (?P<traits>(?:[\w-]+ ){0,3})((?<= )(?:original|unquantized|unquantised|"
                      r"base|parent|source)|(?<=the )(?:original|unquantized|unquantised)|(?<=\w )one|"
                      r"(?<=\w )(?P<noun>copy|variant|version|quant|build))\b(?: (one|model|version|weights))?", re.I)
# "its f16 and q4_1 variants", "their q4 or q8 versions": traits listed before a plural, of the line's one family.
LISTED_PLURAL = re.compile(r"\b(?:its|their|the) (?P<list>[\w-]+(?: [\w-]+)?(?:(?:,? and|,|,? or) [\w-]+(?: [\w-]+)?)+)"
                           r" (?:variants|versions|copies|quants|builds|ones)\b", re.I)
ITEM = re.compile(r"\b(?!(?:and|or)\b)[\w-]+(?: (?!(?:and|or)\b)[\w-]+)?", re.I)
# Words inside such a reference that say nothing of the model: "the full f16 one", "the original hugging face one".
SAYS_NOTHING = frozenset({"full", "hugging", "face", "huggingface"})
# What follows a program's name on its command line (ollama, llama.cpp's tools): "ollama run phi".
CLI_VERBS = frozenset({"run", "pull", "push", "show", "ps", "list", "ls", "rm", "cp", "serve", "create", "stop", "-m",
                       "--model"})
# A family with a version after it: Qwen2.5-..., phi-3-mini, mistral-7b-instruct.
VERSIONED = re.compile(r"[A-Za-z]+[-_.]?\d")
LETTERS = re.compile(r"[A-Za-z]+")
# A model's own name is often its family and "LM" ("SmolLM", "SmolLM2"): the family, where the shell's names drop it.
FAMILY_LM = re.compile(r"([a-z]{4,}?)l?lm\d*")
LISTED = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|\s(?:and|or|vs\.?|&)\s+)(?:the\s+)?")


def pieces(name: str) -> frozenset[str]:
    """The pieces of a model name: demo-q4_k_m -> {demo, q4_k_m}; minilm-8bit -> {minilm, 8bit}; a family's
    letters count alone too: Qwen2.5-0.5B-Instruct -> {qwen2, qwen, 5, 0, 5b, instruct}."""
    found = NAME_PIECE.findall(name.lower())
    family = [m.group(1) for piece in found if not FORMAT_PIECE.fullmatch(piece)
              and (m := re.fullmatch(r"([a-z]{3,})\d+", piece))]
    return frozenset(found + family)


def traits(name: str) -> frozenset[str]:
    """A name's pieces and what its format pieces say: demo-q4_k_m is also q4, 4bit, gguf and quantized; demo-hf,
    and a name that says no format (phi-3-mini), is the original."""
    have = set(pieces(name))
    formats = {piece for piece in have if FORMAT_PIECE.fullmatch(piece)}
    for piece in formats:
        if level := re.fullmatch(r"i?q(\d)(?:_[a-z0-9]+)*", piece):
            have |= {f"q{level[1]}", f"{level[1]}bit", "gguf", "quantized"}
        elif bits := re.fullmatch(r"(?:int|nf|fp)(\d)|(\d+)bit", piece):
            have |= {f"{bits[1] or bits[2]}bit", "quantized"}
            if bits[2]:  # "minilm's int8 copy" is minilm-8bit (a GGUF q8_0 is 8-bit, but no int8)
                have.add(f"int{bits[2]}")
        elif piece in ("gptq", "bnb", "awq"):
            have.add("quantized")
        elif width := re.fullmatch(r"b?f(\d+)|fp(\d+)", piece):
            have |= {"gguf", f"{width[1] or width[2]}bit"}  # "the 16-bit smol" is smol-f16
    if formats <= {"hf"}:
        have.add("original")
    return frozenset(have)


def _piece(word: str) -> str:
    low = re.sub(rf"^({'|'.join(NUMBER_WORDS)})(?=[- ]?bits?$)", lambda m: NUMBER_WORDS[m.group(1)], word.lower())
    low = re.sub(r"^(\d+)[- ]?bits?$", r"\1bit", low)  # "8 bit", "5-bit", "4bits", "four bit": 8bit, 5bit, 4bit
    low = re.sub(r"^full[- ]precision$", "original", low)
    return SAME_PIECE.get(low, low)


@dataclass(frozen=True)
class _Names:
    """The models on disk as descriptions see them."""

    traits: dict[str, frozenset[str]]
    families: frozenset[str]  # pieces that say which model, not how it is stored
    said: frozenset[str]  # every word a description may hold

    @classmethod
    def of(cls, known: Sequence[str]) -> "_Names":
        by_name = {name: traits(name) for name in known}
        every = frozenset().union(*by_name.values()) if by_name else frozenset()
        families = frozenset(p for p in every if not FORMAT_PIECE.fullmatch(p) and p not in TRAIT_WORDS
                             and p not in BETWEEN)
        return cls(by_name, families, every)

    def word(self, typed: str) -> str:
        """A typed word as a piece: spellings made one, a family's plural its family ("the demos"), and a family
        said by its model's own name ("the original SmolLM" is of the family smol: SmolLM2 is what smol-hf holds)."""
        piece = _piece(typed)
        if piece in self.said:
            return piece
        if piece.endswith("s") and piece[:-1] in self.families:
            return piece[:-1]
        named = FAMILY_LM.fullmatch(piece)
        return named.group(1) if named and named.group(1) in self.families else piece

    def family_of(self, name: str) -> frozenset[str]:
        return frozenset(p for p in pieces(name) if p in self.families)

    def fit(self, family: set[str], wanted: set[str]) -> str:
        fits = [name for name, have in self.traits.items() if family <= have and wanted <= have]
        return fits[0] if len(fits) == 1 else ""


def described(line: str, known: Sequence[str]) -> list[tuple[str, str]]:
    """(the words as typed, the model they describe) for each description in the line that fits one model."""
    return [(line[start:end], name) for start, end, name in described_spans(line, known)]


def named_in_place(line: str, known: Sequence[str]) -> str:
    """The line with each description replaced by the name of the model it describes."""
    for start, end, name in reversed(described_spans(line, known)):
        line = f"{line[:start]}{name}{line[end:]}"
    return line


def described_spans(line: str, known: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, model) of each description in the line that fits one model, in the line's order."""
    return descriptions(line, known)[0]


def descriptions(line: str, known: Sequence[str]) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """Every description's span, in the line's order, and those among them that are a family word alone ("compare
    phi and qwen")."""
    names = _Names.of(known)
    found: list[tuple[int, int, str]] = []
    for run in _runs(line, names):
        # The longest spans that fit, from the left: "load the gptq demo" is "gptq demo" (load-balancer.v1 has
        # "load" but no "gptq"); "demo hf q4_k_m" is "demo hf", then "q4_k_m" alone.
        start = 0
        while start < len(run):
            fit = next(((end, name) for end in range(len(run), start, -1)
                        for name in [_fits(run[start:end], names)] if name), None)
            if fit is None:
                start += 1
                continue
            end, name = fit
            if not _a_new_one(line, run[start].start()):
                found.append((run[start].start(), run[end - 1].end(), name))
            start = end
    found += _the_family(line, names, found)
    found += _listed(line, names, found, known)
    found += _the_original(line, names, found, known)
    found += _listed_plural(line, names, found, known)
    alone = _bare_family(line, names, found, known)
    return sorted(found + alone), alone


def _the_family(line: str, names: _Names, found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """ "the llama", "the small qwen", "the phi": the first word of one model's name, after "the", names it (no
    command word, and of three letters only a versioned family's: "the gpu" or "the chat" is no model)."""
    return [span for span in _family_words(line, names, found, rf"\bthe\s+{SIZE_OR_PLACE}([A-Za-z]{{3,}})\b")
            if span[1] - span[0] > 3 or VERSIONED.match(span[2])]


def _bare_family(line: str, names: _Names, found: list[tuple[int, int, str]],
                 known: Sequence[str]) -> list[tuple[int, int, str]]:
    """ "compare phi and qwen", "ollama show mistral": the family of a versioned name (qwen2.5-..., phi-3-mini,
    mistral-7b-...) names its one model alone too, when it is no English word ("llama": only "the llama" names it).
    After "a"/"an" it is a kind, not a model; "ollama" of ollama-local, no versioned name, is the program."""
    from agents.english_words import WORDS

    spans = [span for span in _family_words(line, names, found, r"(?<![\w.'/-])([A-Za-z]{3,})\b")
             if VERSIONED.match(span[2]) and not re.search(r"\b(?:a|an)\s+$", line[:span[0]], re.I)
             and not _a_program(line, span)]
    beside = _anchors(line, known, found) + spans
    return [span for span in spans if line[span[0]:span[1]].lower() not in WORDS or _listed_beside(line, span, beside)]


# Between two models of a list: "qwen, phi-3-mini, llama", "llama vs mistral".
JOINT = re.compile(r"\s*(?:,|and|or|vs\.?|versus|against|&)\s*", re.I)


def _listed_beside(line: str, span: tuple[int, int, str], others: list[tuple[int, int, str]]) -> bool:
    """An English word that is a family ("llama") names its model where it is listed beside another model, or where
    it follows "default" ("default llama, backup cloud")."""
    if re.search(r"\bdefault\s+(?:to\s+|is\s+)?$", line[:span[0]], re.I):
        return True
    return any(JOINT.fullmatch(line[end:span[0]]) or JOINT.fullmatch(line[span[1]:start])
               for start, end, name in others if (start, end) != span[:2])


def _a_program(line: str, span: tuple[int, int, str]) -> bool:
    """ "ollama show mistral", "ollama pull resumes downloads": a word followed by one of its CLI's verbs is the
    program, not the model (the endpoint ollama-local)."""
    after = line[span[1]:].split()
    return bool(after) and after[0].lower() in CLI_VERBS


def _family_words(line: str, names: _Names, found: list[tuple[int, int, str]],
                  pattern: str) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for match in re.finditer(pattern, line, flags=re.I):
        word = match.group(1).lower()
        typed = LETTERS.match(line, match.start(1))
        if word in VOCAB_SET or _touches_name(line, typed) or _overlaps(match.start(1), match.end(1), found + out) \
                or match.group(1).isupper():  # "the new GPU": an acronym, not gpu-box
            continue
        owners = [name for name in names.traits if _first_word(name) == word]
        if len(owners) == 1:
            out.append((match.start(1), match.end(1), owners[0]))
    return out


def _first_word(name: str) -> str:
    """The first word of a name with more to it: llama-3-8b-q4_k_m -> llama, Qwen2.5-0.5B-Instruct -> qwen."""
    first = re.match(r"[a-z]+", name.lower())
    return first.group() if first and first.end() < len(name) else ""


def _fits(span: list[re.Match], names: _Names) -> str:
    """The one model with the span's family and every trait it says (two words at least, or "the llama one")."""
    words = [names.word(m.group()) for m in span]
    family = {w for w in words if w in names.families}
    wanted = {w for w in words if w in names.said and w not in names.families and w not in BETWEEN}
    # "load the original" is no load-balancer.v1, "the chat one" no chat-helper-v2, "the 3 quantized" no phi-3-mini
    if all(word in VOCAB_SET or word.isdigit() for word in family):
        return ""
    one_piece = len(words) == 2 and words[0] in family and words[1] in ONE_OF
    said = family | wanted
    last = words[-2] if len(words) > 2 and words[-1] in NOUNS else words[-1]  # "minilm's 8-bit copy"
    if not one_piece and (words[0] not in said or last not in said or len(family) + len(wanted) < 2):
        return ""
    return names.fit(family, wanted)


def _a_new_one(line: str, start: int) -> bool:
    """A description after "a"/"an" that says "version/variant/copy of": the target of a quantization."""
    head = line[:start].lower().split()
    tail = line[start:].lower()
    return bool(head) and head[-1] in ("a", "an") and bool(re.match(r"[\w-]+ (?:version|variant|copy|build) of ",
                                                                      tail))


def _anchors(line: str, known: Sequence[str], found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The models the line names, typed or described, with where they are."""
    typed = [(m.start(), m.end(), name) for name in known
             for m in re.finditer(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", line, flags=re.I)]
    return sorted(typed + found)


def _listed(line: str, names: _Names, found: list[tuple[int, int, str]],
            known: Sequence[str]) -> list[tuple[int, int, str]]:
    """Traits listed beside a named model share its family: "the smol q4_1, f16 and nf4", "the original and
    8-bit minilm"."""
    out: list[tuple[int, int, str]] = []
    taken = list(found)
    # "the three smol quants: q4_1, f16, nf4": a family, a plural, a colon, then its list
    # "the three GGUF demos, f16, q8_0 and q4_k_m": a family's plural, a comma, then its list
    headed = [(m.end(), m.end(), names.word(m.group(1) or m.group(2)), True) for m in re.finditer(
        r"\b([a-z]+?)s?\s+(?:quants|models|variants|versions|builds|copies|files|ones)\s*:\s*|"
        r"\b([a-z]{3,})s\s*,\s*", line, flags=re.I)
        if names.word(m.group(1) or m.group(2)) in names.families]
    for start, end, name, is_head in [(*anchor, False) for anchor in _anchors(line, known, found)] + headed:
        family = {name} if is_head else set(names.family_of(name))
        if not family:
            continue
        position = end
        if is_head and (first := _traits_at(line, end, names)):  # the list's first item follows the colon
            if (model := names.fit(family, first[1])) and not _overlaps(end, first[0], taken):
                out.append((end, first[0], model))
                taken.append(out[-1])
                position = first[0]
            elif spaced := _spaced_items(line, end, first[0], family, names):  # "smol quants: f16 q4_1 nf4"
                out += spaced
                taken += spaced
                position = first[0]
        while (joint := LISTED.match(line, position)) and (trait := _traits_at(line, joint.end(), names)):
            model = names.fit(family, trait[1])
            if not model or _overlaps(joint.end(), trait[0], taken):
                break
            out.append((joint.end(), trait[0], model))
            taken.append(out[-1])
            position = trait[0]
        position = start
        while (joint := re.search(r"\s*(?:,|\band\b|\bor\b|&)\s*(?:the\s+)?$", line[:position])) and \
                (trait := _traits_before(line, joint.start(), names)):
            model = names.fit(family, trait[1])
            if not model or _overlaps(trait[0], joint.start(), taken):
                break
            out.append((trait[0], joint.start(), model))
            taken.append(out[-1])
            position = trait[0]
    return out


def _spaced_items(line: str, start: int, end: int, family: set[str], names: _Names) -> list[tuple[int, int, str]]:
    """Items of a list after a colon parted by spaces only, each one model of the family; empty unless all are."""
    items = [(m.start(), m.end(), names.fit(family, {names.word(m.group())})) for m in WORD.finditer(line, start, end)]
    return items if len(items) > 1 and all(model for _, _, model in items) else []


def _traits_at(line: str, position: int, names: _Names) -> tuple[int, set[str]] | None:
    """(where they end, the traits) of a run of trait words that starts at position; None if there is none."""
    wanted: set[str] = set()
    end = position
    for match in WORD.finditer(line, position):
        word = names.word(match.group())
        if line[end:match.start()].strip() or word in names.families or word not in names.said \
                or _touches_name(line, match):
            break
        wanted.add(word)
        end = match.end()
    return (end, wanted) if wanted else None


def _traits_before(line: str, end: int, names: _Names) -> tuple[int, set[str]] | None:
    """(where they start, the traits) of a run of trait words that ends at end; None if there is none."""
    wanted: set[str] = set()
    start = end
    for match in reversed(list(WORD.finditer(line, 0, end))):
        word = names.word(match.group())
        if line[match.end():start].strip() or word in names.families or word not in names.said \
                or _touches_name(line, match):
            break
        wanted.add(word)
        start = match.start()
    return (start, wanted) if wanted else None


def _the_original(line: str, names: _Names, found: list[tuple[int, int, str]],
                  known: Sequence[str]) -> list[tuple[int, int, str]]:
    """ "the original", "the hf original", "its f16 parent", "the f16 one": a model of the one family the line's
    other models belong to, the original unless traits say which."""
    out: list[tuple[int, int, str]] = []
    for match in ORIGINAL.finditer(line):
        after = line[match.end():].lower().split()
        if after and after[0].strip(".,;:!?") not in ALONE_BEFORE and after[0][:1].isalpha():
            continue
        if _overlaps(match.start(1), match.end(), found):
            continue
        if match.group("noun") and not match.group("traits").strip():
            continue  # "the copy" says no trait
        said = {names.word(word) for word in match.group("traits").split()} - SAYS_NOTHING
        wanted = {word for word in said if word in names.said and word not in names.families} or {"original"}
        if said - wanted - {"original"}:
            continue  # a word no trait: "the training original" is no model
        family = _the_one_family(line, names, found, known, match.start(1))
        if family and (model := names.fit(family, wanted)):
            out.append((match.start(1), match.end(), model))
    return out


def _the_one_family(line: str, names: _Names, found: list[tuple[int, int, str]], known: Sequence[str],
                    at: int) -> set[str]:
    """The family every model the line names (other than at `at`) belongs to; empty when they are of several."""
    families = {names.family_of(name) for start, end, name in _anchors(line, known, found) if not start <= at < end}
    return set(next(iter(families))) if len(families) == 1 else set()


def _listed_plural(line: str, names: _Names, found: list[tuple[int, int, str]],
                   known: Sequence[str]) -> list[tuple[int, int, str]]:
    """ "benchmark the original SmolLM against its f16 and q4_1 variants": each item a model of the line's family."""
    out: list[tuple[int, int, str]] = []
    for match in LISTED_PLURAL.finditer(line):
        family = _the_one_family(line, names, found, known, match.start("list"))
        fits = []
        for item in ITEM.finditer(line, match.start("list"), match.end("list")):
            wanted = {names.word(word) for word in item.group().split()}
            model = names.fit(family, wanted) if family and all(
                w in names.said and w not in names.families for w in wanted) else ""
            fits.append((item.start(), item.end(), model))
        if fits and all(model for _, _, model in fits) and not any(_overlaps(a, b, found) for a, b, _ in fits):
            out += fits
    return out


def _overlaps(start: int, end: int, spans: list[tuple[int, int, str]]) -> bool:
    return any(start < b and a < end for a, b, _ in spans)


def _runs(line: str, names: _Names) -> list[list[re.Match]]:
    """Runs of words, separated by spaces only, that are pieces of names, traits or small words between them."""
    runs: list[list[re.Match]] = []
    run: list[re.Match] = []
    position = 0
    for match in WORD.finditer(line):
        word = names.word(match.group())
        usable = (word in names.said or word in BETWEEN) and not _touches_name(line, match)
        # A comma or a typed name ends a run; an apostrophe does not ("minilm's 8 bit version" as typed)
        if line[position:match.start()].strip(" '\u2019") or not usable:
            runs.append(run)
            run = []
        position = match.end()
        if usable and (run or word in names.said):
            run.append(match)
    runs.append(run)
    out = []
    for run in runs:
        # A run ends on a piece ("the gptq demo, please" ends at "demo"), or on a noun after one ("the llama one",
        # "minilm's 8-bit copy").
        while run and names.word(run[-1].group()) not in names.said and not (
                names.word(run[-1].group()) in NOUNS and len(run) > 1 and names.word(run[-2].group()) in names.said):
            run.pop()
        if run:
            out.append(run)
    return out


def _touches_name(line: str, match: re.Match) -> bool:
    """A word glued to more of a name by - . / ("demo-q4_k_m", "Qwen2.5"): a typed name, not a description."""
    before = line[match.start() - 1] if match.start() else " "
    after = line[match.end() + 1] if match.end() + 1 < len(line) else " "
    return before in "-./" or (line[match.end():match.end() + 1] in ("-", ".", "/") and after.isalnum())
