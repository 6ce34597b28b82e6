"""Side by side (issue 14): llama.cpp's `llama-server` alone vs LQMF's server engine vs LQMF in-process.

The three systems serve the same GGUF file with the same threads, slots and per-slot context:
(a) LQMF's API server (`python -m server`) with LQMF_GGUF_ENGINE=server, which runs its own
llama-server child; (b) that llama-server started directly, with the flags LQMF's child gets
(server.runtime.engine.EngineChild.command()); (c) LQMF with LQMF_GGUF_ENGINE=in-process. Each system is
started, warmed up, measured and stopped in turn, rounds alternating A B C A B C ..., so that the
machine's drift hits all three alike; every figure is the median over the rounds (errors: the sum).

Figures, greedy, a fixed number of new tokens per request (`ignore_eos`), one short fixed prompt:
- aggregate tokens/s over the wall time at 1, 4 and 16 concurrent clients (non-streaming
  /v1/completions, counting `usage.completion_tokens`);
- time to first token, p50 and p95 (streaming: from sending the request to the first SSE event
  that carries text);
- SSE tokens/s of a single stream: the stream's tokens (its `usage`, not its events, which LQMF
  batches) from the first token to the last;
- errors.
Prints a markdown table with the ratios against llama-server alone and the targets (single stream
>= 0.95, 4 and 16 clients >= 0.9, TTFT p50 at most +5 ms); writes the raw numbers as JSON.

The bench model is a random-weight llama of about 200M parameters (memory-bound on a CPU, unlike
the 4.5M-parameter demo model, whose tokens cost less than an HTTP round trip), built offline with
transformers and quantized to q4_k_m through LQMF's own GGUF path, cached under .cache/bench/.

    .venv/bin/python benchmarks/engine_bench.py [--rounds 3] [--tokens 64] [--clients 1,4,16] [--two-models]
    .venv/bin/python benchmarks/engine_bench.py --quick [--two-models]   # demo model, 1 round: a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import httpx

from lqmf.base.sse import sse_events

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("engine_bench")

PROMPT = "The old lighthouse keeper climbed the stairs one last time and"
BENCH_NAME = "bench-200m-q4_k_m"
BENCH_HF = "bench-200m-hf"
DEMO_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "chat_template.jinja",
                        "generation_config.json")
# About 197M parameters: 15 x (4 x 1024^2 attention + 3 x 1024 x 2816 MLP) + 2 x 2048 x 1024 embeddings.
# 2816 = 11 x 256: K-quants store rows in super-blocks of 256, so every matrix is really Q4_K/Q6_K.
BENCH_CONFIG = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=15, num_attention_heads=16,
                    num_key_value_heads=16, max_position_embeddings=2048, tie_word_embeddings=False)
BENCH_SEED = 0
HTTP_TIMEOUT = httpx.Timeout(600.0, connect=10.0)  # 16 queued requests on a slow machine take minutes

SYSTEMS = ("llama-server", "lqmf-server", "lqmf-in-process")
LABELS = {"llama-server": "llama-server alone", "lqmf-server": "LQMF (server engine)",
          "lqmf-in-process": "LQMF in-process"}
BASELINE = "llama-server"


# -- pure helpers (tests/test_engine_bench.py) ---------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks; NaN for no values."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    rank = (len(data) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The median of the values that are numbers; NaN for none (a system that failed every round)."""
    data = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(data) if data else float("nan")


def ratio(value: float, base: float) -> float:
    """value / base; NaN when either is missing or the base is zero."""
    if value is None or base is None or math.isnan(value) or math.isnan(base) or base == 0:
        return float("nan")
    return value / base


def sse_rate(tokens: int, first_s: float, last_s: float) -> float:
    """Tokens/s of a stream between its first and its last token (the first token's wait excluded).

    Counted in tokens, not events: LQMF hands a fast stream over in batches, llama-server one token
    per event, so counting events would flatter whichever batches least.
    """
    if tokens < 2 or last_s <= first_s:
        return float("nan")
    return (tokens - 1) / (last_s - first_s)


def parse_clients(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]: positive, distinct, in the order given."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        n = int(part)
        if n < 1:
            raise ValueError(f"client counts must be >= 1, got {n}")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError("no client counts given")
    return out


