"""Bounded load and soak test of the real API server (`python -m server`) on 127.0.0.1.

N clients per model (default 16 x demo-q4_k_m and demo-q8_0, so 32 at once) send a mix for a fixed
time: SSE and NDJSON streams, non-stream generations, streams dropped after the first chunks, bad
bodies, load / unload, listings and /metrics scrapes. The script starts the server itself, in a
temporary LQMF_HOME with its models read from --models-dir, and stops it at the end.

Pass:
- every response has a status its request kind accepts, and every body is complete and well formed
  (streams end with their final event, errors carry a JSON error); a 503 is accepted only with
  Retry-After, which the server documents for a full queue, a busy manager or a full memory budget
  (the summary lists why each one was answered);
- the server's own /metrics counted no 5xx but those 503s, its log holds no traceback, and it is alive;
- most streams the client left early were cancelled on the server;
- after a settle period the server process has no more threads, file descriptors or children than
  before the load. RSS is sampled during the run and reported, not judged.
Prints a summary table; exits 1 on failure.

The thread count is compared in the same state both times: both models loaded, no request running,
and the threadpool (AnyIO's workers, which it retires after 10 s idle and only when a new task
arrives) shrunk to the worker that served the last request: after the load the script waits
--settle seconds idle, then sends one request.

    .venv/bin/python benchmarks/load_test.py [--duration 180] [--quick] [--clients 16] \
        [--model demo-q4_k_m --model demo-q8_0] [--models-dir quantized-models] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("load_test")

PROMPTS = ["What does shuffle do?", "Explain what a list comprehension is.", "How do I sort a dict by value?",
           "What is a context manager?", "Write a haiku about queues."]
GENERATING = {200}
BUSY = 503  # with Retry-After: QueueFull, ModelBusy, InsufficientMemory (docs/ARCHITECTURE.md)
# Request kind -> its share of each client's requests.
MIX = {
    "sse_chat": 22, "ndjson_chat": 14, "sse_completion": 5, "nonstream": 16, "disconnect": 10,
    "bad_body": 14, "load_unload": 5, "metrics": 6, "listing": 8,
}


@dataclass
class Outcome:
    """One request: its kind, the route it hit, the status, the seconds it took, and what was wrong."""

    kind: str
    route: str
    status: int  # 0: no HTTP status (a transport error)
    seconds: float
    problem: str = ""
    note: str = ""  # why an accepted 503 was answered


@dataclass
class Resources:
    """What the server process holds."""

    threads: int
    fds: int
    children: int
    rss_bytes: int

    @classmethod
    def of(cls, pid: int) -> "Resources":
        proc = psutil.Process(pid)
        return cls(proc.num_threads(), proc.num_fds(), len(proc.children(recursive=True)), proc.memory_info().rss)


@dataclass
class Report:
    """Everything the run measured; `passed` is the verdict."""

    duration_s: float
    clients: int
    models: list[str]
    mix: dict[str, int] = field(default_factory=lambda: dict(MIX))
    outcomes: list[Outcome] = field(default_factory=list)
    before: Optional[Resources] = None
    after: Optional[Resources] = None
    server_5xx: int = 0  # other than 503
    server_cancelled: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the load, bytes)
    log_errors: list[str] = field(default_factory=list)  # ERROR records of the server's log, with tracebacks
    server_alive: bool = True
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        by_kind: dict[str, Counter] = defaultdict(Counter)
        for o in self.outcomes:
            by_kind[o.kind][str(o.status)] += 1
        return {
            "passed": self.passed, "duration_s": self.duration_s, "clients_per_model": self.clients,
            "models": self.models, "requests": len(self.outcomes),
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
            "latency": {k: _percentiles([o.seconds for o in self.outcomes if o.kind == k and not o.problem])
                        for k in sorted(by_kind)},
            "problems": [asdict(o) for o in self.outcomes if o.problem][:200],
            "before": asdict(self.before) if self.before else None,
            "after": asdict(self.after) if self.after else None,
            "busy_503": dict(Counter(o.note for o in self.outcomes if o.status == BUSY and not o.problem)),
            "rss_samples": self.rss_samples,
            "server_5xx": self.server_5xx, "server_cancelled_generations": self.server_cancelled,
            "server_alive": self.server_alive, "log_errors": self.log_errors[:50], "failures": self.failures,
        }


def _percentiles(values: list[float]) -> dict[str, Optional[float]]:
    if not values:
        return {"p50": None, "p95": None}
    ordered = sorted(values)
    return {"p50": round(ordered[len(ordered) // 2], 4),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 4)}


# -- the server -------------------------------------------------------------------------------------

class ServerProcess:
    """`python -m server --port 0` in its own temporary LQMF_HOME (or in `home`, kept); the port is read from the
    process."""

    def __init__(self, models_dir: Path, env: Optional[dict[str, str]] = None, timeout_s: float = 90.0,
                 home: Optional[Path] = None) -> None:
        self.models_dir = Path(models_dir).resolve()
        self.extra_env = env or {}
        self.timeout_s = timeout_s
        self.given_home = home
        self.home: Optional[tempfile.TemporaryDirectory] = None
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def home_dir(self) -> Path:
        assert self.given_home is not None or self.home is not None
        return self.given_home if self.given_home is not None else Path(self.home.name)

    @property
    def log_path(self) -> Path:
        return self.home_dir / "server.out"

    def __enter__(self) -> "ServerProcess":
        if self.given_home is None:
            self.home = tempfile.TemporaryDirectory(prefix="lqmf-load-")
        # Nothing LQMF_ from the caller's environment (an API key, preloads...): only what is set here.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LQMF_")}
        env.update({**self.extra_env, "LQMF_HOME": str(self.home_dir), "LQMF_MODELS_DIR": str(self.models_dir)})
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", "0"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        port = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.output()[-2000:]}")
            if not port:
                port = next((c.laddr.port for c in psutil.Process(self.pid).net_connections("tcp")
                             if c.status == psutil.CONN_LISTEN), 0)
            if port:
                self.url = f"http://127.0.0.1:{port}"
                try:
                    if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /health within {self.timeout_s:.0f}s: {self.output()[-2000:]}")

    def output(self) -> str:
        """What the server wrote to stdout / stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        """The server's own log (logs/lqmf.log in its LQMF_HOME)."""
        try:
            return (self.home_dir / "logs" / "lqmf.log").read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.home is not None:
            self.home.cleanup()


