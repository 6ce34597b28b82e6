"""The shell's remote-endpoint commands, read from the line as typed (one of the decision agent's first rules), or in
any word order once the intent is known (endpoint_slots).

    add endpoint NAME at URL [, URL2 ...] [model M] [key from ENV_VAR]
    remove endpoint NAME
    list endpoints
    use NAME [then OTHER ...]          (the default model and its fallbacks)
    export NAME for vllm|llama-server  (the command that serves it on that engine)
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

from agents import results as r
from agents.classifier_parse import looks_like_model, named_words, resolve_model
from agents.described_models import named_in_place
from agents.intents import Command, Intent, Slots
from agents.references import acted_on, corrected
from lqmf.base.progress import Progress

NAME = r"[A-Za-z0-9][A-Za-z0-9_.+\-]*"
URL = r"https?://[^\s,;]+"
URLS = re.compile(URL)
ADD = re.compile(rf"^\s*(?:add|register|new)\s+(?:an?\s+)?(?:remote\s+)?endpoint\s+(?P<name>{NAME})\s+"
                 rf"(?:at|=|on|url)?\s*(?P<urls>{URL}(?:\s*(?:,|\band\b|\s)\s*{URL})*)(?P<rest>.*)$", re.I)
ADD_LOOSE = re.compile(r"^\s*(?:add|register)\s+(?:an?\s+)?(?:remote\s+)?endpoints?\b", re.I)
REMOVE = re.compile(rf"^\s*(?:remove|delete|drop|forget|unregister)\s+(?:the\s+)?(?:remote\s+)?(?:endpoint\s+"
                    rf"(?P<name>{NAME})|(?P<before>{NAME})\s+(?:remote\s+)?endpoint)\s*$", re.I)
LIST = re.compile(r"^\s*(?:list|show|ls)\s+(?:the\s+|all\s+)?(?:remote\s+)?endpoints\s*$|^\s*endpoints\s*$", re.I)
USE = re.compile(rf"^\s*(?:use|switch\s+to)\s+(?:model\s+)?(?P<chain>{NAME}(?:\s+(?:then|else|or)\s+{NAME})*)"
                 rf"(?:\s+(?:the\s+)?default)?\s*$", re.I)
EXPORT = re.compile(rf"^\s*export\s+(?:model\s+)?(?P<name>{NAME})\s+(?:for|to|on)\s+"
                    rf"(?P<target>vllm|llama[-_ ]?server)\s*$", re.I)
MODEL = re.compile(r"\bmodel\s+(?P<model>\S+)", re.I)
KEY = re.compile(r"\bkey\s+(?:from|in|env)\s+\$?(?P<env>[A-Za-z_][A-Za-z0-9_]*)", re.I)
RAW_KEY = re.compile(r"\bkey\s+(?!from\b|in\b|env\b)\S+", re.I)
ADD_FORM = "add endpoint NAME at http://HOST:PORT/v1 [model M] [key from ENV_VAR]"
ASK_KEY = "Give the key's environment variable, never the key: add endpoint NAME at URL key from ENV_VAR"

# -- free word order (endpoint_slots) -------------------------------------------------------------------------------
# Words that never name an endpoint or a model: function words and the commands' own words.
FILLER = frozenset({
    "a", "add", "also", "am", "an", "and", "any", "anymore", "api", "are", "as", "at", "back", "backend", "backup",
    "be", "by", "called", "can", "change", "command", "compatible", "could", "d", "default", "delete", "do", "don",
    "drop", "else", "endpoint", "endpoints", "engine", "everything", "export", "fall", "fallback", "falling", "for",
    "forget", "from", "get", "give", "go", "how", "i", "id", "in", "instead", "is", "it", "just", "key", "let", "lets",
    "like", "ll", "longer", "m", "make", "me", "model", "models", "my", "named", "need", "new", "no", "now", "of", "on",
    "one", "openai", "openai-compatible", "or", "our", "please", "point", "rather", "register", "remote", "remove",
    "requests", "rid", "run", "s", "serve", "server", "servers", "serving", "set", "should", "so", "start", "switch",
    "t", "than", "that", "the", "then", "there", "this", "to", "unregister", "up", "url", "urls", "use", "using", "ve",
    "via", "want", "was", "we", "what", "which", "with", "would", "you",
})
# A key typed where its variable belongs: "key sk-...", "the token is ...", a secret's shape anywhere, a URL's ?key=.
KEY_CLAUSE = re.compile(r"(?<![\w-])(?:api[\s_-]?)?(?:key|token|secret)(?![\w-])(?P<link>(?:\s*[:=]\s*|\s+(?:is|lives|"
                        r"sits|stored|kept|comes|the|an?|environment|env|variable|var|named|called|from|in)\b)*)"
                        r"\s*(?P<value>\$?[^\s,;]+)?", re.I)
ENV_CUE = re.compile(r"\b(?:from|in|env|environment|variable|var)\b", re.I)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DOLLAR_ENV = re.compile(r"\$(?P<env>[A-Za-z_][A-Za-z0-9_]*)")
SECRET = re.compile(r"(?<![\w-])(?:sk-[\w-]{12,}|hf_[A-Za-z0-9]{12,}|gh[pousr]_[A-Za-z0-9]{12,})|\bbearer\s+\S+|"
                    r"[?&](?:api[_-]?)?(?:key|token)=", re.I)
NOT_A_KEY = frozenset({"and", "or", "please", "too", "not", "none", "no", "needed", "required", "optional", "for",
                       "to", "is", "with", "of", "it"})
# The endpoint's name: "endpoint NAME", "server named NAME", "the NAME endpoint", "named NAME", "as NAME".
NOUN = r"(?:endpoint|server|backend|remote)"
NOUN_THEN_NAME = re.compile(rf"\b{NOUN}\s+(?:(?:named|called)\s+)?[\"']?({NAME})", re.I)
NAME_THEN_NOUN = re.compile(rf"(?<![\w.\-])({NAME})\s+{NOUN}\b", re.I)
NAMED = re.compile(rf"\b(?<!model\s)(?:named|called|as|name\s+(?:it|is))\s+[\"']?({NAME})", re.I)
# The model the remote server serves: "model M", "the model is M", "serving M", "model: M".
REMOTE_MODEL = re.compile(rf"\b(?:model|serving|serves|running|runs|hosting|hosts)\b(?:\s+(?:is|id|name|named|"
                          rf"called)\b)*\s*[:=]?\s*[\"']?({NAME})", re.I)
# An engine to export for: vLLM, or llama.cpp's server however written ("llama-server", "llama.cpp's server").
ENGINE = re.compile(r"(?<![\w-])(?:v-?llm|llama(?:[\s._-]?cpp(?:'s)?)?[\s_-]?server|llama[\s._-]?cpp(?:'s)?)"
                    r"(?![\w-])", re.I)
# Fallbacks named before the default ("with X as fallback, use Y") and models named to be replaced.
AS_FALLBACK = re.compile(rf"({NAME})\s+as\s+(?:an?\s+|the\s+|its\s+)?(?:fallback|backup)", re.I)
CHAIN_PLACE = re.compile(rf"\b(?:use|then|else|or|default\s+to|fall\s*back\s+to)\s+({NAME})", re.I)
# "swap A out for B", "replace A with B": A is the default no more.
REPLACED = re.compile(rf"\b(?:instead\s+of|rather\s+than|replacing|not|stop\s+(?:using|defaulting\s+to)|"
                      rf"swap(?:\s+out)?|replace)\s+({NAME})", re.I)

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


def _urls(text: str) -> list[str]:
    """The URLs in a line, without the sentence's punctuation after them."""
    return [url.rstrip(".!?)") for url in URLS.findall(text)]


