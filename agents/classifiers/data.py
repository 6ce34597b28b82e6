"""Labelled texts from a CSV (with a header row) or JSONL file; every refusal names the file and its line or column."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from agents.classifiers.errors import DataError

# A stratified hold-out split and k-fold cross-validation need a few rows of every label.
MIN_PER_LABEL = 3
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class LabelledSet:
    """Texts and their labels, in file order, with the line each row starts on."""

    path: Path
    sha256: str  # of the file's bytes
    format: str  # csv | jsonl
    text_column: str
    label_column: str
    texts: list[str]
    labels: list[str]
    lines: list[int]

    @property
    def label_names(self) -> list[str]:
        return sorted(set(self.labels))

    def counts(self) -> dict[str, int]:
        return {label: self.labels.count(label) for label in self.label_names}


def read_labelled(path: Path, text_column: str = "text", label_column: str = "label") -> LabelledSet:
    """Read a labelled .csv or .jsonl file; DataError (naming the line or column) for anything unusable."""
    path = Path(path).expanduser()
    shape = (f"a .csv file with a header row naming the columns {text_column!r} and {label_column!r}, or a .jsonl "
             f"file with one object like {{{json.dumps(text_column)}: ..., {json.dumps(label_column)}: ...}} per line")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: a {path.suffix or 'suffix-less'} file is not labelled data I can read",
                        f"give {shape}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"no file at {path}", f"give {shape}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a file", f"give {shape}") from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}", "check the file's permissions") from None
    try:
        content = data.decode("utf-8-sig")  # the BOM some spreadsheet exports write is not part of the header
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})",
                        "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    rows = READERS[kind](path, content, text_column, label_column)
    texts, labels, lines = [], [], []
    for line, row in rows:
        text = _cell(path, line, row, text_column, "text")
        label = _cell(path, line, row, label_column, "label")
        texts.append(text)
        labels.append(label.strip())
        lines.append(line)
    if not texts:
        raise DataError(f"{path} has no rows", f"give {shape}")
    labelled = LabelledSet(path, hashlib.sha256(data).hexdigest(), kind, text_column, label_column, texts, labels,
                           lines)
    _check_labels(labelled)
    return labelled


def _cell(path: Path, line: int, row: dict[str, Any], column: str, what: str) -> str:
    value = row.get(column)
    if isinstance(value, bool) or value is None:
        raise DataError(f"{path}:{line}: the {what} column {column!r} has no value",
                        f"give every row a {what}, or remove the row")
    if isinstance(value, (int, float)) and what == "label":
        value = str(value)  # numeric class ids are common in JSONL
    if not isinstance(value, str):
        raise DataError(f"{path}:{line}: the {what} column {column!r} holds {type(value).__name__}, not text",
                        f"make every {what} a string")
    if not value.strip():
        raise DataError(f"{path}:{line}: the {what} column {column!r} is empty",
                        f"give every row a {what}, or remove it")
    return value


def _csv_rows(path: Path, content: str, text_column: str, label_column: str) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"{path}:1: the header row is not valid CSV ({exc})", "fix the file's quoting") from None
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{path}:1: no header row",
                        f"the first line names the columns, e.g. {text_column},{label_column}")
    header = [h.strip() for h in header]
    for column, what in ((text_column, "text"), (label_column, "label")):
        if column not in header:
            raise DataError(f"{path}:1: no {what} column {column!r} (the columns are {', '.join(map(repr, header))})",
                            f"name the {what} column: ... {what} column NAME")
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}:{start}: not valid CSV ({exc})", "fix the quoting on that line") from None
        line, start = start, reader.line_num + 1
        if not cells or not any(c.strip() for c in cells):
            continue  # blank lines are not rows
        if len(cells) != len(header):
            raise DataError(f"{path}:{line}: {len(cells)} fields where the header has {len(header)}",
                            "quote fields that contain commas; give every row every column")
        yield line, dict(zip(header, cells, strict=True))


def _jsonl_rows(path: Path, content: str, text_column: str, label_column: str) -> Iterator[tuple[int, dict]]:
    for line, raw in enumerate(content.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line}: not valid JSON ({exc.msg} at column {exc.colno})",
                            "write one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}",
                            "write one JSON object per line")
        for column, what in ((text_column, "text"), (label_column, "label")):
            if column not in row:
                keys = ", ".join(map(repr, row)) or "none"
                raise DataError(f"{path}:{line}: no {what} field {column!r} (the fields are {keys})",
                                f"name the {what} field: ... {what} column NAME")
        yield line, row


READERS: dict[str, Callable[[Path, str, str, str], Iterator[tuple[int, dict]]]] = {
    "csv": _csv_rows, "jsonl": _jsonl_rows,
}


def _check_labels(data: LabelledSet) -> None:
    counts = data.counts()
    if len(counts) < 2:
        only = next(iter(counts))
        raise DataError(f"{data.path}: every row has the label {only!r} (column {data.label_column!r}); a classifier "
                        f"needs at least two labels", "add rows of another label")
    few = {label: n for label, n in counts.items() if n < MIN_PER_LABEL}
    if few:
        listed = ", ".join(f"{label!r} ({n})" for label, n in few.items())
        raise DataError(f"{data.path}: too few rows of {listed}; every label needs at least {MIN_PER_LABEL} "
                        "(a held-out split and cross-validation need some of each)", "add rows of those labels")


def describe(data: LabelledSet, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What a manifest records about the data it was trained on."""
    return {"path": str(data.path), "sha256": data.sha256, "format": data.format, "rows": len(data.texts),
            "text_column": data.text_column, "label_column": data.label_column, "labels": data.label_names,
            "counts": data.counts(), **(extra or {})}
