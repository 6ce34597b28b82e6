"""Labelled texts from a CSV (with a header row) or JSONL file; every refusal names the file and its line or column."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from agents.classifiers.errors import DataError, MissingColumns

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
    """Training data: the rows of a labelled .csv or .jsonl file, with at least two labels and MIN_PER_LABEL rows
    of each; DataError (naming the line or column) for anything unusable."""
    labelled = read_rows(path, text_column, label_column)
    _check_labels(labelled)
    return labelled


def read_rows(path: Path, text_column: str = "text", label_column: str = "label", *,
              content: Optional[bytes] = None) -> LabelledSet:
    """The rows of a labelled .csv or .jsonl file, with no rule on how many labels (a test set may hold one).

    `content`: the file's bytes when they did not come from this disk (an HTTP request's); `path` then only
    names it (its suffix says the format). DataError for anything unusable, MissingColumns for a missing column.
    """
    path = Path(path).expanduser()
    shape = (f"a .csv file with a header row naming the columns {text_column!r} and {label_column!r}, or a .jsonl "
             f"file with one object like {{{json.dumps(text_column)}: ..., {json.dumps(label_column)}: ...}} per line")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: a {path.suffix or 'suffix-less'} file is not labelled data I can read",
                        f"give {shape}")
    data = _read_bytes(path, shape) if content is None else content
    try:
        text = data.decode("utf-8-sig")  # the BOM some spreadsheet exports write is not part of the header
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})",
                        "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    if not text.strip():
        raise DataError(f"{path} is empty", f"give {shape}")
    rows = READERS[kind](path, text, text_column, label_column)
    texts, labels, lines = [], [], []
    for line, row in rows:
        texts.append(_cell(path, line, row, text_column, "text"))
        labels.append(_cell(path, line, row, label_column, "label").strip())
        lines.append(line)
    if not texts:
        raise DataError(f"{path} has no rows", f"give {shape}")
    return LabelledSet(path, hashlib.sha256(data).hexdigest(), kind, text_column, label_column, texts, labels, lines)


def _read_bytes(path: Path, shape: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"no file at {path}", f"give {shape}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a file", f"give {shape}") from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}", "check the file's permissions") from None


def show_columns(columns: list[str], most: int = 20, width: int = 40) -> str:
    """Column names as a message lists them: quoted, and bounded (a header may be a whole line of prose)."""
    shown = [repr(c if len(c) <= width else c[:width - 1] + "…") for c in columns[:most]]
    more = f" and {len(columns) - most} more" if len(columns) > most else ""
    return (", ".join(shown) or "none") + more


def _require(path: Path, line: int, found: list[str], needed: tuple[tuple[str, str], ...], noun: str) -> None:
    """MissingColumns naming every needed column the header (or a JSONL line) lacks, and the ones it has."""
    missing = [(column, what) for column, what in needed if column not in found]
    if not missing:
        return
    listed = " nor ".join(f"{what} {noun} {column!r}" for column, what in missing)
    have = show_columns(found)
    raise MissingColumns(f"{path}:{line}: no {listed} (the {noun}s are {have})",
                         " and ".join(f"name the {what} {noun}: ... {what} column NAME" for _, what in missing),
                         found=list(found), missing=[column for column, _ in missing], line=line)


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
    _require(path, 1, header, ((text_column, "text"), (label_column, "label")), "column")
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
        except (ValueError, RecursionError) as exc:  # a number past Python's digit limit, nesting past the stack
            raise DataError(f"{path}:{line}: JSON that cannot be read ({type(exc).__name__}: {exc})",
                            "write one flat JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}",
                            "write one JSON object per line")
        _require(path, line, list(row), ((text_column, "text"), (label_column, "label")), "field")
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