# -- request kinds ------------------------------------------------------------------------------------

def _error_text(response: httpx.Response) -> str:
    """The error message of an error body, its numbers masked so that like reasons count together."""
    try:
        error = response.json().get("error")
    except ValueError:
        return response.text[:120]
    text = error.get("message", "") if isinstance(error, dict) else str(error)
    return re.sub(r"\d+", "N", text)[:160]


class Kinds:
    """Each request kind: send it, check the status and the body, return Outcomes."""

    def __init__(self, client: httpx.AsyncClient, rng: random.Random, models: list[str]) -> None:
        self.client = client
        self.rng = rng
        self.models = models
        self.busy_reason = ""

    def _messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.rng.choice(PROMPTS)}]

    def _tokens(self) -> int:
        return self.rng.randint(8, 48)

    def _status_problem(self, response: httpx.Response, allowed: set[int]) -> str:
        """'' when the status is one this kind accepts (503 only with Retry-After)."""
        if response.status_code in allowed:
            return ""
        if response.status_code == BUSY and "retry-after" in response.headers:
            self.busy_reason = _error_text(response)
            return ""
        return f"unexpected status {response.status_code}: {response.text[:300]!r}"

    async def _timed(self, kind: str, route: str, call: Callable[[], Awaitable[tuple[int, str]]]) -> Outcome:
        start = time.perf_counter()
        self.busy_reason = ""
        try:
            status, problem = await call()
        except httpx.HTTPError as exc:
            status, problem = 0, f"{type(exc).__name__}: {exc}"
        except ValueError as exc:  # a body that is not the JSON it should be
            status, problem = -1, f"malformed body: {exc}"
        except Exception as exc:  # noqa: BLE001 - a fault of this script: counted, so that the run fails visibly
            log.exception("the %s request failed inside the load test", kind)
            status, problem = -1, f"load-test error: {type(exc).__name__}: {exc}"
        return Outcome(kind, route, status, time.perf_counter() - start, problem, self.busy_reason)

    async def sse_chat(self, model: str) -> list[Outcome]:
        body = {"model": model, "messages": self._messages(), "stream": True, "max_tokens": self._tokens(),
                "temperature": self.rng.choice([0, 0.7]),
                "stream_options": {"include_usage": self.rng.random() < 0.5}}
        return [await self._timed("sse_chat", "/v1/chat/completions", lambda: self._sse("/v1/chat/completions", body))]

    async def sse_completion(self, model: str) -> list[Outcome]:
        body = {"model": model, "prompt": self.rng.choice(PROMPTS), "stream": True, "max_tokens": self._tokens()}
        return [await self._timed("sse_completion", "/v1/completions", lambda: self._sse("/v1/completions", body))]

    async def _sse(self, path: str, body: dict) -> tuple[int, str]:
        async with self.client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return response.status_code, self._status_problem(response, GENERATING)
            done = finished = False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    continue
                event = json.loads(data)
                if "error" in event:
                    return 200, f"error event in the stream: {data[:300]}"
                if any(c.get("finish_reason") for c in event.get("choices", [])):
                    finished = True
            if not (done and finished):
                return 200, f"stream ended without {'a finish_reason' if done else '[DONE]'}"
            return 200, ""

    async def ndjson_chat(self, model: str) -> list[Outcome]:
        if self.rng.random() < 0.5:
            path, body = "/api/chat", {"model": model, "messages": self._messages()}
        else:
            path, body = "/api/generate", {"model": model, "prompt": self.rng.choice(PROMPTS)}
        body["options"] = {"num_predict": self._tokens(), "temperature": self.rng.choice([0, 0.8])}

        async def call() -> tuple[int, str]:
            async with self.client.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    return response.status_code, self._status_problem(response, GENERATING)
                last: dict = {}
                async for line in response.aiter_lines():
                    if line.strip():
                        last = json.loads(line)
                        if "error" in last:
                            return 200, f"error line in the stream: {line[:300]}"
                if not last.get("done") or last.get("done_reason") not in ("stop", "length"):
                    return 200, f"stream ended without a done line: {json.dumps(last)[:300]}"
                return 200, ""

        return [await self._timed("ndjson_chat", path, call)]

    async def nonstream(self, model: str) -> list[Outcome]:
        which = self.rng.randrange(3)
        if which == 0:
            path, body, key = "/v1/chat/completions", {"model": model, "messages": self._messages(),
                                                       "max_tokens": self._tokens()}, "choices"
        elif which == 1:
            path, body, key = "/api/generate", {"model": model, "prompt": self.rng.choice(PROMPTS), "stream": False,
                                                "options": {"num_predict": self._tokens()}}, "response"
        else:
            path, body, key = f"/models/{model}/chat", {"message": self.rng.choice(PROMPTS),
                                                        "max_tokens": self._tokens()}, "response"

        async def call() -> tuple[int, str]:
            response = await self.client.post(path, json=body)
            problem = self._status_problem(response, GENERATING)
            if not problem and response.status_code == 200 and key not in response.json():
                problem = f"no {key!r} in the answer: {response.text[:300]}"
            return response.status_code, problem

        route = "/models/{name}/chat" if path.startswith("/models/") else path
        return [await self._timed("nonstream", route, call)]

    async def disconnect(self, model: str) -> list[Outcome]:
        """Read the first events of a long stream, then drop the connection."""
        ndjson = self.rng.random() < 0.3
        path = "/api/chat" if ndjson else "/v1/chat/completions"
        body: dict[str, Any] = {"model": model, "messages": self._messages()}
        if ndjson:  # Ollama has no ignore_eos: this one may end by itself before the client leaves
            body["options"] = {"num_predict": 400}
        else:
            body.update(stream=True, max_tokens=400, ignore_eos=True)
        keep = self.rng.randint(1, 4)

        async def call() -> tuple[int, str]:
            async with self.client.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    return response.status_code, self._status_problem(response, GENERATING)
                seen = 0
                async for _ in response.aiter_raw():
                    seen += 1
                    if seen >= keep:
                        break  # leaving the block closes the connection mid-stream
                return 200, "" if seen else "the stream ended before its first event"

        return [await self._timed("disconnect", path if ndjson else f"{path} (ignore_eos)", call)]

    def bad_bodies(self, model: str) -> list[tuple[str, str, dict[str, Any], set[int]]]:
        """(method, path, httpx kwargs, statuses accepted): inputs a client may send by mistake or malice."""
        chat = "/v1/chat/completions"
        msgs = self._messages()
        return [
            ("POST", chat, {"json": {}}, {422}),
            ("POST", chat, {"json": {"model": model, "messages": "hello"}}, {422}),
            ("POST", chat, {"json": {"model": "no-such-model", "messages": msgs}}, {404}),
            ("POST", chat, {"json": {"model": "../../etc/passwd", "messages": msgs}}, {400, 404, 422}),
            ("POST", chat, {"json": {"model": model, "messages": msgs, "max_tokens": -5}}, {400, 422}),
            ("POST", chat, {"json": {"model": model, "messages": msgs, "temperature": "hot"}}, {422}),
            ("POST", chat, {"json": {"model": model, "messages": msgs, "seed": 2**70}}, {400, 422}),
            ("POST", chat, {"json": {"model": model, "messages": [{"role": "wizard", "content": "x"}]}}, {400, 422}),
            ("POST", chat, {"content": b'{"model": "' + model.encode() + b'", "messages": [',
                            "headers": {"content-type": "application/json"}}, {400, 422}),
            ("POST", chat, {"content": b"\xff\xfe not json at all", "headers": {"content-type": "application/json"}},
             {400, 422}),
            ("POST", "/api/chat", {"json": {"model": model, "messages": [{"role": "user"}]}}, {400, 422}),
            ("POST", "/api/generate", {"json": {"model": model, "prompt": "hi", "options": {"num_predict": "many"}}},
             {400, 422}),
            ("POST", "/api/generate", {"json": {"model": model, "prompt": "hi", "keep_alive": "forever"}}, {400, 422}),
            ("POST", "/api/generate",
             {"content": b"model=" + model.encode(), "headers": {"content-type": "text/plain"}}, {400, 415, 422}),
            ("POST", f"/models/{model}/load", {"json": {"keep_alive": {}}}, {400, 422}),
            ("POST", f"/models/{model}/chat", {"json": {"message": ""}}, {400, 422}),
            ("POST", "/models/no-such-model/load", {}, {404}),
            ("GET", "/experiments/627687485095621820416", {}, {400, 404, 422}),
            ("GET", "/experiments/not-a-number", {}, {422}),
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": ""}}, {400, 422}),
            ("POST", "/tokenize", {"json": {"model": model}}, {400, 422}),
            ("POST", "/detokenize", {"json": {"model": model, "tokens": [-1]}}, {400, 422}),
            ("POST", chat, {"content": b"x" * 1_200_000, "headers": {"content-type": "application/json"}}, {413}),
            ("GET", "/no/such/route", {}, {404}),
            ("DELETE", "/models/available", {}, {404, 405}),
        ]

    async def bad_body(self, model: str) -> list[Outcome]:
        method, path, kwargs, allowed = self.rng.choice(self.bad_bodies(model))

        async def call() -> tuple[int, str]:
            response = await self.client.request(method, path, **kwargs)
            if response.status_code in allowed:
                try:
                    ok = "error" in response.json()
                except ValueError:
                    ok = False
                return response.status_code, "" if ok else f"an error without a JSON error body: {response.text[:200]}"
            return response.status_code, (f"expected {sorted(allowed)}, got {response.status_code}: "
                                          f"{response.text[:300]!r}")

        return [await self._timed("bad_body", f"{method} {path[:60]}", call)]

    async def load_unload(self, model: str) -> list[Outcome]:
        which = self.rng.randrange(4)
        if which == 0:
            method, path, kwargs, allowed = "POST", f"/models/{model}/load", {}, {200}
        elif which == 1:
            method, path, kwargs, allowed = "POST", f"/models/{model}/unload", {}, {200, 404}  # 404: not loaded
        elif which == 2:
            method, path, kwargs, allowed = "POST", "/api/generate", {"json": {"model": model}}, {200}  # Ollama: load
        else:
            method, path, kwargs, allowed = "POST", "/api/generate", {"json": {"model": model, "keep_alive": 0}}, {200}

        async def call() -> tuple[int, str]:
            response = await self.client.request(method, path, **kwargs)
            return response.status_code, self._status_problem(response, allowed)

        route = path.replace(model, "{name}")
        label = route + (" (unload)" if which == 3 else " (load)" if which == 2 else "")
        return [await self._timed("load_unload", label, call)]

    async def metrics(self, model: str) -> list[Outcome]:
        async def call() -> tuple[int, str]:
            response = await self.client.get("/metrics")
            problem = self._status_problem(response, {200})
            if not problem and "lqmf_requests_total" not in response.text:
                problem = "no lqmf_requests_total in /metrics"
            return response.status_code, problem

        return [await self._timed("metrics", "/metrics", call)]

    async def listing(self, model: str) -> list[Outcome]:
        path = self.rng.choice(["/v1/models", "/api/tags", "/api/ps", "/models", "/models/available", "/",
                                f"/v1/models/{model}"])

        async def call() -> tuple[int, str]:
            response = await self.client.get(path)
            problem = self._status_problem(response, {200})
            if not problem:
                response.json()  # a 200 must carry JSON
            return response.status_code, problem

        return [await self._timed("listing", path.replace(model, "{name}"), call)]


