"""What LQMF's gateway costs (issue 15): a llama-server called directly vs the same llama-server
registered in LQMF as a remote endpoint and called through LQMF's /v1.

One llama-server (the bench model, LQMF's own flags) and one LQMF (`python -m server`, no local
models, the llama-server registered with POST /endpoints under the model's name) run side by side;
rounds alternate direct, gateway, direct, gateway ... and every figure is the median over the rounds
(errors: the sum). The figures are engine_bench's: aggregate tokens/s at 1, 4 and 16 clients
(non-streaming /v1/completions, `usage.completion_tokens`), TTFT p50/p95 and SSE tokens/s of one
stream, errors; greedy, a fixed number of new tokens (`ignore_eos`, which LQMF passes on to a
llama.cpp remote).

    .venv/bin/python benchmarks/gateway_bench.py [--rounds 3] [--tokens 64] [--clients 1,4,16]
    .venv/bin/python benchmarks/gateway_bench.py --quick     # demo model, 1 round: a smoke run
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import httpx

if __package__:  # `python -m benchmarks.gateway_bench`, or imported
    from benchmarks import engine_bench as eb
else:  # `python benchmarks/gateway_bench.py`: Python puts benchmarks/ first on sys.path
    import engine_bench as eb

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("gateway_bench")
SYSTEMS = {"direct": "llama-server directly", "gateway": "through LQMF (remote endpoint)"}


def render(figures: Sequence[eb.Figure], results: dict[str, dict[str, float]]) -> str:
    """A markdown table: each figure direct, through the gateway, and the ratio (TTFT: the difference)."""
    rows = [["figure", SYSTEMS["direct"], SYSTEMS["gateway"], "gateway vs direct"], ["---", "---:", "---:", "---:"]]
    for f in figures:
        direct, gateway = results["direct"].get(f.key, float("nan")), results["gateway"].get(f.key, float("nan"))
        rows.append([f.label, eb.number_text(direct, f), eb.number_text(gateway, f),
                     eb.compare_text(f, gateway, direct)])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = eb.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from agents.quantization.imatrix import gguf_context_length
    from lqmf.base.tools import LlamaTools, tools_folder
    if __package__:  # imported as benchmarks.*
        from benchmarks.load_test import ServerProcess
    else:  # run as a script: benchmarks/ is first on sys.path
        from load_test import ServerProcess
    from lqmf.base.settings import load_settings
    from server.runtime.backends.gguf_engine import engine_threads

    settings = load_settings()
    binary = LlamaTools.in_folder(tools_folder(settings)).server
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        sys.stderr.write(f"error: no llama-server at {binary}: run `make tools`\n")
        return 2
    threads = args.threads or engine_threads()
    model_path = args.model or eb.build_bench_model(ROOT / ".cache" / "bench", args.demo_dir / "demo-hf", threads)
    name = model_path.stem
    setup = eb.Setup(model_path.resolve(), name, threads, threads, args.slots or settings.parallel,
                     min(args.ctx or settings.context_length, gguf_context_length(model_path)), binary)
    figures = eb.figures_for(args.clients)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lqmf-gateway-bench-") as tmp:
        work = Path(tmp)
        (work / "empty").mkdir()
        with eb.llama_server_alone(setup, work) as (remote_url, _), \
                ServerProcess(work / "empty", env={"LQMF_AUTO_BENCHMARK_EVERY": "0", "LQMF_KEEP_ALIVE_S": "-1",
                                                   "LQMF_QUEUE_SIZE": str(max(args.clients) + setup.slots)}) as gateway:
            registered = httpx.post(f"{gateway.url}/endpoints", timeout=30,
                                    json={"name": name, "url": f"{remote_url}/v1", "model": name})
            registered.raise_for_status()
            urls = {"direct": remote_url, "gateway": gateway.url}
            for url in urls.values():
                eb.warm_up(url, {}, name, setup.slots, args.tokens)
            for r in range(args.rounds):
                for system, url in urls.items():
                    log.info("round %d/%d: %s", r + 1, args.rounds, SYSTEMS[system])
                    result = eb.measure(url, {}, args, name)
                    result.update(round=r + 1, system=system)
                    rounds.append(result)
                    log.info("  %s", {k: round(v, 1) for k, v in result["figures"].items()})
    results = {s: {f.key: (sum(x["figures"].get(f.key, 0.0) for x in rounds if x["system"] == s)
                           if f.key == "errors" else
                           eb.median([x["figures"].get(f.key, float("nan")) for x in rounds if x["system"] == s]))
                   for f in figures} for s in SYSTEMS}
    table = render(figures, results)
    print(f"\n{name}: {setup.threads} threads, {setup.slots} slots x {setup.slot_ctx} tokens, {args.tokens} new tokens "
          f"per request (greedy, ignore_eos); median of {args.rounds} round(s); /v1/completions\n")
    print(table)
    out = ROOT / "logs" / "gateway_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(eb.json_safe({"median": results, "rounds": rounds, "table": table,
                                            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
