"""English words near the shell's command words: spelling correction leaves these alone.

"sings" is one letter from "settings" and "tokens" one from "token", yet both are real words a
person meant; only words that are no dictionary word ("laod", "strat") are corrected freely. The
list holds every word of a dictionary within edit distance 2 of a command word (the rest can never
be corrected, so they need no entry). Generated, not hand-written:

    .venv/bin/python -m agents.english_words /usr/share/dict/words   # Debian's wamerican

rewrites english_words.txt (one word a line, beside this module) from the dictionary and the
current command vocabulary; run it after adding command words.
"""

from __future__ import annotations

import logging
import sys
from importlib import resources
from pathlib import Path

from lqmf.base.files import write_text_atomic

log = logging.getLogger(__name__)

_DATA = "english_words.txt"
# Read when this module is first imported, which decision_agent does on the first line typed.
WORDS = frozenset(resources.files(__package__).joinpath(_DATA).read_text(encoding="utf-8").split())


def generate(dictionary: Path) -> list[str]:
    """Dictionary words (lower-case letters only) within distance 2 of a command word, not command words."""
    from agents.decision_agent import VOCAB, _distance

    vocab = set(VOCAB)
    words = {w.strip().lower() for w in dictionary.read_text(encoding="utf-8", errors="ignore").splitlines()}
    near = {w for w in words if w.isascii() and w.isalpha() and len(w) >= 3 and w not in vocab
            and any(_distance(w, v, 2) <= 2 for v in vocab if abs(len(v) - len(w)) <= 2)}
    return sorted(near)


def main(argv: list[str]) -> int:
    words = generate(Path(argv[1] if len(argv) > 1 else "/usr/share/dict/words"))
    path = Path(__file__).with_name(_DATA)
    write_text_atomic(path, "\n".join(words) + "\n")
    log.info("%d words written to %s", len(words), path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv))
