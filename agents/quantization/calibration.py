"""Calibration text for GPTQ: a user's file (txt or jsonl), or a built-in offline default."""

from __future__ import annotations

import ast
import json
import sysconfig
from pathlib import Path
from typing import Optional

from lqmf.base.errors import QuantizationError

# Module docstrings of the standard library: English prose present on every machine.
DEFAULT_MODULES = (
    "abc.py", "argparse.py", "asyncio/__init__.py", "base64.py", "bisect.py", "calendar.py",
    "codecs.py", "contextlib.py", "copy.py", "datetime.py", "decimal.py", "difflib.py",
    "email/__init__.py", "fnmatch.py", "fractions.py", "functools.py", "gettext.py", "glob.py",
    "hashlib.py", "heapq.py", "hmac.py", "imaplib.py", "inspect.py", "locale.py", "mailbox.py",
    "numbers.py", "operator.py", "optparse.py", "pickle.py", "platform.py", "random.py", "re/__init__.py",
    "sched.py", "selectors.py", "shelve.py", "shlex.py", "smtplib.py", "socket.py", "statistics.py",
    "string.py", "subprocess.py", "tarfile.py", "textwrap.py", "threading.py", "timeit.py", "trace.py",
    "traceback.py", "typing.py", "uuid.py", "warnings.py", "weakref.py", "zipfile.py",
)
MIN_CHARS = 200  # well above GPTQModel's 10-token floor, so no sample is silently dropped
MAX_CHARS = 2000


def default_calibration(max_samples: int = 64) -> list[str]:
    """Docstrings from the Python standard library: offline, deterministic, general prose."""
    base = Path(sysconfig.get_paths()["stdlib"])
    samples: list[str] = []
    for name in DEFAULT_MODULES:
        path = base / name
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= MIN_CHARS:
                    samples.append(doc[:MAX_CHARS])
    samples = samples[:max_samples]
    if not samples:
        raise QuantizationError(
            "no built-in calibration text was found in the Python standard library",
            "pass a calibration file (one sample per line, or jsonl with a 'text' field)",
        )
    return samples


def load_calibration(path: Optional[Path], max_samples: int = 64) -> list[str]:
    """Calibration samples from `path` (.txt: blank-line separated paragraphs; .jsonl: {"text"}), or the default."""
    if path is None:
        return default_calibration(max_samples)
    path = Path(path)
    if not path.is_file():
        raise QuantizationError(f"calibration file {path} does not exist", "give a .txt or .jsonl file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".jsonl":
        samples = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QuantizationError(
                    f"{path}:{number} is not valid JSON ({exc.msg})", 'write one {"text": "..."} object per line'
                ) from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise QuantizationError(f"{path}:{number} has no string 'text' field", 'write {"text": "..."}')
            samples.append(record["text"])
    else:
        samples = [p.strip() for p in text.split("\n\n") if p.strip()]
    long_enough = [s for s in samples if len(s.split()) >= 10]
    if not long_enough:
        raise QuantizationError(
            f"{path} holds no calibration sample of at least 10 words ({len(samples)} shorter ones)",
            "GPTQ needs real text: give paragraphs of prose or code, separated by blank lines",
        )
    return long_enough[:max_samples]
