"""HTTP benchmark: LQMF's /v1/chat/completions vs in-process llama-cpp-python vs `llama_cpp.server`.

Greedy, a fixed number of new tokens (end-of-sequence suppressed on every path), the same
model, context and thread count. Each server runs alone in its own process while it is measured.
Prints tokens/s, time to first token and p50/p95 latency at 1 and 4 concurrent clients, with
ratios. Single-client runs alternate with in-process runs round by round, so that the machine's
drift (a 2-core VM is noisy) hits both sides of each ratio alike. llama-cpp-python's server needs
its `[server]` extras; they are installed once into .cache/bench-extras (the benchmark's own
environment), never into the project's.

    .venv/bin/python benchmarks/server_bench.py [--model demo-q4_k_m] [--tokens 256] [--requests 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lqmf.base.environment import apply_environment_quirks
from lqmf.base.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]

PROMPT = [{"role": "user", "content": "What does shuffle do?"}]
EXTRAS = ("sse-starlette==3.0.2", "starlette-context==0.3.6")


@dataclass
class Runs:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0

    def p(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(round(q * (len(data) - 1))))] if data else float("nan")

    @property
    def tok_s(self) -> float:
        """Per-request decoding speed: tokens over the request's latency (median)."""
        if not self.latencies:
            return 0.0
        return statistics.median(n / t for n, t in zip(self.tokens, self.latencies, strict=True))

    @property
    def throughput(self) -> float:
        return sum(self.tokens) / self.wall if self.wall else 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no answer from {url}")


def one_request(client, url: str, body: dict, stream: bool) -> tuple[float, float, int]:
    """(latency, time to first content, completion tokens) of one chat completion."""
    start = time.perf_counter()
    if not stream:
        response = client.post(url, json=body)
        response.raise_for_status()
        elapsed = time.perf_counter() - start
        return elapsed, elapsed, response.json()["usage"]["completion_tokens"]
    first, pieces, counted = None, 0, None
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", url, json=stream_body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                counted = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    pieces += 1
                    if first is None:
                        first = time.perf_counter() - start
    # Tokens that decode to no text send no event: trust the server's usage when it reports one.
    return time.perf_counter() - start, first or 0.0, counted if counted is not None else pieces


def drive(url: str, body: dict, stream: bool, clients: int, requests_each: int) -> Runs:
    import httpx

    runs = Runs()
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(timeout=600) as client:
            for _ in range(requests_each):
                try:
                    latency, ttft, n = one_request(client, url, body, stream)
                except Exception:  # counted: the target is zero errors
                    with lock:
                        runs.errors += 1
                    continue
                with lock:
                    runs.latencies.append(latency)
                    runs.ttfts.append(ttft)
                    runs.tokens.append(n)

    with httpx.Client(timeout=600) as warm:
        one_request(warm, url, body, stream)
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs.wall = time.perf_counter() - start
    return runs


class InProcess:
    """llama-cpp-python's bare generate loop in this process: the ceiling for one stream."""

    def __init__(self, model_path: str, n_ctx: int, threads: int, tokens: int) -> None:
        from llama_cpp import Llama

        from server.runtime.backends.chat import render_chat

        self.llm = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=threads, verbose=False)
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.ids = self.llm.tokenize(render_chat(template, PROMPT).encode(), add_bos=False, special=True)
        self.tokens = tokens

    def run(self, runs: Runs) -> None:
        start, first, n = time.perf_counter(), None, 0
        for token in self.llm.generate(self.ids, temp=0.0, reset=True):
            self.llm.detokenize([token])
            n += 1
            first = first or time.perf_counter() - start
            if n >= self.tokens:
                break
        runs.latencies.append(time.perf_counter() - start)
        runs.ttfts.append(first or 0.0)
        runs.tokens.append(n)


def interleaved(baseline: InProcess, url: str, body: dict, rounds: int, labels: tuple[str, str]) -> dict[str, Runs]:
    """One client: in-process, stream and non-stream runs in turn, the order rotating every round.

    Whatever runs right after the other process finds colder caches; rotating gives every path
    that handicap equally often, and machine drift hits all three alike.
    """
    import httpx

    base, stream, plain = Runs(), Runs(), Runs()

    with httpx.Client(timeout=600) as client:
        def remote(runs: Runs, streaming: bool) -> None:
            try:
                latency, ttft, n = one_request(client, url, body, streaming)
            except Exception:  # counted: the target is zero errors
                runs.errors += 1
                return
            runs.latencies.append(latency)
            runs.ttfts.append(ttft)
            runs.tokens.append(n)

        steps = [lambda: baseline.run(base), lambda: remote(stream, True), lambda: remote(plain, False)]
        one_request(client, url, body, True)  # warm-up
        baseline.run(Runs())
        for r in range(rounds * 3):
            steps[(r + r // 3) % 3]()
    for runs in (base, stream, plain):
        runs.wall = sum(runs.latencies)
    return {f"in-process (beside {labels[0].split()[0]})": base, labels[0]: stream, labels[1]: plain}


def ensure_extras() -> Path:
    target = ROOT / ".cache" / "bench-extras"
    if not (target / "sse_starlette").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        *EXTRAS], check=True)
    return target


