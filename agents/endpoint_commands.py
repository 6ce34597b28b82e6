"""The shell's remote-endpoint commands, read from the line as typed (one of the decision agent's first rules).

    add endpoint NAME at URL [, URL2 ...] [model M] [key from ENV_VAR]
    remove endpoint NAME
    list endpoints
    use NAME [then OTHER ...]          (the default model and its fallbacks)
    export NAME for vllm|llama-server  (the command that serves it on that engine)
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from agents import results as r
from agents.intents import Command, Intent, Slots
from lqmf.progress import Progress

NAME = r"[A-Za-z0-9][A-Za-z0-9_.+\-]*"
URL = r"https?://[^\s,;]+"
ADD = re.compile(rf"^\s*(?:add|register|new)\s+(?:an?\s+)?(?:remote\s+)?endpoint\s+(?P<name>{NAME})\s+"
                 rf"(?:at|=|on|url)?\s*(?P<urls>{URL}(?:\s*(?:,|\band\b|\s)\s*{URL})*)(?P<rest>.*)$", re.I)
ADD_LOOSE = re.compile(r"^\s*(?:add|register)\s+(?:an?\s+)?(?:remote\s+)?endpoints?\b", re.I)
REMOVE = re.compile(rf"^\s*(?:remove|delete|drop|forget|unregister)\s+(?:the\s+)?(?:remote\s+)?endpoint\s+"
                    rf"(?P<name>{NAME})\s*$", re.I)
LIST = re.compile(r"^\s*(?:list|show|ls)\s+(?:the\s+|all\s+)?(?:remote\s+)?endpoints\s*$|^\s*endpoints\s*$", re.I)
USE = re.compile(rf"^\s*(?:use|switch\s+to)\s+(?:model\s+)?(?P<chain>{NAME}(?:\s+(?:then|else|or)\s+{NAME})*)"
                 rf"(?:\s+(?:the\s+)?default)?\s*$", re.I)
EXPORT = re.compile(rf"^\s*export\s+(?:model\s+)?(?P<name>{NAME})\s+(?:for|to|on)\s+"
                    rf"(?P<target>vllm|llama[-_ ]?server)\s*$", re.I)
MODEL = re.compile(r"\bmodel\s+(?P<model>\S+)", re.I)
KEY = re.compile(r"\bkey\s+(?:from|in|env)\s+\$?(?P<env>[A-Za-z_][A-Za-z0-9_]*)", re.I)
RAW_KEY = re.compile(r"\bkey\s+(?!from\b|in\b|env\b)\S+", re.I)

HELP = [
    ("add endpoint NAME at URL [, URL2] [model M] [key from ENV_VAR]",
     "a remote OpenAI-compatible server (vLLM, llama-server, Ollama, a cloud API) as a model; several URLs: a fleet"),
    ("list endpoints / remove endpoint NAME", "registered endpoints with health and latency / forget one"),
    ("use NAME [then OTHER]", "the default model (requests naming `default`), with fallbacks; persisted"),
    ("export NAME for vllm|llama-server", "check a model can be served there and print the exact command"),
]


def carries_key(line: str) -> bool:
    """Whether an endpoint line carries a key itself (`key sk-...`) rather than a variable's name."""
    return bool(ADD_LOOSE.match(line) and RAW_KEY.search(line) and not KEY.search(line))


def endpoint_command(line: str) -> Optional[Command]:
    """The endpoint command a line asks for, or None when it is not one."""
    if match := ADD.match(line):
        if carries_key(line):
            return Command(Intent.ADD_ENDPOINT, question="Give the key's environment variable, never the key: "
                           "add endpoint NAME at URL key from ENV_VAR")
        rest = match.group("rest")
        model, key = MODEL.search(rest), KEY.search(rest)
        urls = re.findall(URL, match.group("urls"))
        return Command(Intent.ADD_ENDPOINT, Slots(name=match.group("name"), urls=urls,
                                                  remote_model=model.group("model") if model else None,
                                                  key_env=key.group("env") if key else None))
    if ADD_LOOSE.match(line):
        return Command(Intent.ADD_ENDPOINT, question="Name it and give its URL: add endpoint NAME at "
                       "http://HOST:PORT/v1 [model M] [key from ENV_VAR]")
    if match := REMOVE.match(line):
        return Command(Intent.REMOVE_ENDPOINT, Slots(name=match.group("name")))
    if LIST.match(line):
        return Command(Intent.LIST_ENDPOINTS)
    if match := EXPORT.match(line):
        target = "vllm" if match.group("target").lower() == "vllm" else "llama-server"
        return Command(Intent.EXPORT_MODEL, Slots(model=match.group("name"), kind=target))
    if match := USE.match(line):
        chain = re.split(r"\s+(?:then|else|or)\s+", match.group("chain"), flags=re.I)
        return Command(Intent.USE_MODEL, Slots(model=chain[0], models=chain))
    return None


class EndpointCommands:
    """Handlers over the executor's library (the same manager, endpoints and default the API server uses); a key typed
    in the line never gets here (endpoint_command asks for its variable instead)."""

    def __init__(self, executor) -> None:
        self.executor = executor

    def handlers(self) -> dict[Intent, Callable[[Command, Optional[Progress]], r.Result]]:
        return {Intent.ADD_ENDPOINT: self.add, Intent.REMOVE_ENDPOINT: self.remove,
                Intent.LIST_ENDPOINTS: lambda c, p: self.library.endpoints(), Intent.USE_MODEL: self.use,
                Intent.EXPORT_MODEL: lambda c, p: self.library.export(c.slots.model, c.slots.kind)}

    @property
    def library(self):
        return self.executor.library

    def add(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        slots = command.slots
        return self.library.add_endpoint(slots.name, slots.urls, model=slots.remote_model, key_env=slots.key_env)

    def remove(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        removed = self.library.remove_endpoint(command.slots.name)
        return r.Message(text=f"Endpoint {removed.name} removed ({', '.join(removed.urls)}).")

    def use(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        chain = self.library.use(command.slots.models or [command.slots.model])
        rest = f", falling back to {' then '.join(chain[1:])}" if chain[1:] else ""
        return r.Message(text=f"Default model: {chain[0]}{rest}. Requests naming `default` (or no model) go there; "
                              "`chat` with no model name too.")
