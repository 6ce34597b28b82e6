"""GGUF models served by their own llama-server child: parallel slots and continuous batching.

The parent keeps only the model's vocabulary (a vocab-only llama-cpp-python handle, a few MB): it
tokenizes and renders chat templates itself, exactly as the in-process engine does, and sends token
ids to the child's native /completion route, whose stream carries the token ids, the text, the
log-probabilities and, at the end, the engine's own timings. Stop strings, JSON-schema grammars,
sampling and detokenization all happen in the child.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from lqmf.base.errors import EngineUnavailable, FeatureUnsupported, InvalidRequest, LQMFError, ModelLoadError
from lqmf.base.generation import Chunk, GenerationParams, GenerationResult, Timings, TokenLogprob
from server.runtime.backends.base import IncrementalDecoder
from server.runtime.backends.gguf import DEFAULT_CTX, GGUFBackend
from server.runtime.engine import ChildSpec, EngineChild

log = logging.getLogger(__name__)

# llama-server's stop_type -> our finish_reason
FINISH = {"eos": "stop", "word": "stop", "limit": "length", "none": "stop"}
CONNECT_TIMEOUT_S = 5.0
CANCEL_POLL_S = 0.05  # how often a non-streamed request checks whether its client went away


class EngineBackend(GGUFBackend):
    """A .gguf file served by a llama-server child with `slots` parallel slots."""

    features = frozenset({"json_schema", "logprobs"})

    def __init__(self, record, *, binary: Path, slots: int, log_path: Path, n_ctx: Optional[int] = None,
                 threads: Optional[int] = None, server_args: tuple[str, ...] = (), **native) -> None:
        super().__init__(record, n_ctx=n_ctx, threads=threads, **native)
        self.binary = binary
        self.server_args = server_args
        self.parallel = slots
        self.log_path = log_path
        self.child: Optional[EngineChild] = None
        self._vocab_lock = threading.Lock()
        self._weights = None  # a full in-process handle, made only for embeddings (memory-mapped: shared pages)
        self._weights_lock = threading.Lock()
        self._idle: list = []  # (kept-alive http.client connection, pid of the child it reaches), newest last
        self._pool_lock = threading.Lock()
        self._grammars = GrammarCache(GRAMMAR_CACHE_SIZE)  # the child's grammars by schema (see _grammar)

    # -- lifecycle -------------------------------------------------------------------------------
    def load(self) -> None:
        if not self.record.usable:
            raise ModelLoadError(f"{self.record.name} is not usable: {self.record.reason}", "see `list models`")
        trained = self.record.context_length or DEFAULT_CTX
        self._n_ctx = min(self.requested_ctx or DEFAULT_CTX, trained)
        self._open(vocab_only=True)
        threads = self.threads or engine_threads()
        self.child = EngineChild(ChildSpec(self.binary, Path(self.record.path), self.record.name, self.parallel,
                                           self._n_ctx, threads, self.log_path, self.server_args))
        try:
            self.child.start()
        except BaseException:
            self._close_llm()
            raise
        self.loaded = True

    def unload(self) -> None:
        if self.child is not None:
            self.child.stop()
        self._drop_idle()
        with self._weights_lock:
            if self._weights is not None:
                with self._native_lock:
                    self._weights.close()
                self._weights = None
        self._close_llm()
        self.loaded = False

    def footprint(self) -> int:
        """Weights plus every slot's f16 KV cache (what the child allocates at start)."""
        layers = int(self.record.block_count or 0)
        kv = 2 * 2 * layers * self.context_length * self.parallel * int(self.record.kv_width or 0)
        return int(self.record.size_bytes) + kv

    def describe(self) -> str:
        return "gguf on llama-server"

    def engine_info(self) -> dict[str, Any]:
        """What /models shows about the engine: its process, slots, restarts and why it last died."""
        child = self.child
        return {"engine": "llama-server", "args": list(self.server_args), "slots": self.parallel,
                "pid": child.pid if child else None,
                "alive": bool(child and child.alive()), "restarts": child.restarts if child else 0,
                "died": child.died if child else None}

    # -- text (the vocabulary handle is shared by every slot's worker thread) --------------------
    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        with self._vocab_lock:
            return super().tokenize(text, add_special)

    def detokenize(self, ids: Sequence[int]) -> str:
        with self._vocab_lock:
            return super().detokenize(ids)

    def _decoder(self, prompt_ids: list[int]) -> IncrementalDecoder:
        raise LQMFError("the server engine detokenizes in the child", "use stream()")

    def _token_stream(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[int]:
        raise LQMFError("the server engine samples in the child", "use stream()")

    def reset_cache(self) -> None:
        """Nothing to reset here: a request that must time its whole prompt says so itself
        (GenerationParams.cache_prompt=False), since the child's slots are shared."""

    # -- generation ---------------------------------------------------------------------------
    def stream(self, prompt_ids: list[int], params: GenerationParams,
               cancel: Optional[threading.Event] = None) -> Iterator[Chunk]:
        """Generate on a free slot of the child; chunks as the engine streams them, timings its own."""
        body = self._request(prompt_ids, params, stream=True)
        start = time.perf_counter()
        produced = 0
        with self._failures_explained():
            conn, response = self._post(body, cancel=None)
            try:
                for line in response:
                    if not line.startswith(b"data: "):
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise self._event_error(event["error"])
                    if event.get("stop"):
                        yield final_chunk(event, params)
                        return
                    tokens = event.get("tokens") or []
                    produced += len(tokens)
                    yield Chunk(event.get("content", ""), tokens, logprobs=token_logprobs(event, params))
                    if cancel is not None and cancel.is_set():
                        # Closing the connection (below) is what llama-server watches: it frees the slot.
                        elapsed = time.perf_counter() - start
                        yield Chunk("", [], finish_reason="cancelled",
                                    timings=Timings(len(prompt_ids), produced, 0.0, elapsed, elapsed))
                        return
            finally:
                conn.close()  # llama-server closes a connection after a streamed answer anyway
            raise ConnectionError("the stream ended without a final event")  # explained below

    def generate(self, prompt_ids: list[int], params: GenerationParams,
                 cancel: Optional[threading.Event] = None) -> GenerationResult:
        """A whole generation as one answer from the child: no per-token work in this process at all."""
        body = self._request(prompt_ids, params, stream=False)
        start = time.perf_counter()
        with self._failures_explained():
            conn, response = self._post(body, cancel)
            if response is None:  # cancelled while the child worked: closing the connection stops it
                elapsed = time.perf_counter() - start
                return GenerationResult("", [], "cancelled", Timings(len(prompt_ids), 0, 0.0, elapsed, elapsed))
            event = self._whole_answer(conn, response)
        chunk = final_chunk(event, params, whole=True)
        return GenerationResult(chunk.text, chunk.token_ids, chunk.finish_reason, chunk.timings, chunk.logprobs)

    def _request(self, prompt_ids: list[int], params: GenerationParams, stream: bool) -> dict[str, Any]:
        """The /completion body, after the checks that need no child (schema, context), with the child up."""
        if params.json_schema is not None:
            self.check_schema(params.json_schema)
        window = self.window(params)
        self.check_fits(prompt_ids, window)
        budget = min(params.max_tokens, window - len(prompt_ids))
        self.child.ensure_running()
        grammar = self._grammar(prompt_ids, params) if params.json_schema is not None else None
        return completion_body(prompt_ids, params, budget, stream, grammar)

    def _post(self, body: dict[str, Any], cancel: Optional[threading.Event]):
        """POST /completion: (connection, response), or (connection, None) when `cancel` was set before the
        answer came (the connection is then closed: llama-server sees that and cancels the task).

        Connections that served a non-streamed answer are kept alive for the next request (llama-server
        closes one after a streamed answer itself). One the child closed while it sat idle fails before
        any answer, and only then is the request sent again, once, on a new connection.
        """
        import http.client
        import select

        payload = json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.child.key}", "Content-Type": "application/json"}
        for attempt in (0, 1):
            conn, reused = self._connection()
            try:
                conn.request("POST", "/completion", body=payload, headers=headers)
                conn.sock.settimeout(None)  # a long prompt or generation is not a failure
                if cancel is not None:
                    while not select.select([conn.sock], [], [], CANCEL_POLL_S)[0]:
                        if cancel.is_set():
                            conn.close()
                            return conn, None
                response = conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected):
                conn.close()
                if reused and attempt == 0:
                    self._drop_idle()  # the others sat idle as long: the retry takes a new connection
                    continue
                raise
            break
        if response.status != 200:
            try:
                raise self._refusal(response.status, response.read())
            finally:
                conn.close()
        return conn, response

    def _whole_answer(self, conn, response) -> dict[str, Any]:
        """The child's JSON answer, read whole; only a connection read to its end goes back to the pool."""
        done = False
        try:
            answer = json.loads(response.read())
            done = True
        finally:
            self._release(conn, reusable=done)
        return answer

    def _connection(self):
        """(an idle kept-alive connection to the running child, True) or (a new one, False)."""
        import http.client

        child = self.child
        with self._pool_lock:
            while self._idle:
                conn, pid = self._idle.pop()
                if pid == child.pid:
                    return conn, True
                conn.close()  # to a child that has since died (a new one may even have the same port)
        return http.client.HTTPConnection("127.0.0.1", child.port, timeout=CONNECT_TIMEOUT_S), False

    def _release(self, conn, reusable: bool) -> None:
        """Keep a connection whose answer was read to the end; close any other."""
        with self._pool_lock:
            # http.client drops the socket itself after an answer that said "Connection: close".
            if reusable and conn.sock is not None and len(self._idle) < self.parallel:
                self._idle.append((conn, self.child.pid))
                return
        conn.close()

    def _drop_idle(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    @contextlib.contextmanager
    def _failures_explained(self):
        """A broken connection to the child becomes EngineUnavailable with the reason the child died."""
        import http.client

        try:
            yield
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ConnectionError is an OSError
            time.sleep(0.05)  # let the watcher record why the child died, when it did
            reason = self.child.died or f"{type(exc).__name__}: {exc}"
            raise EngineUnavailable(f"{self.record.name}'s engine stopped in the middle of the request ({reason})",
                                    "send the request again: the next one restarts the engine") from exc

    def _refusal(self, status: int, raw: bytes) -> LQMFError:
        text = raw.decode("utf-8", "replace")
        try:
            message = json.loads(text).get("error", {}).get("message", text)
        except (ValueError, AttributeError):
            message = text
        if status == 400:
            return InvalidRequest(f"llama-server refused the request: {message}", "check the request's values")
        return EngineUnavailable(f"llama-server answered {status}: {message}", f"see {self.log_path}")

    def _event_error(self, error: Any) -> LQMFError:
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        return LQMFError(f"llama-server failed the request: {message}", f"see {self.log_path}")

    # -- JSON schemas ---------------------------------------------------------------------------------
    def grammar_tokenizer(self):
        with self._vocab_lock:  # built from the vocabulary handle that every slot's worker shares
            return super().grammar_tokenizer()

    def check_schema(self, schema_text: str) -> None:
        """Refuse, before the child sees it, a schema that is invalid or that the engine would not enforce.

        llama-server's converter ignores what it does not know (measured: {"not": ...} generated
        unconstrained) and fails mid-generation on a schema no value satisfies (a 500 after the first
        token). llguidance compiles the schema against this model's vocabulary first (invalid: 422,
        unenforceable: 400), then the keywords llama.cpp's converter skips are refused by name.
        """
        from server.runtime.constrained import JsonConstraint

        JsonConstraint.for_backend(self, schema_text)
        skipped = engine_unenforced(json.loads(schema_text))
        if skipped:
            raise FeatureUnsupported(
                f"llama.cpp's grammar cannot enforce {', '.join(sorted(skipped))} in a JSON schema",
                "drop those keywords, or use a transformers format of the model (llguidance enforces them)")

    def _grammar(self, prompt_ids: list[int], params: GenerationParams) -> str:
        """The GBNF grammar the child gets for the request's schema: llama.cpp's own conversion, compact, its
        fixed text in this model's tokens (see compact_grammar, tokenized_literals). Made once per schema."""
        grammar = self._grammars.get(params.json_schema)
        if grammar is None:
            converted = compact_grammar(self._converted_grammar(prompt_ids, params))
            grammar = tokenized_literals(converted, self._spelling)
            self._grammars.put(params.json_schema, grammar)
        return grammar

    def _spelling(self, text: str) -> Optional[list[int]]:
        """The model's own tokens for `text` (no BOS, special tokens not parsed), or None when they do not
        spell it back exactly (a tokenizer that adds a leading space, for one)."""
        with self._vocab_lock:
            ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return ids if ids and self.detokenize(ids) == text else None

    def _converted_grammar(self, prompt_ids: list[int], params: GenerationParams) -> str:
        """The grammar llama-server's own converter (C++) makes of the schema, as the child reports it.

        The converter is not exported by any library this process loads, and llama-cpp-python's Python port
        of it does not enforce integer bounds, so the child converts: a one-token generation under the schema,
        whose answer echoes its settings. It runs on the request's own prompt, so the slot it warms is the one
        the request then finds cached.
        """
        body = completion_body(prompt_ids, params, 1, stream=False)
        body.pop("n_probs", None)
        body["response_fields"] = ["generation_settings"]  # not the prompt's text, tokens and timings
        with self._failures_explained():
            conn, response = self._post(body, cancel=None)
            answer = self._whole_answer(conn, response)
        grammar = (answer.get("generation_settings") or {}).get("grammar")
        if not isinstance(grammar, str) or not grammar:
            raise LQMFError("llama-server did not report the grammar it made of the JSON schema",
                            f"see {self.log_path}; the engine's version may not echo generation_settings")
        return grammar

    # -- embeddings: a full in-process handle on the same (memory-mapped) file --------------------
    def _weights_llm(self):
        with self._weights_lock:
            if self._weights is None:
                with self._native_lock:
                    self._weights = self._new_llama(n_ctx=256, n_batch=256, n_threads=self.threads or engine_threads())
            return self._weights


# Validation keywords llama.cpp's JSON-schema converter (common/json-schema.cpp) does not enforce.
ENGINE_SKIPS = frozenset({
    "not", "uniqueItems", "multipleOf", "minProperties", "maxProperties", "patternProperties", "propertyNames",
    "if", "then", "else", "dependentRequired", "dependentSchemas", "contains", "minContains", "maxContains",
    "unevaluatedProperties", "unevaluatedItems",
})
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")


def engine_unenforced(schema: Any) -> set[str]:
    """The validation keywords in `schema` that llama.cpp's converter would silently skip."""
    if not isinstance(schema, dict):
        return set()
    found = {k for k in schema if k in ENGINE_SKIPS}
    if schema.get("type") != "integer":  # numeric bounds are enforced on integers only
        found |= {f"{k} (on a non-integer)" for k in BOUNDS if k in schema}
    for key in SUBSCHEMA_LISTS:
        for sub in schema.get(key) or []:
            found |= engine_unenforced(sub)
    for key in SUBSCHEMA_MAPS:
        for sub in (schema.get(key) or {}).values():
            found |= engine_unenforced(sub)
    for key in ("items", "additionalProperties"):
        found |= engine_unenforced(schema.get(key))
    return found


# llama.cpp's converter lets whitespace (one space, or up to two newlines and 20 spaces or tabs) follow
# every JSON token, in one rule named `space`. A small model spends its budget on that indentation
# (measured: a forced tool call cut at 64 tokens inside its first key), so the rule is made empty: the
# child then writes the compact JSON that the in-process engine's llguidance writes
# (server/runtime/constrained.py compiles with whitespace_flexible off). Whitespace inside strings is content,
# untouched.
SPACE_RULE = re.compile(r"^space ::= .*$", re.MULTILINE)
COMPACT_SPACE = 'space ::= ""'
# A GBNF string literal (group 1: its escaped text), or a character class, matched whole so that the
# quotes it may hold are not taken for a literal's.
GBNF_LITERAL = re.compile(r'\[(?:\\.|[^\]\\])*\]|"((?:\\.|[^"\\])*)"')
GBNF_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
GBNF_ESCAPED = {"t": "\t", "r": "\r", "n": "\n"}  # any other escaped character stands for itself
GRAMMAR_CACHE_SIZE = 256


def compact_grammar(gbnf: str) -> str:
    """llama.cpp's GBNF for a JSON schema with no whitespace allowed between tokens."""
    compact, found = SPACE_RULE.subn(COMPACT_SPACE, gbnf, count=1)
    if not found:  # a future converter without the rule: its JSON is still valid, maybe not compact
        log.warning("llama.cpp's grammar has no `space` rule to make empty; its JSON may not be compact")
    return compact


def tokenized_literals(gbnf: str, spelling) -> str:
    """`gbnf` with every literal of two or more characters written as the model's own tokens for it.

    llama.cpp's grammar admits any tokenization of a literal, and a small model then spells keys one
    character a token (measured on demo-q4_k_m: `"tool_calls"` as 12 tokens, a forced call 67-77 tokens
    where the in-process engine took 43-51). llguidance admits only the tokenizer's own tokens for text the
    schema fixes; token ids (`<[id]>`) do the same here. `spelling(text)` gives those ids, or None to leave
    the literal as characters. The language is unchanged: only how the fixed text is cut into tokens.
    """
    def rewrite(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group(0)  # a character class
        text = GBNF_ESCAPE.sub(lambda e: gbnf_char(e.group(1)), match.group(1))
        ids = spelling(text) if len(text) > 1 else None
        return "(" + " ".join(f"<[{i}]>" for i in ids) + ")" if ids else match.group(0)

    return GBNF_LITERAL.sub(rewrite, gbnf)


def gbnf_char(escape: str) -> str:
    """The character a GBNF escape (without its backslash) stands for, as llama.cpp's parse_char reads it."""
    if escape[0] in "xuU" and len(escape) > 1:
        return chr(int(escape[1:], 16))
    return GBNF_ESCAPED.get(escape, escape)


class GrammarCache:
    """One model's grammars by schema text, the least recently used dropped first: tool requests repeat the
    same schema, and each new one costs the child a one-token run (see EngineBackend._converted_grammar)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            grammar = self._items.get(key)
            if grammar is not None:
                self._items.move_to_end(key)
            return grammar

    def put(self, key: str, grammar: str) -> None:
        with self._lock:
            self._items[key] = grammar
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def engine_threads() -> int:
    """Physical cores: the child's threads spin at barriers, and the parent's per-token work is small."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def completion_body(prompt_ids: list[int], params: GenerationParams, budget: int, stream: bool,
                    grammar: Optional[str] = None) -> dict[str, Any]:
    """The llama-server /completion request for a generation; `grammar` (GBNF) constrains it in place of the
    schema's own conversion (see compact_grammar)."""
    body: dict[str, Any] = {
        "prompt": prompt_ids, "n_predict": budget, "stream": stream, "return_tokens": True,
        "cache_prompt": params.cache_prompt,
        "temperature": 0.0 if params.greedy else params.temperature, "top_k": params.top_k, "top_p": params.top_p,
        "min_p": params.min_p, "repeat_penalty": params.repeat_penalty,
        # A grammar that is complete allows nothing but end-of-generation: masking it then leaves no
        # token at all (llama-server fails the request, measured), so a constrained reply ends there.
        "ignore_eos": params.ignore_eos and params.json_schema is None,
        "stop": list(params.stop),
    }
    if params.seed is not None:
        body["seed"] = params.seed_bits(32)
    if grammar is not None:
        body["grammar"] = grammar
    elif params.json_schema is not None:
        # llama.cpp's own converter, which enforces integer bounds where llama-cpp-python's Python port of
        # it does not; `true` (any value) is written as the empty schema it means.
        schema = json.loads(params.json_schema)
        body["json_schema"] = {} if schema is True else schema
    if params.logprobs is not None:
        body["n_probs"] = max(1, params.logprobs)  # 0 turns them off in llama-server: trimmed below
    return body


def token_logprobs(event: dict[str, Any], params: GenerationParams) -> list[TokenLogprob]:
    """An event's (or a whole answer's) log-probabilities, trimmed to the alternatives asked for."""
    if params.logprobs is None:
        return []
    out = []
    for entry in event.get("completion_probabilities") or []:
        top = [(t["token"], float(t["logprob"]), list(t.get("bytes", []))) for t in entry.get("top_logprobs", [])]
        out.append(TokenLogprob(entry["token"], float(entry["logprob"]), list(entry.get("bytes", [])),
                                top[: params.logprobs]))
    return out


def final_chunk(event: dict[str, Any], params: GenerationParams, whole: bool = False) -> Chunk:
    """The stream's last chunk (or, `whole`, a non-streamed answer): the engine's own counts and timings."""
    t = event.get("timings") or {}
    prompt_s, predicted_s = float(t.get("prompt_ms", 0.0)) / 1000, float(t.get("predicted_ms", 0.0)) / 1000
    timings = Timings(
        prompt_tokens=int(event.get("tokens_evaluated", 0)), completion_tokens=int(event.get("tokens_predicted", 0)),
        prompt_eval_s=prompt_s, eval_s=predicted_s, total_s=prompt_s + predicted_s,
    )
    return Chunk(event.get("content", ""), event.get("tokens") or [],
                 finish_reason=FINISH.get(event.get("stop_type"), "stop"), timings=timings,
                 logprobs=token_logprobs(event, params) if whole or event.get("tokens") else [])
