"""Training and held-out text present on every machine: the Python standard library's sources."""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# Fixed, sorted lists so that the same Python gives the same corpus, byte for byte.
TRAIN_MODULES = (
    "argparse.py", "bisect.py", "calendar.py", "collections/__init__.py", "csv.py",
    "dataclasses.py", "difflib.py", "enum.py", "fnmatch.py", "fractions.py", "functools.py",
    "glob.py", "gzip.py", "heapq.py", "inspect.py", "ipaddress.py", "json/__init__.py",
    "json/decoder.py", "json/encoder.py", "logging/__init__.py", "logging/handlers.py",
    "pathlib.py", "queue.py", "random.py", "shlex.py", "shutil.py", "statistics.py",
    "string.py", "tempfile.py", "textwrap.py", "threading.py", "tokenize.py", "typing.py",
    "uuid.py", "zipfile.py",
)
HELDOUT_MODULES = ("configparser.py", "pprint.py")

SYSTEM_PROMPT = "You are a helpful assistant that knows the Python standard library."


@dataclass(frozen=True)
class Corpus:
    train: str
    heldout: str
    chats: list[list[dict[str, str]]]

    @property
    def sha256(self) -> str:
        return hashlib.sha256((self.train + "\0" + self.heldout).encode()).hexdigest()


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _read(names: tuple[str, ...]) -> list[str]:
    base = stdlib_dir()
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise FileNotFoundError(f"standard library files missing under {base}: {missing}")
    return [(base / n).read_text(encoding="utf-8") for n in names]


def docstring_chats(sources: list[str]) -> list[list[dict[str, str]]]:
    """Question/answer conversations made from function docstrings, in the demo chat format."""
    chats = []
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                doc = ast.get_docstring(node)
                if doc:
                    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
                    if 20 <= len(first) <= 300:
                        chats.append([
                            {"role": "system", "content": SYSTEM_PROMPT},
                            {"role": "user", "content": f"What does {node.name} do?"},
                            {"role": "assistant", "content": first},
                        ])
    return chats


def load_corpus() -> Corpus:
    """The demo corpus: training sources, held-out sources, and docstring chats."""
    train_sources = _read(TRAIN_MODULES)
    return Corpus(
        train="\n".join(train_sources),
        heldout="\n".join(_read(HELDOUT_MODULES)),
        chats=docstring_chats(train_sources),
    )