# -- the run ---------------------------------------------------------------------------------------

def _client(url: str, clients: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(180.0, connect=10.0),
                             limits=httpx.Limits(max_connections=clients * 2 + 8,
                                                 max_keepalive_connections=clients * 2))


async def _one_client(kinds: Kinds, model: str, deadline: float, outcomes: list[Outcome],
                      mix: dict[str, int]) -> None:
    names, weights = list(mix), list(mix.values())
    while time.monotonic() < deadline:
        kind = kinds.rng.choices(names, weights)[0]
        outcomes.extend(await getattr(kinds, kind)(model))


async def _warm_up(url: str, models: list[str]) -> None:
    """Every kind once per model, one at a time: lazy state exists before the resources are counted."""
    async with _client(url, 1) as client:
        kinds = Kinds(client, random.Random(0), models)
        for model in models:
            for kind in ("sse_chat", "ndjson_chat", "nonstream", "metrics", "listing"):
                for outcome in await getattr(kinds, kind)(model):
                    if outcome.problem:
                        raise RuntimeError(f"warm-up {outcome.kind} {outcome.route} failed: {outcome.problem}")


async def _settle(url: str, models: list[str], settle_s: float) -> list[str]:
    """Bring the server back to the counted state: models loaded, nothing running, threadpool shrunk."""
    problems = []
    async with _client(url, 1) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # queued work (an automatic benchmark too) finishes first
            loaded = (await client.get("/models")).json()["models"]
            if all(m["queue_depth"] == 0 for m in loaded):
                break
            await asyncio.sleep(0.5)
        else:
            problems.append("requests were still queued 120 s after the load ended")
        for model in models:
            response = await client.post(f"/models/{model}/load")
            if response.status_code != 200:
                problems.append(f"could not load {model} after the run: {response.status_code} {response.text[:200]}")
    await asyncio.sleep(settle_s)
    async with _client(url, 1) as client:  # a threadpool task makes AnyIO retire its idle workers
        for _ in range(2):
            await client.get("/models/available")
    await asyncio.sleep(0.5)
    return problems