@dataclass(frozen=True)
class Figure:
    """One row of the table: its key in the JSON, its label, its unit and its target against the baseline.

    `target` is ("min_ratio", r): value / baseline >= r; ("max_delta", d): value - baseline <= d;
    ("zero", 0): the value itself is 0; None: reported, not judged.
    """

    key: str
    label: str
    unit: str
    target: Optional[tuple[str, float]] = None
    higher_is_better: bool = True


def figures_for(clients: Sequence[int]) -> list[Figure]:
    """The table's rows: throughput per client count, then TTFT, the single stream and errors."""
    rows = [Figure(f"tok_s_c{c}", f"aggregate tok/s, {c} client{'s' if c > 1 else ''}", "tok/s",
                   ("min_ratio", 0.95 if c == 1 else 0.9)) for c in clients]
    rows += [
        Figure("ttft_p50_ms", "TTFT p50 (stream)", "ms", ("max_delta", 5.0), higher_is_better=False),
        Figure("ttft_p95_ms", "TTFT p95 (stream)", "ms", None, higher_is_better=False),
        Figure("sse_tok_s", "SSE tok/s, single stream", "tok/s", ("min_ratio", 0.95)),
        Figure("errors", "errors", "", ("zero", 0), higher_is_better=False),
    ]
    return rows


def verdict(target: Optional[tuple[str, float]], value: float, base: float) -> str:
    """PASS / MISS of one system's figure against the baseline's; '-' when there is no target or no number."""
    if target is None or value is None or math.isnan(value):
        return "-"
    kind, bound = target
    if kind == "zero":
        return "PASS" if value == 0 else "MISS"
    if base is None or math.isnan(base):
        return "-"
    if kind == "min_ratio":
        r = ratio(value, base)
        return "-" if math.isnan(r) else ("PASS" if r >= bound else "MISS")
    if kind == "max_delta":
        return "PASS" if value - base <= bound else "MISS"
    raise ValueError(f"unknown target kind {kind!r}")


def target_text(target: Optional[tuple[str, float]]) -> str:
    if target is None:
        return "-"
    kind, bound = target
    if kind == "min_ratio":
        return f">= {bound:g}x"
    if kind == "max_delta":
        return f"<= +{bound:g} ms"
    return "0"


def compare_text(figure: Figure, value: float, base: float) -> str:
    """The ratio column: value / baseline, or for a delta target the difference it is judged on."""
    if figure.target is not None and figure.target[0] == "zero":
        return "-"
    if figure.target is not None and figure.target[0] == "max_delta":
        if value is None or base is None or math.isnan(value) or math.isnan(base):
            return "-"
        return f"{value - base:+.1f} {figure.unit}"
    r = ratio(value, base)
    return "-" if math.isnan(r) else f"{r:.3f}x"


def number_text(value: Optional[float], figure: Figure) -> str:
    if value is None or math.isnan(value):
        return "-"
    if figure.key == "errors":
        return str(int(value))
    return f"{value:.1f}"


def render_table(figures: Sequence[Figure], results: dict[str, dict[str, float]]) -> str:
    """The markdown table: one row per figure; the two LQMF columns each with its ratio and verdict."""
    base = results.get(BASELINE, {})
    ours = results.get("lqmf-server", {})
    inproc = results.get("lqmf-in-process", {})
    header = ["figure", LABELS["llama-server"], LABELS["lqmf-server"], "ratio", LABELS["lqmf-in-process"], "ratio",
              "target", "server engine", "in-process"]
    rows = [header, ["---"] + ["---:"] * 6 + [":---:"] * 2]
    for f in figures:
        b, s, i = base.get(f.key, float("nan")), ours.get(f.key, float("nan")), inproc.get(f.key, float("nan"))
        rows.append([f.label, number_text(b, f), number_text(s, f), compare_text(f, s, b), number_text(i, f),
                     compare_text(f, i, b), target_text(f.target), verdict(f.target, s, b), verdict(f.target, i, b)])
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = []
    for r in rows:
        cells = []
        for c, (text, width) in enumerate(zip(r, widths, strict=True)):
            if set(text) <= set("-:") and len(text) >= 3:  # the alignment row: pad inside the colons
                cells.append(text[0] + "-" * (width - 2) + text[-1] if text.endswith(":") else text + "-" * (width - 3))
            else:
                cells.append(text.ljust(width) if c == 0 else text.rjust(width))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(rounds: Sequence[dict[str, Any]], figures: Sequence[Figure]) -> dict[str, dict[str, float]]:
    """Per system, each figure's median over its rounds (errors: their sum, every one counts)."""
    out: dict[str, dict[str, float]] = {}
    for system in SYSTEMS:
        mine = [r["figures"] for r in rounds if r["system"] == system]
        if not mine:
            continue
        out[system] = {}
        for f in figures:
            values = [m.get(f.key, float("nan")) for m in mine]
            out[system][f.key] = float(sum(v for v in values if not math.isnan(v))) if f.key == "errors" \
                else median(values)
    return out


