"""English words near the shell's command words: spelling correction leaves these alone.

"sings" is one letter from "settings" and "tokens" one from "token", yet both are real words a
person meant; only words that are no dictionary word ("laod", "strat") are corrected freely. The
list holds every word of a dictionary within edit distance 2 of a command word (the rest can never
be corrected, so they need no entry). Generated, not hand-written, by agents/make_english_words.py:

    .venv/bin/python -m agents.make_english_words /usr/share/dict/words   # Debian's wamerican

rewrites english_words.txt (one word a line, beside this module) from the dictionary and the
current command vocabulary; run it after adding command words.
"""

from __future__ import annotations

from importlib import resources

DATA = "english_words.txt"
# Read when this module is first imported, which agents/command_words.py does on the first line typed.
WORDS = frozenset(resources.files(__package__).joinpath(DATA).read_text(encoding="utf-8").split())
