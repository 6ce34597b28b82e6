"""A model behind an OpenAI-compatible API (vLLM, llama-server, Ollama, LM Studio, another LQMF, a cloud).

The prompt goes over as it is: a conversation to /chat/completions, a text to /completions, both
streamed, so that time to first token is measured here, over HTTP, and a request can be cancelled by
closing its connection (what vLLM and llama-server watch to stop generating). Token ids, logits and
the tokenizer stay on the remote: what needs them says so.

Each request runs its HTTP exchange on a reader thread that hands events to the model's worker, which
waits on them with a timeout: a cancel, or a remote that goes quiet, then shuts the socket at once
instead of waiting for the next byte.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import urlsplit

from lqmf.base.errors import FeatureUnsupported, InvalidRequest, RemoteError
from lqmf.base.generation import Chunk, GenerationParams, GenerationResult, Timings, TokenLogprob, collect
from server.runtime.backends.base import Backend, IncrementalDecoder

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a waiting worker looks at its cancel flag
_END = object()


@dataclass
class _Exchange:
    """One HTTP request on its own connection; `events` gets (status, headers) first, then SSE payloads."""

    conn: Any
    events: "queue.SimpleQueue[Any]"
    thread: Optional[threading.Thread] = None
    # The socket itself: http.client drops conn.sock when an answer says "Connection: close" (the
    # response keeps reading from it), so closing the connection alone would not reach it.
    sock: Optional[socket.socket] = None
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connected(self) -> bool:
        """Remember the socket (reader thread, after sending); False when the worker closed it already."""
        with self.lock:
            self.sock = self.conn.sock
            return not self.closed

    def close(self) -> None:
        with self.lock:
            self.closed = True
            sock = self.sock or getattr(self.conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread blocked in recv; the remote sees EOF
            except OSError:
                pass
        self.conn.close()


def _connection(url: str, timeout: float):
    parts = urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


def _read_stream(exchange: _Exchange, path: str, payload: bytes, headers: dict[str, str]) -> None:
    """The reader thread: send, then hand over the status and every `data:` payload (or the error)."""
    out = exchange.events
    try:
        exchange.conn.request("POST", path, body=payload, headers=headers)
        if not exchange.connected():
            exchange.close()
            return
        exchange.conn.sock.settimeout(None)  # the worker times the remote out, with the cancel flag
        response = exchange.conn.getresponse()
        out.put((response.status, response.getheader("Retry-After"), response.getheader("Content-Type") or ""))
        if response.status != 200 or "text/event-stream" not in (response.getheader("Content-Type") or ""):
            out.put(response.read())
            out.put(_END)
            return
        for line in response:
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    out.put(_END)
                    return
                out.put(data)
        out.put(ConnectionResetError("the stream ended before its [DONE] event"))
    except BaseException as exc:  # handed to the worker, which knows whether it was a cancel
        out.put(exc)


class RemoteBackend(Backend):
    """A registered endpoint (one server or a fleet); generation only."""

    format = "remote"
    features = frozenset({"json_schema", "logprobs"})

    def __init__(self, record, *, fleet, parallel: int, timeout_s: float) -> None:
        # No n_ctx or threads: the remote server chose its own context and threads when it started.
        super().__init__(record)
        self.fleet = fleet
        self.parallel = parallel
        self.timeout_s = timeout_s
        self.remote_model: Optional[str] = None

    # -- lifecycle: nothing is held here but the choice of model ----------------------------------
    def load(self) -> None:
        self.fleet.refresh(0, min(self.timeout_s, 10.0))
        if self.fleet.health() == "down":
            raise self.fleet.down_error()
        self.remote_model = self.fleet.remote_model()
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def footprint(self) -> int:
        return 0

    def describe(self) -> str:
        return f"remote endpoint {self.fleet.name}"

    def engine_info(self) -> dict[str, Any]:
        return {"engine": "remote", "slots": self.parallel, "remote_model": self.remote_model,
                "endpoint": self.fleet.status()}

    # -- what stays on the remote --------------------------------------------------------------------
    def _remote_only(self, what: str) -> FeatureUnsupported:
        return FeatureUnsupported(f"{self.record.name} is a remote model: its {what} stays on {self.fleet.name}'s "
                                  "server (the OpenAI API does not expose it)", "use a local model for this")

    @property
    def context_length(self) -> int:
        return self.record.context_length or 0

    @property
    def vocab_size(self) -> int:
        raise self._remote_only("vocabulary")

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        raise self._remote_only("tokenizer")

    def detokenize(self, ids: Sequence[int]) -> str:
        raise self._remote_only("tokenizer")

    def apply_chat_template(self, messages) -> str:
        raise self._remote_only("chat template")

    def _token_stream(self, prompt_ids, params):
        raise self._remote_only("token-level generation")

    def _decoder(self, prompt_ids) -> IncrementalDecoder:
        raise self._remote_only("tokenizer")

    def logits(self, ids):
        raise self._remote_only("logits")

    def require(self, params: GenerationParams) -> None:
        if params.num_ctx is not None:
            raise FeatureUnsupported(f"num_ctx cannot be set for {self.record.name}: a remote model's context is "
                                     "whatever its server was started with", "leave num_ctx out")
        super().require(params)

    # -- generation ------------------------------------------------------------------------------------
    def stream(self, prompt_ids, params, cancel=None) -> Iterator[Chunk]:
        if not prompt_ids:
            raise InvalidRequest("the prompt is empty", "send some text")
        raise FeatureUnsupported(f"{self.record.name} is a remote model and takes text, not token ids",
                                 "send the prompt as text or messages")

    def generate_prompt(self, prompt, params: GenerationParams,
                        cancel: Optional[threading.Event] = None) -> GenerationResult:
        return collect(self.stream_prompt(prompt, params, cancel))

    def stream_prompt(self, prompt, params: GenerationParams,
                      cancel: Optional[threading.Event] = None) -> Iterator[Chunk]:
        """Stream a conversation (chat) or a text (completion) from a member of the fleet.

        A member that cannot be reached, or answers 5xx, before anything was generated is marked down
        and the request goes to the next one; after the first token a failure ends the request.
        """
        if isinstance(prompt, str):
            path, body = "/completions", {"prompt": prompt}
        elif prompt and isinstance(prompt[0], dict):
            path, body = "/chat/completions", {"messages": list(prompt)}
        else:
            yield from self.stream(list(prompt), params, cancel)
            return
        chat = path == "/chat/completions"
        tried: list[str] = []
        while True:
            member = self.fleet.acquire(tried)
            tried.append(member.url)
            start = time.perf_counter()
            produced = False
            try:
                for chunk in self._exchange(member.url, path, {**body, **self._sampling(params, chat)}, chat,
                                            params, cancel, start):
                    produced = True
                    yield chunk
            except RemoteError as exc:
                self.fleet.release(member, exc.message if exc.member_fault else None)
                if exc.member_fault and not produced and self.fleet.has_other(tried):
                    log.warning("%s: %s; trying the next member", self.record.name, exc.message)
                    continue
                raise
            except BaseException:
                self.fleet.release(member)
                raise
            self.fleet.release(member)
            return

    def _sampling(self, params: GenerationParams, chat: bool) -> dict[str, Any]:
        """The request's sampling fields: OpenAI's, plus the ones the server's dialect takes."""
        out: dict[str, Any] = {"model": self.remote_model, "stream": True, "stream_options": {"include_usage": True},
                               "max_tokens": params.max_tokens,
                               "temperature": 0.0 if params.greedy else params.temperature, "top_p": params.top_p}
        if params.seed is not None:
            out["seed"] = params.seed_bits(32)
        if params.stop:
            out["stop"] = list(params.stop)
        dialect = self.fleet.dialect()
        if dialect in ("llama.cpp", "vllm"):
            out.update(top_k=params.top_k, min_p=params.min_p)
            out["repeat_penalty" if dialect == "llama.cpp" else "repetition_penalty"] = params.repeat_penalty
            if params.ignore_eos:
                out["ignore_eos"] = True
        if params.json_schema is not None:
            schema = json.loads(params.json_schema)
            out["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": "reply", "strict": True,
                                                      "schema": {} if schema is True else schema}}
        if params.logprobs is not None:
            if chat:
                out["logprobs"] = True
                if params.logprobs:
                    out["top_logprobs"] = params.logprobs
            else:
                out["logprobs"] = params.logprobs
        return out

    def _exchange(self, url: str, path: str, body: dict[str, Any], chat: bool, params: GenerationParams,
                  cancel: Optional[threading.Event], start: float) -> Iterator[Chunk]:
        key = self.fleet.endpoint.api_key()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        parts = urlsplit(url)
        exchange = _Exchange(_connection(url, min(self.timeout_s, 10.0)), queue.SimpleQueue())
        exchange.thread = threading.Thread(target=_read_stream, name=f"lqmf-remote-{self.record.name}", daemon=True,
                                           args=(exchange, parts.path + path, json.dumps(body).encode(), headers))
        exchange.thread.start()
        where = f"{self.fleet.name} ({url})"
        first_at: Optional[float] = None
        pieces = 0
        usage: dict[str, Any] = {}
        finish = "stop"
        try:
            status, retry_after, content_type = self._next(exchange, cancel, where, first=True)
            if status is None:  # cancelled before the answer began
                yield self._final("", 0, {}, "cancelled", start, None)
                return
            if status != 200:
                raise self._refusal(where, status, retry_after, self._next(exchange, cancel, where))
            if "text/event-stream" not in content_type:
                raise RemoteError(f"{where} answered {content_type or 'no content type'} instead of a stream",
                                  "point the endpoint at an OpenAI-compatible API (its base URL ends in /v1)")
            while True:
                data = self._next(exchange, cancel, where)
                if data is _END:
                    break
                if data is None:  # cancelled
                    finish = "cancelled"
                    break
                event = self._event(data, where)
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    try:
                        logprobs = remote_logprobs(choice.get("logprobs"), chat, params)
                    except (KeyError, TypeError, ValueError) as exc:  # a field missing, or lists of unequal length
                        raise RemoteError(f"{where} sent log-probabilities that are not in OpenAI's shape ({exc!r})",
                                          "ask without logprobs, or point the endpoint at an OpenAI-compatible "
                                          "API") from exc
                    if text or logprobs:
                        if first_at is None:
                            first_at = time.perf_counter()
                        pieces += 1
                        yield Chunk(text or "", [], logprobs=logprobs)
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
        finally:
            exchange.close()
        yield self._final("", pieces, usage, finish, start, first_at)

    def _next(self, exchange: _Exchange, cancel, where: str, first: bool = False):
        """The reader's next item; None when cancelled (the connection is closed: the remote stops)."""
        waited = 0.0
        while True:
            if cancel is not None and cancel.is_set():  # looked at before every item: a fast stream too
                exchange.close()
                return (None, None, None) if first else None
            try:
                item = exchange.events.get(timeout=POLL_S)
            except queue.Empty:
                waited += POLL_S
                if waited >= self.timeout_s:
                    exchange.close()
                    raise RemoteError(f"{where} sent nothing for {self.timeout_s:g} s",
                                      "the remote is overloaded or stuck; "
                                      "raise LQMF_REMOTE_TIMEOUT_S if it is just slow",
                                      status=504, member_fault=first) from None
                continue
            if isinstance(item, BaseException):
                raise self._transport_error(where, item, first)
            return item

    def _transport_error(self, where: str, exc: BaseException, first: bool) -> RemoteError:
        # Nothing came back yet (first): another member may serve the request.
        if isinstance(exc, ssl.SSLError):
            return RemoteError(f"TLS with {where} failed: {exc}", "check the URL's scheme and the certificate",
                               status=502, member_fault=first)
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror, TimeoutError, socket.timeout)):
            return RemoteError(f"cannot reach {where}: {exc}", "start the server behind it, or fix the URL",
                               status=503, retry_after="5", member_fault=first)
        return RemoteError(f"{where} broke the connection: {type(exc).__name__}: {exc}",
                           "the remote server may have crashed or restarted; send the request again", status=502,
                           member_fault=first)

    def _refusal(self, where: str, status: int, retry_after: Optional[str], raw: Any) -> RemoteError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            error = json.loads(text).get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            message = None
        message = str(message or text.strip() or "(empty body)")[:300]
        said = f"{where} answered HTTP {status}: {message}"
        key_env = self.fleet.endpoint.key_env
        if status in (401, 403):
            hint = (f"the key in ${key_env} was refused: set it to a key that server accepts" if key_env else
                    f"that server needs a key: add endpoint {self.fleet.name} at {self.fleet.endpoint.urls[0]} "
                    "key from ENV_VAR")
            return RemoteError(said, hint, status=502)
        if status == 404:
            return RemoteError(said, f"check the model id ({self.remote_model}) against GET {where.split('(')[-1][:-1]}"
                               "/models, and that the URL ends in /v1", status=502)
        if status == 429:
            return RemoteError(said, f"{self.fleet.name} is rate-limiting: retry after "
                               f"{retry_after or 'a while'} s", status=429, retry_after=retry_after or "1")
        if status in (400, 413, 422):
            return RemoteError(said, "the remote refused the request's values: change them", status=400)
        # A 5xx before any output: another member may serve it.
        return RemoteError(said, "see the remote server's logs", status=503 if status == 503 else 502,
                           retry_after=retry_after, member_fault=True)

    @staticmethod
    def _event(data: bytes, where: str) -> dict[str, Any]:
        try:
            event = json.loads(data)
        except ValueError:
            raise RemoteError(f"{where} sent a stream event that is not JSON: {data[:200]!r}",
                              "point the endpoint at an OpenAI-compatible API") from None
        if not isinstance(event, dict):
            raise RemoteError(f"{where} sent a stream event that is not an object", "point the endpoint at an "
                              "OpenAI-compatible API")
        if event.get("error"):
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise RemoteError(f"{where} failed the request mid-stream: {str(message)[:300]}",
                              "see the remote server's logs", status=502)
        return event

    def _final(self, text: str, pieces: int, usage: dict[str, Any], finish: str, start: float,
               first_at: Optional[float]) -> Chunk:
        end = time.perf_counter()
        first = first_at or end
        # Token counts are the remote's own (usage); without usage, each streamed piece counts as one token.
        timings = Timings(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or pieces),
                          prompt_eval_s=first - start, eval_s=end - first, total_s=end - start)
        return Chunk(text, [], finish_reason=finish, timings=timings)


def remote_logprobs(entry: Any, chat: bool, params: GenerationParams) -> list[TokenLogprob]:
    """OpenAI-shaped log-probabilities of one streamed choice (chat: content list; completions: legacy)."""
    if params.logprobs is None or not isinstance(entry, dict):
        return []
    out = []
    if chat:
        for e in entry.get("content") or []:
            top = [(t["token"], float(t["logprob"]), list(t.get("bytes") or [])) for t in e.get("top_logprobs") or []]
            out.append(TokenLogprob(e["token"], float(e["logprob"]), list(e.get("bytes") or []),
                                    top[: params.logprobs]))
        return out
    tops = entry.get("top_logprobs") or []
    tokens, logprobs = entry.get("tokens") or [], entry.get("token_logprobs") or []
    for i, (token, logprob) in enumerate(zip(tokens, logprobs, strict=True)):
        alternatives = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = [(t, float(lp), list(t.encode())) for t, lp in alternatives.items()]
        out.append(TokenLogprob(token, float(logprob or 0.0), list(token.encode()), top[: params.logprobs]))
    return out