def json_safe(value: Any) -> Any:
    """`value` with every NaN / infinity as None: the raw numbers must be strict JSON for other tools."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line; --quick fills in the smoke-run values the user did not set."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds of A B C (default 3; --quick: 1)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per request (default 64, ignore_eos)")
    parser.add_argument("--clients", type=parse_clients, default=[1, 4, 16],
                        help="concurrent client counts for the throughput figures (default 1,4,16)")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per client at each client count, at least 16 requests in all "
                             "(default 2; --quick: 1)")
    parser.add_argument("--streams", type=int, default=None,
                        help="single-client streamed requests per round, for TTFT and SSE tok/s "
                             "(default 24; --quick: 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for every system (default: physical cores, what LQMF's server engine uses)")
    parser.add_argument("--in-process-threads", type=int, default=None,
                        help="threads for LQMF in-process only (default: --threads; LQMF's own in-process "
                             "default leaves a core free)")
    parser.add_argument("--slots", type=int, default=None, help="parallel slots (default LQMF_PARALLEL, 4)")
    parser.add_argument("--ctx", type=int, default=None,
                        help="context per slot (default LQMF_CONTEXT_LENGTH, capped by the model's)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a GGUF file to bench (default: the 200M bench model, built once; --quick: demo-q4_k_m)")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "quantized-models",
                        help="where demo-q4_k_m.gguf (and the demo tokenizer, demo-hf) live")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"which systems to run, comma-separated (default all: {','.join(SYSTEMS)})")
    parser.add_argument("--two-models", action="store_true",
                        help="also: 16 clients over the bench model and demo-q4_k_m at once through LQMF (errors)")
    parser.add_argument("--quick", action="store_true", help="the demo model, 1 round, fewer requests: a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "engine_bench.json", help="raw numbers (JSON)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else 3)
    args.requests = args.requests if args.requests is not None else (1 if quick else 2)
    # 24 streams: a p50 of 8 moved by 3 ms between runs on 2 cores (the first requests after a warm-up
    # still pay for the server's background bookkeeping).
    args.streams = args.streams if args.streams is not None else (3 if quick else 24)
    if quick and args.model is None:
        args.model = args.demo_dir / "demo-q4_k_m.gguf"
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    args.systems = [s for s in SYSTEMS if s in systems]  # always A B C order
    for name in ("rounds", "tokens", "requests", "streams"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


# -- the bench model -----------------------------------------------------------------------------------

def build_bench_model(cache: Path, demo_hf: Path, threads: int) -> Path:
    """The random-weight ~200M llama as q4_k_m GGUF under cache/models/, built only when missing."""
    out = cache / "models" / f"{BENCH_NAME}.gguf"
    if out.is_file():
        return out
    from agents.quantization.gguf_quant import convert_to_gguf, quantize_gguf
    from lqmf.base.manifest import manifest_path_for, tree_sha256
    from lqmf.base.settings import load_settings

    settings = load_settings()  # the converter's cache (LQMF_TOOLS_DIR or .cache/tools)
    began = time.perf_counter()
    hf = cache / BENCH_HF
    if not (hf / "config.json").is_file() or not any(hf.glob("*.safetensors")):
        _build_hf(hf, demo_hf)
    log.info("bench model: HF folder ready after %.0f s; converting to f16 GGUF", time.perf_counter() - began)
    # The float GGUF is a step, not a product: beside the models folder, removed once quantized.
    f16 = cache / f"{BENCH_HF}-f16.gguf"
    try:
        convert_to_gguf(hf, f16, settings, "f16", overwrite=True)
        log.info("bench model: f16 GGUF after %.0f s; quantizing to q4_k_m", time.perf_counter() - began)
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize_gguf(f16, out, "q4_k_m", threads=threads, overwrite=True,
                      source={"path": str(hf), "format": "hf", "sha256": tree_sha256(hf), "via": "f16 GGUF"})
    finally:
        f16.unlink(missing_ok=True)
        manifest_path_for(f16).unlink(missing_ok=True)
    log.info("bench model built in %.0f s: %s (%.0f MiB)", time.perf_counter() - began, out,
             out.stat().st_size / 2**20)
    return out


def _build_hf(folder: Path, demo_hf: Path) -> None:
    """A seeded random llama with the demo tokenizer, saved atomically (no download, nothing trained)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lqmf.base.atomic import atomic_output

    demo_config = json.loads((demo_hf / "config.json").read_text())
    config = LlamaConfig(vocab_size=demo_config["vocab_size"], bos_token_id=demo_config.get("bos_token_id"),
                         eos_token_id=demo_config.get("eos_token_id"), **BENCH_CONFIG)
    torch.manual_seed(BENCH_SEED)
    model = LlamaForCausalLM(config).to(torch.float16)  # half the bytes to write; the converter emits f16 anyway
    params = sum(p.numel() for p in model.parameters())
    log.info("bench model: %d parameters (%.0fM), saving to %s", params, params / 1e6, folder)
    with atomic_output(folder, overwrite=folder.exists(), is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in DEMO_TOKENIZER_FILES:
            if (demo_hf / name).is_file():
                shutil.copy2(demo_hf / name, tmp / name)


# -- requests ------------------------------------------------------------------------------------------

@dataclass
class Load:
    """What `clients` concurrent non-streaming clients got."""

    clients: int
    requests: int = 0
    tokens: int = 0
    short: int = 0  # answered with fewer tokens than asked (ignore_eos should prevent it)
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 and self.tokens else float("nan")


@dataclass
class StreamSample:
    ttft_s: float
    first_s: float
    last_s: float
    tokens: int

    @property
    def tok_s(self) -> float:
        return sse_rate(self.tokens, self.first_s, self.last_s)


def completion_body(model: str, tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
                            "ignore_eos": True, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _error(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:200]}"


def complete(client: httpx.Client, url: str, body: dict[str, Any]) -> int:
    """One non-streaming completion; its completion tokens (an exception for anything but a 200 with usage)."""
    response = client.post(url, json=body)
    if response.status_code != 200:
        raise RuntimeError(_error(response))
    return int(response.json()["usage"]["completion_tokens"])


def stream(client: httpx.Client, url: str, body: dict[str, Any]) -> StreamSample:
    """One streamed completion: time to the first text, time of the last text, tokens from its usage."""
    start = time.perf_counter()
    first = last = None
    tokens = None
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(_error(response))
        for event in sse_events(response.iter_lines()):
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
            if any(choice.get("text") for choice in event.get("choices") or []):
                now = time.perf_counter() - start
                first = now if first is None else first
                last = now
    if tokens is None or first is None:
        raise RuntimeError("the stream carried no usage or no text")
    return StreamSample(first, first, last, tokens)


def run_load(url: str, headers: dict[str, str], body: dict[str, Any], clients: int, requests_each: int) -> Load:
    """`clients` threads, each sending `requests_each` requests back to back; wall time from a common start."""
    load = Load(clients)
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client_loop() -> None:
        with httpx.Client(timeout=HTTP_TIMEOUT, headers=headers) as client:
            barrier.wait()
            for _ in range(requests_each):
                try:
                    n = complete(client, url, body)
                except Exception as exc:  # counted and reported: the target is zero errors
                    with lock:
                        load.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                with lock:
                    load.requests += 1
                    load.tokens += n
                    load.short += n < body["max_tokens"]

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    load.wall_s = time.perf_counter() - start
    return load


# -- the systems ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """What every system shares: the file, its name in requests, threads, slots and per-slot context."""

    model_path: Path
    model_name: str
    threads: int
    in_process_threads: int
    slots: int
    slot_ctx: int
    binary: Path


def _wait_gone(pids: Sequence[int], timeout: float = 15.0) -> None:
    """Wait for processes (a system's llama-server child) to end: the next system gets the CPU to itself."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        log.warning("pid %d outlived its parent; killing it", proc.pid)
        proc.kill()


@contextmanager
def llama_server_alone(setup: Setup, workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """llama-server started directly with the command line LQMF gives its child (no API key)."""
    from lqmf.base.processes import end_process, tethered
    from server.runtime.engine import ChildSpec, EngineChild, free_port

    child = EngineChild(ChildSpec(setup.binary, setup.model_path, setup.model_name, setup.slots, setup.slot_ctx,
                                  setup.threads, workdir / "llama-server.log"))
    child.port = free_port()
    cmd = child.command()
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"}
    with open(child.spec.log_path, "ab") as out:
        # Tethered: a killed benchmark leaves no llama-server spinning on the cores.
        proc = subprocess.Popen(tethered(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}: {child.log_tail()}")
            try:
                if httpx.get(f"{child.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not become healthy: {child.log_tail()}")
            time.sleep(0.05)
        log.info("llama-server alone: pid %d, %s", proc.pid, " ".join(cmd[cmd.index("-np"):cmd.index("--jinja")]))
        yield child.url, {}
    finally:
        end_process(proc, 10)


@contextmanager
def lqmf_server(setup: Setup, models_dir: Path, engine: str, preload: Sequence[str],
                queue_size: int) -> Iterator[tuple[str, dict[str, str]]]:
    """`python -m server` in a temporary LQMF_HOME, models from `models_dir`, with the given GGUF engine."""
    import psutil

    from lqmf.base.tools import tools_folder
    if __package__:  # imported as benchmarks.*
        from benchmarks.load_test import ServerProcess
    else:  # run as a script: benchmarks/ is first on sys.path
        from load_test import ServerProcess
    from lqmf.base.settings import load_settings

    threads = setup.in_process_threads if engine == "in-process" else setup.threads
    env = {
        "LQMF_GGUF_ENGINE": engine, "LQMF_PARALLEL": str(setup.slots), "LQMF_THREADS": str(threads),
        "LQMF_CONTEXT_LENGTH": str(setup.slot_ctx), "LQMF_PRELOAD": json.dumps(list(preload)),
        # The temporary LQMF_HOME has no tools: point at the built llama-server.
        "LQMF_TOOLS_DIR": str(tools_folder(load_settings()).parent),
        "LQMF_KEEP_ALIVE_S": "-1",  # never unloaded between figures
        # Its background benchmarks (every 50 generations) would run inside the measurement.
        "LQMF_AUTO_BENCHMARK_EVERY": "0",
        # 16 clients on one in-process slot queue 15; a larger --clients must not meet QueueFull.
        "LQMF_QUEUE_SIZE": str(queue_size),
    }
    with ServerProcess(models_dir, env=env, timeout_s=120) as server:
        try:
            yield server.url, {}
        finally:
            try:  # the engine's llama-server children: they must be gone before the next system starts
                children = [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                children = []
            if not server.alive():
                log.error("the LQMF server died during the round: %s", server.output()[-1500:])
    _wait_gone(children)


def start_system(system: str, setup: Setup, models_dir: Path, workdir: Path, queue_size: int):
    if system == "llama-server":
        return llama_server_alone(setup, workdir)
    engine = "server" if system == "lqmf-server" else "in-process"
    return lqmf_server(setup, models_dir, engine, [setup.model_name], queue_size)


def warm_up(url: str, headers: dict[str, str], model: str, slots: int, tokens: int) -> None:
    """Load the model, fill every slot once, run one stream: first-request costs stay out of the figures."""
    deadline = time.monotonic() + 180
    with httpx.Client(timeout=HTTP_TIMEOUT, headers=headers) as client:
        while True:  # LQMF may still be preloading; a 503 with Retry-After says so
            try:
                complete(client, f"{url}/v1/completions", completion_body(model, 8, False))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        stream(client, f"{url}/v1/completions", completion_body(model, tokens, True))
    run_load(f"{url}/v1/completions", headers, completion_body(model, tokens, False), slots, 1)


def measure(url: str, headers: dict[str, str], args: argparse.Namespace, model: str) -> dict[str, Any]:
    """One round of one system: the streams, then the throughput at each client count."""
    endpoint = f"{url}/v1/completions"
    samples: list[StreamSample] = []
    errors: list[str] = []
    with httpx.Client(timeout=HTTP_TIMEOUT, headers=headers) as client:
        for _ in range(args.streams):
            try:
                samples.append(stream(client, endpoint, completion_body(model, args.tokens, True)))
            except Exception as exc:  # counted: the target is zero errors
                errors.append(f"stream: {type(exc).__name__}: {exc}"[:300])
    # At least 16 requests per figure: one client sending two lasted under a second, and its tok/s moved by
    # 10% between runs.
    loads = {c: run_load(endpoint, headers, completion_body(model, args.tokens, False), c,
                         args.requests if args.quick else max(args.requests, -(-16 // c)))
             for c in args.clients}
    for load in loads.values():
        errors += [f"{load.clients} clients: {e}" for e in load.errors]
    figures = {f"tok_s_c{c}": load.tok_s for c, load in loads.items()}
    figures.update(
        ttft_p50_ms=percentile([s.ttft_s for s in samples], 50) * 1000,
        ttft_p95_ms=percentile([s.ttft_s for s in samples], 95) * 1000,
        sse_tok_s=median([s.tok_s for s in samples]),
        errors=float(len(errors)),
    )
    return {"figures": figures, "streams": [asdict(s) for s in samples],
            "loads": {str(c): {**asdict(load), "tok_s": load.tok_s} for c, load in loads.items()},
            "error_messages": errors}


def two_models_check(setup: Setup, models_dir: Path, second: str, clients: int, args) -> dict[str, Any]:
    """`clients` clients over the bench model and a second model at once, through LQMF's server engine."""
    models = [setup.model_name, second]
    with lqmf_server(setup, models_dir, "server", models, max(16, clients * 2)) as (url, headers):
        for model in models:
            warm_up(url, headers, model, setup.slots, args.tokens)
        loads: dict[str, Load] = {}
        threads = []
        for i, model in enumerate(models):
            n = clients // len(models) + (i < clients % len(models))
            body = completion_body(model, args.tokens, False)

            def run(model=model, n=n, body=body) -> None:
                loads[model] = run_load(f"{url}/v1/completions", headers, body, n, max(2, args.requests))

            threads.append(threading.Thread(target=run))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    errors = [f"{m}: {e}" for m, load in loads.items() for e in load.errors]
    return {"clients": clients, "models": models, "errors": len(errors), "error_messages": errors,
            "loads": {m: {**asdict(load), "tok_s": load.tok_s} for m, load in loads.items()}}


# -- the run -------------------------------------------------------------------------------------------

def prepare_models_dir(folder: Path, files: Sequence[Path]) -> None:
    """Symlinks to the GGUF files (and their manifests) in a folder of their own: LQMF sees only these."""
    for path in files:
        for src in (path, path.with_name(path.name + ".lqmf.json")):
            if src.exists() and not (folder / src.name).exists():
                (folder / src.name).symlink_to(src.resolve())


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the progress
    from lqmf.base.environment import apply_environment_quirks

    apply_environment_quirks()
    from agents.quantization.imatrix import gguf_context_length
    from lqmf.base.manifest import read_manifest
    from lqmf.base.settings import load_settings
    from lqmf.base.tools import LlamaTools, tools_folder
    from server.runtime.backends.gguf_engine import engine_threads

    settings = load_settings()
    binary = LlamaTools.in_folder(tools_folder(settings)).server
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        sys.stderr.write(f"error: no llama-server at {binary}: run `make tools`\n")
        return 2
    demo = args.demo_dir / "demo-q4_k_m.gguf"
    threads = args.threads or engine_threads()
    built_s = None
    if args.model is None:
        began = time.perf_counter()
        model_path = build_bench_model(ROOT / ".cache" / "bench", args.demo_dir / "demo-hf", threads)
        built_s = time.perf_counter() - began
    else:
        model_path = args.model
    if not model_path.is_file():
        sys.stderr.write(f"error: no GGUF file at {model_path} (build the demo models: make setup)\n")
        return 2
    model_name = model_path.stem
    slot_ctx = min(args.ctx or settings.context_length, gguf_context_length(model_path))
    setup = Setup(model_path.resolve(), model_name, threads, args.in_process_threads or threads,
                  args.slots or settings.parallel, slot_ctx, binary)
    manifest = read_manifest(model_path) or {}
    second = demo if demo.resolve() != model_path.resolve() else args.demo_dir / "demo-q8_0.gguf"
    figures = figures_for(args.clients)
    config = {
        "model": str(model_path), "model_name": model_name, "size_bytes": model_path.stat().st_size,
        "parameter_count": manifest.get("parameter_count"), "level": manifest.get("level"),
        "threads": setup.threads, "in_process_threads": setup.in_process_threads, "slots": setup.slots,
        "slot_ctx": setup.slot_ctx, "tokens": args.tokens, "prompt": PROMPT, "rounds": args.rounds,
        "clients": args.clients, "requests_per_client": args.requests, "streams_per_round": args.streams,
        "systems": args.systems, "quick": args.quick, "bench_model_seconds": built_s,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "llama_server": str(binary), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    log.info("bench %s (%.0f MiB, %s parameters), %d threads, %d slots x %d tokens, %d new tokens, %d round(s)",
             model_name, config["size_bytes"] / 2**20, config["parameter_count"], setup.threads, setup.slots,
             setup.slot_ctx, args.tokens, args.rounds)

    rounds: list[dict[str, Any]] = []
    two: Optional[dict[str, Any]] = None
    with tempfile.TemporaryDirectory(prefix="lqmf-engine-bench-") as tmp:
        work = Path(tmp)
        models_dir = work / "models"
        models_dir.mkdir()
        prepare_models_dir(models_dir, [model_path] + ([second] if args.two_models else []))
        queue_size = max(settings.queue_size, max(args.clients) + setup.slots)
        for r in range(args.rounds):
            for system in args.systems:
                log.info("round %d/%d: %s", r + 1, args.rounds, LABELS[system])
                began = time.perf_counter()
                try:
                    with start_system(system, setup, models_dir, work, queue_size) as (url, headers):
                        warm_up(url, headers, model_name, setup.slots, args.tokens)
                        result = measure(url, headers, args, model_name)
                except Exception as exc:  # a system that fails a round is a result, not the end of the run
                    log.error("%s failed in round %d: %s", LABELS[system], r + 1, exc)
                    result = {"figures": {"errors": 1.0}, "error_messages": [f"{type(exc).__name__}: {exc}"[:500]]}
                result.update(round=r + 1, system=system, seconds=round(time.perf_counter() - began, 1))
                rounds.append(result)
                shown = {k: round(v, 1) for k, v in result["figures"].items()}
                log.info("  %s in %.0f s: %s", LABELS[system], result["seconds"], shown)
        if args.two_models:
            if not second.is_file():
                log.error("--two-models: no %s", second)
                two = {"errors": 1, "error_messages": [f"no {second}"]}
            else:
                log.info("two models at once: %s and %s, 16 clients through LQMF", model_name, second.stem)
                try:
                    two = two_models_check(setup, models_dir, second.stem, 16, args)
                except Exception as exc:
                    two = {"errors": 1, "error_messages": [f"{type(exc).__name__}: {exc}"[:500]]}

    results = summarize(rounds, figures)
    table = render_table(figures, results)
    print(f"\n{model_name}: {config['size_bytes'] / 2**20:.0f} MiB, {config['parameter_count'] or '?'} parameters; "
          f"{setup.threads} threads, {setup.slots} slots x {setup.slot_ctx} tokens; {args.tokens} new tokens per "
          f"request (greedy, ignore_eos); median of {args.rounds} round(s); /v1/completions\n")
    print(table)
    if setup.in_process_threads != setup.threads:
        print(f"\n(LQMF in-process ran with {setup.in_process_threads} threads)")
    if two is not None:
        mark = "PASS" if two["errors"] == 0 else "MISS"
        per_model = ", ".join(f"{m} {load['tok_s']:.1f} tok/s" for m, load in two.get("loads", {}).items())
        print(f"\ntwo models at once through LQMF (16 clients): {two['errors']} errors (target 0) {mark}"
              + (f"; {per_model}" if per_model else ""))
    messages = [m for r in rounds for m in r.get("error_messages", [])] + (two or {}).get("error_messages", [])
    for message in messages[:10]:
        print(f"  error: {message}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = {"config": config, "median": results, "rounds": rounds, "two_models": two, "table": table}
    args.out.write_text(json.dumps(json_safe(raw), indent=2, default=str, allow_nan=False))
    print(f"\nraw numbers: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