async def _server_counts(url: str) -> tuple[int, int]:
    """(responses with a 5xx status, cancelled generations) as the server's own /metrics counted them."""
    async with _client(url, 1) as client:
        text = (await client.get("/metrics")).text
    five, cancelled = 0, 0
    for line in text.splitlines():
        if line.startswith("lqmf_requests_total{") and 'status="5' in line and 'status="503"' not in line:
            five += int(float(line.rsplit(" ", 1)[1]))
        if line.startswith("lqmf_generations_total{") and 'finish_reason="cancelled"' in line:
            cancelled += int(float(line.rsplit(" ", 1)[1]))
    return five, cancelled


async def run_load(url: str, pid: int, models: list[str], clients: int, duration_s: float, settle_s: float,
                   seed: int, mix: Optional[dict[str, int]] = None) -> Report:
    """Warm up, count the server's resources, run the mix, settle, count again, judge."""
    mix = mix or MIX
    report = Report(duration_s, clients, models, mix=mix)
    await _warm_up(url, models)
    report.before = Resources.of(pid)
    log.info("before: %s", report.before)
    began = time.monotonic()
    deadline = began + duration_s

    async def sample_rss() -> None:
        while time.monotonic() < deadline:
            report.rss_samples.append((round(time.monotonic() - began, 1), psutil.Process(pid).memory_info().rss))
            await asyncio.sleep(max(1.0, duration_s / 12))

    async with _client(url, clients * len(models)) as client:
        tasks = [sample_rss()]
        for i in range(clients * len(models)):
            kinds = Kinds(client, random.Random(seed * 1000 + i), models)
            tasks.append(_one_client(kinds, models[i % len(models)], deadline, report.outcomes, mix))
        await asyncio.gather(*tasks)
    log.info("load done: %d requests; settling", len(report.outcomes))
    report.failures.extend(await _settle(url, models, settle_s))
    report.after = Resources.of(pid)
    report.server_5xx, report.server_cancelled = await _server_counts(url)
    _judge(report)
    return report


