"""Rewrite agents/english_words.txt: the dictionary words spelling correction must leave alone.

    .venv/bin/python -m agents.make_english_words /usr/share/dict/words   # Debian's wamerican

A tool of its own, above both the word list (agents/english_words.py) and the command vocabulary it is made
from (agents/command_words.py), which reads the list when it corrects a line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from agents.command_words import VOCAB, distance
from agents.english_words import DATA
from lqmf.base.files import write_text_atomic

log = logging.getLogger(__name__)


def generate(dictionary: Path) -> list[str]:
    """Dictionary words (lower-case letters only) within distance 2 of a command word, not command words."""
    vocab = set(VOCAB)
    words = {w.strip().lower() for w in dictionary.read_text(encoding="utf-8", errors="ignore").splitlines()}
    near = {w for w in words if w.isascii() and w.isalpha() and len(w) >= 3 and w not in vocab
            and any(distance(w, v, 2) <= 2 for v in vocab if abs(len(v) - len(w)) <= 2)}
    return sorted(near)


def main(argv: list[str]) -> int:
    words = generate(Path(argv[1] if len(argv) > 1 else "/usr/share/dict/words"))
    path = Path(__file__).with_name(DATA)
    write_text_atomic(path, "\n".join(words) + "\n")
    log.info("%d words written to %s", len(words), path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv))
