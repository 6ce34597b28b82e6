"""A multi-turn chat with one model, and its slash commands; the shell draws it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

from lqmf.base.generation import GenerationParams, Timings
from lqmf.base.sampling import CHAT, LIMITS, SAMPLERS
from lqmf.base.units import plural


def _flag(text: str) -> bool:
    if text.lower() in {"1", "true", "on", "yes"}:
        return True
    if text.lower() in {"0", "false", "off", "no"}:
        return False
    raise ValueError("use on or off")


# Typed alone in chat mode, these leave it (as /exit does): a person typing "exit" means the shell, not the model.
LEAVE_WORDS = frozenset({"exit", "quit", "bye", "goodbye", "/exit", "/quit", "/bye"})

# /set NAME VALUE: the sampling table's knobs, each parsed as its type (GenerationParams checks the limits).
SETTABLE = {**{name: LIMITS[name].kind for name in SAMPLERS}, "ignore_eos": _flag}


@dataclass
class SlashResult:
    """What a slash command did: a message to show, and whether chat mode ends."""

    message: str
    leave: bool = False


@dataclass
class ChatSession:
    """The conversation so far, the sampling settings, and the running statistics."""

    library: Any  # the shell's Library (lqmf.api): replies stream through it
    model: str  # the model that answered last (the one asked for until a reply falls back)
    params: GenerationParams = field(default_factory=lambda: GenerationParams(**CHAT))
    system: Optional[str] = None
    history: list[dict[str, str]] = field(default_factory=list)
    replies: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    # The name asked for when it is `default`: each reply walks its fallback chain, as an HTTP request does.
    asked: Optional[str] = None
    fell_back: Optional[str] = None  # what the last reply skipped and why ("far is unreachable (...); answered by B")

    def messages(self, user_text: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history + [{"role": "user", "content": user_text}]

    def send(self, user_text: str):
        """Start a reply: its Chunks (iterate them; cancel() stops it), once the model has begun answering. For
        `default`, the first model of the chain that begins answers; fell_back then says what was skipped."""
        started, walk = self.library.chat_stream(self.asked or self.model, self.messages(user_text), self.params)
        self.model, self.fell_back = started.model, walk.notice(started.model)
        return started

    def record(self, user_text: str, reply: str, timings: Timings, finished: bool) -> None:
        """Keep a finished turn in the context (a cancelled reply is kept as far as it got)."""
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
        self.replies += 1
        self.tokens_out += timings.completion_tokens
        self.seconds += timings.total_s

    @staticmethod
    def leaves(text: str) -> bool:
        """Whether a chat line only asks to leave chat mode ("exit", "quit!", "bye")."""
        return text.strip().lower().rstrip(".!") in LEAVE_WORDS

    def slash(self, line: str) -> SlashResult:
        """Run /exit, /clear, /system TEXT, /set NAME VALUE, /stats, /help."""
        name, _, arg = line[1:].strip().partition(" ")
        handler = {
            "exit": lambda a: SlashResult("leaving chat", leave=True),
            "quit": lambda a: SlashResult("leaving chat", leave=True),
            "bye": lambda a: SlashResult("leaving chat", leave=True),
            "clear": self._clear,
            "system": self._system,
            "set": self._set,
            "stats": self._stats,
            "help": lambda a: SlashResult("/exit  /clear  /system TEXT  /set NAME VALUE  /stats"),
        }.get(name.lower())
        if handler is None:
            return SlashResult(f"unknown command /{name}: try /help")
        return handler(arg.strip())

    def _clear(self, arg: str) -> SlashResult:
        self.history.clear()
        return SlashResult("conversation cleared")

    def _system(self, arg: str) -> SlashResult:
        self.system = arg or None
        return SlashResult(f"system prompt set: {arg}" if arg else "system prompt removed")

    def _set(self, arg: str) -> SlashResult:
        parts = arg.split()
        if len(parts) != 2 or parts[0] not in SETTABLE:
            return SlashResult(f"usage: /set NAME VALUE with NAME one of {', '.join(SETTABLE)}")
        key, raw = parts
        try:
            self.params = replace(self.params, **{key: SETTABLE[key](raw)})
        except ValueError as exc:
            return SlashResult(f"cannot set {key} to {raw}: {exc}")
        return SlashResult(f"{key} = {getattr(self.params, key)}")

    def _stats(self, arg: str) -> SlashResult:
        rate = self.tokens_out / self.seconds if self.seconds else 0.0
        p = self.params
        return SlashResult(
            f"{plural(self.replies, 'reply', 'replies')}, {plural(self.tokens_out, 'token')}, {rate:.1f} tokens/s on "
            f"average; {plural(len(self.history) // 2, 'turn')} in context; temperature {p.temperature}, "
            f"top_p {p.top_p}, max_tokens {p.max_tokens}"
        )