def _judge(report: Report) -> None:
    problems = Counter(f"{o.kind} {o.route}: {o.problem[:160]}" for o in report.outcomes if o.problem)
    for text, count in problems.most_common():
        report.failures.append(f"{count} x {text}")
    if report.server_5xx:
        report.failures.append(f"the server's /metrics counted {report.server_5xx} responses with a 5xx status "
                               "other than 503")
    dropped = sum(1 for o in report.outcomes if o.kind == "disconnect" and o.status == 200 and not o.problem
                  and o.route.endswith("(ignore_eos)"))
    if dropped and report.server_cancelled < dropped // 2:
        report.failures.append(f"only {report.server_cancelled} generations were cancelled for {dropped} streams "
                               "of 400 tokens the client left after a few events: disconnects are not noticed")
    kinds = {o.kind for o in report.outcomes}
    missing = set(report.mix) - kinds
    if missing:
        report.failures.append(f"request kinds never sent (run too short?): {sorted(missing)}")
    b, a = report.before, report.after
    if b and a:
        for what in ("threads", "fds", "children"):
            if getattr(a, what) > getattr(b, what):
                report.failures.append(f"leaked {what}: {getattr(b, what)} before, {getattr(a, what)} after settling")


def _error_blocks(log_text: str) -> list[str]:
    """Each ERROR record of a log with its traceback (the lines up to the next record), shortened."""
    record = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    blocks: list[str] = []
    current: Optional[list[str]] = None
    for line in log_text.splitlines():
        if record.match(line):
            current = [line] if " ERROR " in line or " CRITICAL " in line else None
            if current is not None:
                blocks.append("")
        elif current is not None:
            current.append(line)
        if current is not None:
            text = "\n".join(current[:3] + (["  ..."] if len(current) > 8 else []) + current[-5:] if len(current) > 8
                             else current)
            blocks[-1] = text
    return blocks


