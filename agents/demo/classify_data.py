"""`python -m agents.demo.classify_data OUT.csv`: a labelled demo set for embedding classifiers, made offline.

Two labels from the Python standard library's sources on this machine: "code" (one-line
statements) and "prose" (sentences of docstrings). The modules are ones the demo model was not
trained on, and rows are picked by the hash of their text, so the same Python gives the same file.
Columns: text, label, source (module:line).
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lqmf.base.atomic import temp_sibling
from lqmf.base.corpus import TRAIN_MODULES, stdlib_dir

log = logging.getLogger(__name__)

# Not among the demo model's training modules; present in every CPython from 3.11 on.
MODULES = (
    "configparser.py", "pprint.py", "smtplib.py", "ftplib.py", "imaplib.py", "mailbox.py", "optparse.py",
    "tarfile.py", "subprocess.py", "socketserver.py", "selectors.py", "sched.py", "getopt.py", "plistlib.py",
    "poplib.py", "reprlib.py", "contextlib.py", "copy.py", "ast.py", "codecs.py",
)
PER_LABEL = 150
SIMPLE_STATEMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise, ast.Expr, ast.Import,
                     ast.ImportFrom, ast.Assert, ast.Delete)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclass(frozen=True)
class Row:
    text: str
    label: str
    source: str


def _code_rows(module: str, source: str) -> list[Row]:
    lines = source.splitlines()
    rows = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, SIMPLE_STATEMENTS) or node.lineno != node.end_lineno:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring is prose, not code
        text = lines[node.lineno - 1].strip()
        if 25 <= len(text) <= 120 and "#" not in text:
            rows.append(Row(text, "code", f"{module}:{node.lineno}"))
    return rows


def _prose_rows(module: str, source: str) -> list[Row]:
    rows = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        where = f"{module}:{getattr(node, 'lineno', 1)}"
        for paragraph in doc.split("\n\n"):
            flat = " ".join(paragraph.split())
            for sentence in SENTENCE_END.split(flat):
                letters = sum(c.isalpha() or c.isspace() for c in sentence)
                if (30 <= len(sentence) <= 200 and sentence[0].isupper() and sentence.endswith(".")
                        and ">>>" not in sentence and letters / len(sentence) > 0.9):
                    rows.append(Row(sentence, "prose", where))
    return rows


def _pick(rows: list[Row], n: int) -> list[Row]:
    """`n` distinct texts chosen by their hash: stable, and spread over the modules."""
    unique = {row.text: row for row in rows}
    ranked = sorted(unique.values(), key=lambda row: hashlib.sha256(row.text.encode()).hexdigest())
    return ranked[:n]


def make_rows(per_label: int = PER_LABEL) -> list[Row]:
    """The labelled rows: `per_label` of code and of prose, interleaved by hash."""
    base = stdlib_dir()
    code, prose = [], []
    for module in MODULES:
        path = base / module
        if not path.is_file() or module in TRAIN_MODULES:
            continue
        source = path.read_text(encoding="utf-8")
        code += _code_rows(module, source)
        prose += _prose_rows(module, source)
    if min(len(code), len(prose)) < per_label:
        raise RuntimeError(f"the standard library under {base} gave {len(code)} code lines and {len(prose)} "
                           f"docstring sentences; {per_label} of each are needed")
    rows = _pick(code, per_label) + _pick(prose, per_label)
    return sorted(rows, key=lambda row: hashlib.sha256(f"{row.label}\0{row.text}".encode()).hexdigest())


def write_csv(path: Path, rows: list[Row]) -> Path:
    """The rows as CSV (text, label, source), written atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["text", "label", "source"])
    writer.writerows([row.text, row.label, row.source] for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    """Write the demo set to the file named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m agents.demo.classify_data",
                                     description="Write the offline code-vs-prose demo set for embedding classifiers.")
    parser.add_argument("out", type=Path, help="the CSV file to write (columns text, label, source)")
    parser.add_argument("--per-label", type=int, default=PER_LABEL, help=f"rows of each label (default {PER_LABEL})")
    args = parser.parse_args(argv)
    rows = make_rows(args.per_label)
    write_csv(args.out, rows)
    sys.stderr.write(f"wrote {len(rows)} rows ({args.per_label} code, {args.per_label} prose) to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