def _engine(target: str) -> str:
    """The export target as the executor names it: vllm or llama-server."""
    return "vllm" if target.lower().lstrip().startswith("v") else "llama-server"


def endpoint_command(line: str) -> Optional[Command]:
    """The endpoint command a line asks for, or None when it is not one."""
    if match := ADD.match(line):
        if carries_key(line):
            return Command(Intent.ADD_ENDPOINT, question=ASK_KEY)
        rest = match.group("rest")
        model, key = MODEL.search(rest), KEY.search(rest)
        urls = _urls(match.group("urls"))
        return Command(Intent.ADD_ENDPOINT, Slots(name=match.group("name"), urls=urls,
                                                  remote_model=model.group("model") if model else None,
                                                  key_env=key.group("env") if key else None))
    if ADD_LOOSE.match(line):
        return Command(Intent.ADD_ENDPOINT, question=f"Name it and give its URL: {ADD_FORM}")
    if match := REMOVE.match(line):
        return Command(Intent.REMOVE_ENDPOINT, Slots(name=match.group("name") or match.group("before")))
    if LIST.match(line):
        return Command(Intent.LIST_ENDPOINTS)
    if match := EXPORT.match(line):
        return Command(Intent.EXPORT_MODEL, Slots(model=match.group("name"), kind=_engine(match.group("target"))))
    if match := USE.match(line):
        chain = re.split(r"\s+(?:then|else|or)\s+", match.group("chain"), flags=re.I)
        return Command(Intent.USE_MODEL, Slots(model=chain[0], models=chain))
    return None