def serve(cmd: list[str], env: dict, health: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_healthy(health)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"{cmd[2]} did not start: {proc.stderr.read().decode()[-2000:]}") from None
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo-q4_k_m")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--requests", type=int, default=8, help="requests per client per scenario")
    args = parser.parse_args()
    apply_environment_quirks()
    from server.runtime.backends.gguf import default_threads
    from server.runtime.discovery import discover

    settings = load_settings()
    record = {r.name: r for r in discover(settings.models_dir)}.get(args.model)
    if record is None or record.format != "gguf":
        sys.exit(f"{args.model} is not a GGUF model in {settings.models_dir}")
    threads = default_threads()
    n_ctx = min(settings.context_length, record.context_length or settings.context_length)
    baseline = InProcess(str(record.path), n_ctx, threads, args.tokens)
    results: dict[str, Runs] = {}

    port = free_port()
    env = {**os.environ, "LQMF_THREADS": str(threads), "LQMF_PRELOAD": json.dumps([args.model]),
           "LQMF_KEEP_ALIVE_S": "-1"}
    proc = serve([sys.executable, "-m", "server", "--port", str(port)], env, f"http://127.0.0.1:{port}/health")
    try:
        body = {"model": args.model, "messages": PROMPT, "max_tokens": args.tokens, "temperature": 0,
                "ignore_eos": True}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        results.update(interleaved(baseline, url, body, args.requests * 2, ("LQMF stream x1", "LQMF non-stream x1")))
        for stream in (True, False):
            results[f"LQMF {'stream' if stream else 'non-stream'} x4"] = drive(url, body, stream, 4, args.requests)
    finally:
        proc.terminate()
        proc.wait(30)

    extras = ensure_extras()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(extras)}
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(record.path), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads), "--port", str(port), "--host", "127.0.0.1"]
    proc = serve(cmd, env, f"http://127.0.0.1:{port}/v1/models")
    try:
        # Its own way to run past end-of-sequence: a logit bias on every end-of-generation token.
        import llama_cpp

        vocab = baseline.llm._model.vocab
        eog = {str(t): -100 for t in range(baseline.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
        body = {"model": args.model, "messages": PROMPT, "max_tokens": args.tokens, "temperature": 0,
                "logit_bias": eog}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        results.update(interleaved(baseline, url, body, args.requests,
                                   ("llama_cpp.server stream x1", "llama_cpp.server non-stream x1")))
    finally:
        proc.terminate()
        proc.wait(30)
    baseline.llm.close()

    base = results["in-process (beside LQMF)"].tok_s
    ours = results["LQMF stream x1"].tok_s
    theirs = results["llama_cpp.server stream x1"].tok_s
    print(f"model {args.model} ({record.level}), {args.tokens} new tokens, greedy, n_ctx {n_ctx}, "
          f"{threads} thread(s), {args.requests} requests per client")
    print(f"{'path':<34} {'tok/s':>8} {'vs in-proc':>10} {'TTFT ms':>8} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'agg tok/s':>9} {'errors':>6}")
    for label, r in results.items():
        ref = results["in-process (beside llama_cpp.server)"].tok_s if "llama_cpp" in label else base
        print(f"{label:<34} {r.tok_s:>8.0f} {r.tok_s / ref:>9.3f}x {statistics.median(r.ttfts) * 1000:>8.1f} "
              f"{r.p(0.5) * 1000:>8.1f} {r.p(0.95) * 1000:>8.1f} {r.throughput:>9.0f} {r.errors:>6}")
    print("(ratios against the in-process loop measured in the same rounds; x4 rows against LQMF's)")
    print(f"\nLQMF stream x1 vs in-process: {ours / base:.3f}x (target >= 0.9)")
    print(f"LQMF stream x1 vs llama_cpp.server stream x1: {ours / theirs:.1f}x (target >= 10)")
    print(f"errors at 4 clients: {results['LQMF stream x4'].errors + results['LQMF non-stream x4'].errors} (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
