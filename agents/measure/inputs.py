"""What experiments read: prompt files (.txt or .jsonl), conversation scripts, and the held-out fidelity text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from lqmf.base.errors import LQMFError
from lqmf.base.generation import Prompt


def read_text_file(path: Path) -> str:
    """A UTF-8 text file, or an error that says what is wrong with it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LQMFError(f"no file at {path}", "give the path of a .txt or .jsonl file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LQMFError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})", "save it as UTF-8") from None


def _lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-empty lines (numbers count blank lines too, as an editor shows them)."""
    return [(i, line) for i, line in enumerate(read_text_file(path).splitlines(), 1) if line.strip()]


def _json_line(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise LQMFError(f"{path}, line {number}: not JSON ({exc.msg})", "one JSON object per line") from None


def load_prompts(path: Path) -> list[Prompt]:
    """Prompts from a .txt (one per non-empty line) or .jsonl file ({"prompt"}, {"text"} or {"messages"})."""
    path = Path(path).expanduser()
    prompts: list[Prompt] = []
    for number, line in _lines(path):
        if path.suffix != ".jsonl":
            prompts.append(line.strip())
            continue
        item = _json_line(path, number, line)
        value = item.get("prompt", item.get("text", item.get("messages"))) if isinstance(item, dict) else None
        if isinstance(value, str) and value.strip():
            prompts.append(value)
        elif isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
            prompts.append(value)
        else:
            raise LQMFError(f"{path}, line {number}: no prompt in it",
                            'write {"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}')
    if not prompts:
        raise LQMFError(f"{path} holds no prompts", "one prompt per line (.txt) or per JSON object (.jsonl)")
    return prompts


def load_conversation(path: Path) -> tuple[Optional[str], list[str]]:
    """A multi-turn script: (system prompt, user turns). .txt: one turn per line, `system: ...` allowed;
    .jsonl: {"role": "system"|"user", "content": ...} per line."""
    path = Path(path).expanduser()
    system, turns = None, []
    for number, line in _lines(path):
        if path.suffix == ".jsonl":
            item = _json_line(path, number, line)
            role, content = (item.get("role"), item.get("content")) if isinstance(item, dict) else (None, None)
            if role not in ("system", "user") or not isinstance(content, str):
                raise LQMFError(f"{path}, line {number}: expected a system or user message",
                                '{"role": "user", "content": "..."} (assistant turns are what the model writes)')
        else:
            role, content = ("system", line.split(":", 1)[1].strip()) if line.lower().startswith("system:") \
                else ("user", line.strip())
        if role == "system":
            system = content
        else:
            turns.append(content)
    if not turns:
        raise LQMFError(f"{path} holds no user turns", "one user turn per line")
    return system, turns


def prompt_text(prompt: Prompt) -> str:
    """What to show and store for a prompt: the text, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else json.dumps(list(prompt))


def heldout_text() -> tuple[str, str]:
    """The default fidelity text and its description: stdlib modules the demo model never trained on."""
    from lqmf.base.corpus import HELDOUT_MODULES, load_corpus

    return load_corpus().heldout, f"Python standard library {', '.join(HELDOUT_MODULES)} (held out of demo training)"