# -- free word order ----------------------------------------------------------------------------------------------


def _key_slot(text: str) -> tuple[Optional[str], bool]:
    """The key's environment variable a line names, and whether it typed a key itself (then no variable)."""
    if SECRET.search(text):
        return None, True
    for match in KEY_CLAUSE.finditer(URLS.sub(" ", text)):
        value = (match.group("value") or "").rstrip(".!?)'\"")
        if not value or value.lower() in NOT_A_KEY:
            continue  # "no key needed", "a key and ...": no key at all
        env = value.removeprefix("$")
        # Only a variable's shape passes: a cue ("key from X"), a $, or an upper-case name ("OPENAI_API_KEY").
        named = ENV_CUE.search(match.group("link")) or value.startswith("$") or \
            (env.isupper() and ("_" in env or len(env) <= 12))
        return (env, False) if named and ENV_NAME.fullmatch(env) else (None, True)
    dollar = DOLLAR_ENV.search(text)
    return (dollar.group("env") if dollar else None), False


def _first(pattern: re.Pattern, text: str, skip: Sequence[str] = ()) -> Optional[str]:
    """The first name the pattern captures that is no filler word (nor one of `skip`)."""
    for match in pattern.finditer(text):
        name = match.group(1).rstrip(".")
        if name.lower() not in FILLER and name not in skip:
            return name
    return None


def _endpoint_name(text: str) -> Optional[str]:
    """The endpoint a line names: next to "endpoint" / "server", else after "named" / "called" / "as"."""
    return next(filter(None, (_first(p, text) for p in (NOUN_THEN_NAME, NAME_THEN_NOUN, NAMED))), None)


def _add(line: str, known: Sequence[str]) -> Command:
    key_env, typed = _key_slot(line)
    if typed:
        return Command(Intent.ADD_ENDPOINT, question=ASK_KEY)  # nothing of the line is kept: it holds the key
    urls = _urls(line)
    rest = DOLLAR_ENV.sub(" ", KEY_CLAUSE.sub(" ", URLS.sub(" ", line)))
    name = _endpoint_name(rest)
    remote_model = _first(REMOTE_MODEL, rest, skip=[name] if name else [])
    name = name or _lone_word(rest, known, skip=[remote_model] if remote_model else [])
    command = Command(Intent.ADD_ENDPOINT, Slots(name=name, urls=urls, remote_model=remote_model, key_env=key_env))
    missing = [what for what, value in (("a name", name), ("a URL", urls)) if not value]
    if missing:
        shown = f"add endpoint {name or 'NAME'} at {', '.join(urls) or 'http://HOST:PORT/v1'}"
        command.question = f"The endpoint needs {' and '.join(missing)}: {shown} [model M] [key from ENV_VAR]"
    return command


def _lone_word(text: str, known: Sequence[str], skip: Sequence[str] = ()) -> Optional[str]:
    """An endpoint named with no cue ("remove cloud"): the one word left that is no model on disk."""
    on_disk = {k.lower() for k in known}
    words = [w for w in named_words(text, FILLER) if w not in skip and w.lower() not in on_disk]
    return words[0] if len(words) == 1 else None


def _named_known(text: str, known: Sequence[str]) -> list[str]:
    """The known names (the shell's models include its endpoints) the text names, as whole words."""
    return [k for k in known if re.search(rf"(?<![\w.-]){re.escape(k)}(?![\w-])", text, re.I)]


