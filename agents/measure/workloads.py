"""The workload kinds `tune` measures speculation on, each prompt new: free chat, code editing that repeats its
input, and extraction to JSON from a given text.

Every call makes a prompt no server has seen (a counter and a seed pick its names, numbers and topic), because a
speed that comes from having answered the same prompt before is a prompt cache, not speculation: n-gram drafting
in particular learns from everything a server has read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

KINDS = ("chat", "code", "json")

FIRST = ("Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kwame", "Lena",
         "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tamar", "Umar", "Vera", "Wen", "Yusuf")
LAST = ("Martin", "Chen", "Diaz", "Okafor", "Rossi", "Novak", "Haddad", "Larsen", "Tanaka", "Moreau", "Silva",
        "Kowalski", "Berg", "Nguyen", "Ibrahim", "Weber", "Costa", "Lindqvist", "Ahmed", "Petrov")
ROLES = ("engineering lead", "product manager", "designer", "data scientist", "support lead", "sales director",
         "security engineer", "technical writer", "QA analyst", "site reliability engineer")
CITIES = ("Berlin", "London", "Madrid", "Lagos", "Rome", "Oslo", "Osaka", "Lima", "Cairo", "Warsaw", "Lisbon",
          "Seoul", "Austin", "Nairobi", "Prague")
TASKS = ("ship the new importer", "review the pricing page", "deliver the onboarding mockups",
         "run the churn analysis", "train the support team", "migrate the billing database",
         "audit the login flow", "write the release notes", "fix the flaky upload test", "plan the user interviews")
TOPICS = ("a lighthouse keeper who finds a message in a bottle", "a robot learning to bake bread",
          "two rival chess players stuck in an elevator", "a city where it never stops snowing",
          "a librarian who can hear books whispering", "the last day of a traveling circus",
          "a fox that opens a small cafe", "an astronaut's first morning on Mars",
          "a violin maker and a stubborn apprentice", "a village that trades in forgotten dreams")
ASKS = ("Write a short story about {}.", "Tell me a bedtime story about {}.", "Describe, in a few paragraphs, {}.",
        "Write a vivid scene about {}.")
NOUNS = ("order", "invoice", "ticket", "sensor", "account", "shipment", "booking", "reading", "payment", "visit")
FIELDS = ("amount", "weight", "price", "score", "total", "count", "level", "size")


@dataclass(frozen=True)
class Workload:
    """One prompt of one kind, as chat messages."""

    kind: str
    messages: list[dict[str, str]]


def chat(rng: random.Random) -> list[dict[str, str]]:
    return [{"role": "user", "content": rng.choice(ASKS).format(rng.choice(TOPICS))
             + f" The main character is called {rng.choice(FIRST)}."}]


def code(rng: random.Random) -> list[dict[str, str]]:
    """A small Python module over records of one noun, to be returned whole with one name changed."""
    noun, field, other = rng.choice(NOUNS), rng.choice(FIELDS), rng.choice(FIELDS)
    plural, limit = noun + "s", rng.randint(3, 97)
    source = f'''def load_{plural}(path):
    {plural} = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, {field}, {other} = line.split(",")
            {plural}.append({{"name": name, "{field}": int({field}), "{other}": {other}}})
    return {plural}


def largest_{noun}({plural}):
    best = None
    for {noun} in {plural}:
        if best is None or {noun}["{field}"] > best["{field}"]:
            best = {noun}
    return best


def over_limit({plural}, limit={limit}):
    return [{noun} for {noun} in {plural} if {noun}["{field}"] > limit]
'''
    new = rng.choice(("items", "records", "entries", "rows"))
    return [{"role": "user", "content": f"Rename the variable `{plural}` to `{new}` everywhere in this Python code "
             f"and print the complete updated code:\n\n```python\n{source}```"}]


def extraction(rng: random.Random) -> list[dict[str, str]]:
    """Meeting notes naming five people, to be extracted as a JSON list."""
    people = []
    for first, last in zip(rng.sample(FIRST, 5), rng.sample(LAST, 5), strict=True):
        people.append((f"{first} {last}", rng.choice(ROLES), rng.choice(CITIES), rng.choice(TASKS),
                       f"{rng.randint(2, 28)} {rng.choice(('March', 'April', 'May', 'June'))}"))
    present = ", ".join(f"{name} ({role}, {city} office)" for name, role, city, _, _ in people)
    plans = " ".join(f"{name.split()[0]} will {task} by {due}." for name, _, _, task, due in people)
    text = f"Meeting notes, {rng.randint(1, 28)} February. Present: {present}. {plans}"
    return [{"role": "user", "content": "Extract every person from the text below as a JSON list of objects with the "
             "keys name, role, office, task and due. Copy the values exactly as written.\n\nText: " + text}]


MAKERS: dict[str, Callable[[random.Random], list[dict[str, str]]]] = {"chat": chat, "code": code, "json": extraction}


class Workloads:
    """Fresh prompts: the n-th prompt of a kind differs from every other this object (or another seed) made."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.made = 0
        self._seen: set[str] = set()

    def next(self, kind: str) -> Workload:
        """A prompt of `kind` (one of KINDS) not made before."""
        if kind not in MAKERS:
            raise ValueError(f"unknown workload kind {kind!r} (one of {', '.join(KINDS)})")
        while True:  # a random draw may repeat an earlier one: draw again
            self.made += 1
            messages = MAKERS[kind](random.Random(f"{self.seed}:{kind}:{self.made}"))
            text = messages[-1]["content"]
            if text not in self._seen:
                self._seen.add(text)
                return Workload(kind, messages)