def render(report: Report) -> str:
    """The summary table."""
    data = report.to_dict()
    lines = [f"LQMF load test: {data['clients_per_model']} clients x {len(report.models)} models "
             f"({', '.join(report.models)}), {report.duration_s:.0f} s, {data['requests']} requests", ""]
    statuses = sorted({s for counts in data["by_kind"].values() for s in counts}, key=int)
    head = f"{'kind':<16}" + "".join(f"{s:>7}" for s in statuses) + f"{'errors':>8}{'p50 s':>9}{'p95 s':>9}"
    lines += [head, "-" * len(head)]
    errors = Counter(o.kind for o in report.outcomes if o.problem)
    for kind, counts in data["by_kind"].items():
        lat = data["latency"][kind]
        fmt = lambda v: f"{v:>9.3f}" if v is not None else f"{'-':>9}"  # noqa: E731
        lines.append(f"{kind:<16}" + "".join(f"{counts.get(s, 0):>7}" for s in statuses)
                     + f"{errors[kind]:>8}" + fmt(lat["p50"]) + fmt(lat["p95"]))
    lines.append("")
    if report.before and report.after:
        b, a = report.before, report.after
        lines.append(f"server threads {b.threads} -> {a.threads}, fds {b.fds} -> {a.fds}, "
                     f"children {b.children} -> {a.children}, RSS {b.rss_bytes / 2**20:.0f} -> "
                     f"{a.rss_bytes / 2**20:.0f} MiB ({(a.rss_bytes - b.rss_bytes) / 2**20:+.0f} MiB)")
        if report.rss_samples:
            trend = ", ".join(f"{t:.0f}s {rss / 2**20:.0f}" for t, rss in report.rss_samples)
            lines.append(f"RSS during the load (MiB): {trend}")
    for reason, count in data["busy_503"].items():
        lines.append(f"accepted 503 + Retry-After x{count}: {reason}")
    lines.append(f"server-side 5xx other than 503 (from /metrics): {report.server_5xx}; generations cancelled by "
                 f"disconnects: {report.server_cancelled}")
    if report.log_errors:
        lines.append(f"ERROR records in the server's log: {len(report.log_errors)}; the last:")
        lines += ["    " + line for line in report.log_errors[-1].splitlines()]
    lines.append("PASS" if report.passed else "FAIL")
    lines += [f"  - {f}" for f in report.failures[:40]]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--quick", action="store_true", help="a 15 s smoke run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients per model (default 16)")
    parser.add_argument("--model", action="append", help="a model to load (default demo-q4_k_m and demo-q8_0)")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "quantized-models",
                        help="the models folder the server reads (read only)")
    parser.add_argument("--settle", type=float, default=10.5,
                        help="idle seconds before the resources are counted again (AnyIO retires workers after 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--kinds", help=f"only these request kinds, comma-separated (default all: {','.join(MIX)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the summary
    duration = 15.0 if args.quick else args.duration
    models = args.model or ["demo-q4_k_m", "demo-q8_0"]
    missing = [m for m in models if not (args.models_dir / m).exists() and not (args.models_dir / f"{m}.gguf").exists()]
    if missing:
        sys.stderr.write(f"error: {missing} not in {args.models_dir} (build the demo models: make setup)\n")
        return 2
    with ServerProcess(args.models_dir) as server:
        log.info("server pid %d on %s", server.pid, server.url)
        mix = {k: MIX[k] for k in args.kinds.split(",")} if args.kinds else MIX
        report = asyncio.run(run_load(server.url, server.pid, models, args.clients, duration, args.settle,
                                      args.seed, mix))
        report.server_alive = server.alive()
        tracebacks = server.output().count("Traceback") + server.log_text().count("Traceback")
        if tracebacks:
            report.failures.append(f"the server logged {tracebacks} tracebacks (stderr and logs/lqmf.log)")
        report.log_errors = _error_blocks(server.log_text())
    if not report.server_alive:
        report.failures.append("the server process died")
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