def _remove(line: str, known: Sequence[str]) -> Command:
    rest = URLS.sub(" ", line)
    # Endpoints are among the shell's known names: the one named (and not set aside: "keep B") is the one.
    listed = acted_on(rest, _named_known(rest, known))
    name = (listed[0] if len(listed) == 1 else None) or _endpoint_name(rest) or _lone_word(rest, known)
    command = Command(Intent.REMOVE_ENDPOINT, Slots(name=name))
    if not name:
        command.question = "Remove which endpoint? remove endpoint NAME (list endpoints shows them)"
    return command


def _use(line: str, known: Sequence[str]) -> Command:
    rest = URLS.sub(" ", line)
    replaced = {m.group(1).rstrip(".").lower() for m in REPLACED.finditer(rest)}
    fallbacks = {m.group(1).rstrip(".").lower() for m in AS_FALLBACK.finditer(rest)}
    named = [w for w in named_words(rest, FILLER) if w.lower() not in replaced]
    # In the order typed, except that a model named "as fallback" comes after the default.
    ordered = sorted(named, key=lambda w: w.lower() in fallbacks)
    # A plain word names a model only where the form puts one ("use far then q4_k_m"): "the default answer from my
    # manager is always no" names none.
    placed = {m.group(1).lower() for m in CHAIN_PLACE.finditer(rest)}
    named = list(dict.fromkeys(resolve_model(w, known) or w for w in ordered
                               if resolve_model(w, known) or looks_like_model(w) or w.lower() in placed))
    chain = corrected(rest, named)  # "set the default to A - no wait, B"
    # "the q4 smol, not the nf4 one": no link of the chain (a fallback is kept: "keep B as fallback" names it)
    chain = [ref for ref in chain if not re.search(rf"\b(?:not|instead\s+of|rather\s+than)\s+(?:the\s+)?"
                                                    rf"{re.escape(ref)}(?![\w-])", rest, re.I)] or chain
    command = Command(Intent.USE_MODEL, Slots(model=chain[0] if chain else None, models=chain))
    if not chain:
        command.question = "Which model should be the default? use NAME [then OTHER]"
        command.choices = list(known)[:20]
    return command


def _export(line: str, known: Sequence[str]) -> Command:
    engine = ENGINE.search(line)
    words = named_words(ENGINE.sub(" ", line), FILLER)
    on_disk = [ref for w in words if (ref := resolve_model(w, known))]
    model = next(iter(on_disk + [w for w in words if looks_like_model(w)] + words), None)
    command = Command(Intent.EXPORT_MODEL, Slots(model=model, kind=_engine(engine.group(0)) if engine else None))
    if not model:
        command.question = "Export which model? export NAME for vllm|llama-server"
        command.choices = list(known)[:20]
    elif not engine:
        command.question = f"Serve {model} on which engine? export {model} for vllm, or export {model} for llama-server"
    return command


def endpoint_slots(intent: Intent, line: str, known: Sequence[str] = ()) -> Command:
    """The endpoint, default or export command `intent` names, read in any word order (`known`: models on disk)."""
    readers: dict[Intent, Callable[[str, Sequence[str]], Command]] = {
        Intent.ADD_ENDPOINT: _add, Intent.REMOVE_ENDPOINT: _remove, Intent.USE_MODEL: _use,
        Intent.EXPORT_MODEL: _export, Intent.LIST_ENDPOINTS: lambda line, known: Command(Intent.LIST_ENDPOINTS)}
    if intent not in readers:
        raise ValueError(f"{intent.value} is no endpoint command")
    return readers[intent](named_in_place(line, known), known)


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

    def add_or_ask(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        """add(), or, on a server that lists several models with none named, which one (nothing registered yet)."""
        from lqmf.serving_types import ModelChoiceNeeded

        try:
            return self.add(command, progress)
        except ModelChoiceNeeded as exc:
            return r.ChooseModel(question=f"{exc.endpoint.name} serves {len(exc.models)} models. Which one?",
                                 models=exc.models, hint=exc.hint,
                                 cancelled=f"Not added. To add it: {exc.command(exc.models[0])}")

    def remove(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        removed = self.library.remove_endpoint(command.slots.name)
        return r.Message(text=f"Endpoint {removed.name} removed ({', '.join(removed.urls)}).")

    def use(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        chain = self.library.use(command.slots.models or [command.slots.model])
        rest = f", falling back to {' then '.join(chain[1:])}" if chain[1:] else ""
        return r.Message(text=f"Default model: {chain[0]}{rest}. Requests naming `default` (or no model) go there; "
                              "`chat` with no model name too.")
