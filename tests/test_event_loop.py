"""Nothing blocks the event loop: discovery is cached (invalidated by what changes on disk) and off the loop.

The real server (`python -m server`) serves a folder of 300 entries, 50 of them GGUF files, plus
the demo model. One client streams long generations while another process hammers /v1/models,
/api/tags and /models/available; the gaps between the stream's chunks, counted only while the
hammering runs, must stay under 20 ms at the 99th percentile.

The hammer sends each listing at a fixed rate (20 per second each, 60 in all) rather than as fast
as it can: on a 2-core machine an unbounded client measures how much CPU is left, not whether the
loop is blocked. Without the cache each listing parses the 50 GGUF headers (seconds of Python
holding the GIL): they pile up in the threadpool the routes share, and the stream stalls for
seconds. The machine is shared, so a measurement that misses the limit narrowly (by less than
twice) is taken again, up to three times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.load_test import ServerProcess
from server.runtime.discovery import RACY_NS, DiscoveryCache, discover
from tests.conftest import REPO

GGUF_COPIES = 50
ENTRIES = 300
GAP_P99_LIMIT_MS = 20.0
HAMMER_S = 5.0
HAMMER_INTERVAL_S = 0.05  # per listing: 20 requests a second each
ATTEMPTS = 3

# A separate process, so that its work never competes with the stream reader for this process's GIL. It is
# an open loop: requests go out at a fixed rate whether or not the earlier ones were answered, as from
# many clients polling.
HAMMER = r"""
import asyncio, json, sys, time
import httpx
url, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
paths = ["/v1/models", "/api/tags", "/models/available"]
counts = {p: 0 for p in paths}
bad = []

async def get(client, path):
    r = await client.get(path)
    if r.status_code != 200:
        bad.append((path, r.status_code))
    counts[path] += 1

async def main():
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        start = time.time()
        tasks = []
        tick = 0
        while time.time() - start < seconds:  # open loop: a request every interval, answered or not
            tasks += [asyncio.create_task(get(client, p)) for p in paths]
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * interval - time.time()))
        sent_until = time.time()
        done, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        print(json.dumps({"start": start, "end": sent_until, "counts": counts, "unanswered": len(pending),
                          "bad": bad[:10]}))

asyncio.run(main())
"""


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem: a copy will do
        shutil.copy2(source, target)


def fill(folder: Path, demo_dir: Path) -> int:
    """The demo model, 50 GGUF files and other entries discovery has to look at: 300 in all."""
    _link(demo_dir / "demo-q4_k_m.gguf", folder / "demo-q4_k_m.gguf")
    for i in range(GGUF_COPIES):
        _link(demo_dir / "demo-q8_0.gguf", folder / f"copy-{i:03d}-q8_0.gguf")
    for i in range(ENTRIES - GGUF_COPIES - 1):
        if i % 3 == 2:
            (folder / f"notes-{i:03d}.txt").write_text("not a model")
            continue
        model = folder / f"hf-{i:03d}"
        model.mkdir()
        config = {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 1024,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64}
        if i % 3 == 1:
            config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
        (model / "config.json").write_text(json.dumps(config))
        (model / "tokenizer_config.json").write_text("{}")
    assert len(os.listdir(folder)) == ENTRIES
    return ENTRIES - len(list(folder.glob("*.txt")))  # models discovery lists, usable or not


# -- the cache itself -----------------------------------------------------------------------------

def settled(folder: Path) -> Path:
    """Wait until the entries are older than the cache's racy window, so that they count as stable."""
    time.sleep(RACY_NS / 1e9 + 0.05)
    return folder


def test_cache_inspects_only_what_changed(demo_dir, tmp_path):
    fill(tmp_path, demo_dir)
    settled(tmp_path)
    cache = DiscoveryCache()
    first = cache.records(tmp_path)
    assert [r.to_dict() for r in first] == [r.to_dict() for r in discover(tmp_path)]
    assert cache.inspections == ENTRIES
    assert cache.records(tmp_path) == first and cache.inspections == ENTRIES  # nothing changed: nothing parsed

    _link(demo_dir / "demo-q8_0.gguf", tmp_path / "newcomer.gguf")
    names = {r.name for r in cache.records(tmp_path)}
    assert "newcomer" in names and cache.inspections == ENTRIES + 1  # one new file, one inspection

    (tmp_path / "newcomer.gguf").unlink()
    assert "newcomer" not in {r.name for r in cache.records(tmp_path)}
    assert cache.inspections == ENTRIES + 1

    # Replaced by a truncated file of the same name (unlinked first: it is a hard link to the demo model).
    data = (tmp_path / "copy-007-q8_0.gguf").read_bytes()
    (tmp_path / "copy-007-q8_0.gguf").unlink()
    (tmp_path / "copy-007-q8_0.gguf").write_bytes(data[: len(data) // 3])
    broken = {r.name: r for r in cache.records(tmp_path)}["copy-007-q8_0"]
    assert not broken.usable and "unreadable GGUF" in broken.reason

    # A file inside a model folder is rewritten in place (the folder's own mtime stays): inspected again.
    config = tmp_path / "hf-000" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}))
    assert {r.name: r for r in cache.records(tmp_path)}["hf-000"].format == "bnb"


def test_a_change_within_the_timestamp_granularity_is_not_missed(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "tokenizer.json").write_text("{}")
    config = model / "config.json"
    config.write_text(json.dumps({"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}))
    stamp = config.stat().st_mtime_ns
    cache = DiscoveryCache()
    assert cache.records(tmp_path)[0].format == "bnb"
    # Rewritten in place to the same size within one timestamp tick: its stat cannot tell.
    config.write_text(json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4}}).ljust(
        len(config.read_text())))
    os.utime(config, ns=(stamp, stamp))
    assert cache.records(tmp_path)[0].format == "gptq"


def test_cache_hands_out_copies(demo_dir, tmp_path):
    _link(demo_dir / "demo-q8_0.gguf", tmp_path / "a.gguf")
    cache = DiscoveryCache()
    record = cache.records(tmp_path)[0]
    record.name, record.usable = "renamed", False
    again = cache.records(tmp_path)[0]
    assert again.name == "a" and again.usable


def test_cache_is_single_flight_under_threads(demo_dir, tmp_path):
    fill(tmp_path, demo_dir)
    settled(tmp_path)
    cache = DiscoveryCache()
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(len(cache.records(tmp_path)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and cache.inspections == ENTRIES  # eight callers, each entry parsed once


# -- the real server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crowded(demo_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crowded-models")
    listed = fill(folder, demo_dir)
    # The stream batch interval is pinned: the gaps measured are the loop's, not a configured batching.
    # So is the GGUF engine: the stream probes this server's loop. On the llama-server engine its tokens
    # come from a child whose threads (one per core) compete with the server and the hammer for the cores,
    # and the gaps measure how many cores the machine has (p99 about 300 ms on 2 cores, 25-40 ms with one
    # engine thread), not the loop. In process, generation and the listings share this process and its
    # GIL, so a blocked loop shows at once. (Until the tools stopped moving with LQMF_HOME, this server's
    # fresh home had no llama-server, and it ran in process without saying so.)
    env = {"LQMF_AUTO_BENCHMARK_EVERY": "0", "LQMF_STREAM_BATCH_MS": "2", "LQMF_GGUF_ENGINE": "in-process"}
    with ServerProcess(folder, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert len(client.get("/models/available").json()["models"]) == listed  # parses every header once
            assert client.post("/models/demo-q4_k_m/load").status_code == 200
        yield server, folder


def _stream_arrivals(url: str, stop: threading.Event, streams: list[list[float]], errors: list[str]) -> None:
    """Long greedy streams, one after another; the arrival time of every read, per stream."""
    body = {"model": "demo-q4_k_m", "messages": [{"role": "user", "content": "What does shuffle do?"}],
            "stream": True, "max_tokens": 600, "ignore_eos": True, "temperature": 0}
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            arrivals: list[float] = []
            try:
                with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        errors.append(f"stream answered {response.status_code}")
                        return
                    for _ in response.iter_raw():
                        arrivals.append(time.time())
            except httpx.HTTPError as exc:
                errors.append(f"stream failed: {exc!r}")
                return
            finally:
                streams.append(arrivals[1:])  # from the first chunk on: time to first token is not a gap


def measure_gaps(url: str, interval_s: float = HAMMER_INTERVAL_S, hammer_s: float = HAMMER_S) -> dict:
    """Stream while another process hammers the listings; the gaps that fell inside the hammering."""
    stop = threading.Event()
    streams: list[list[float]] = []
    errors: list[str] = []
    reader = threading.Thread(target=_stream_arrivals, args=(url, stop, streams, errors))
    reader.start()
    time.sleep(0.5)
    try:
        out = subprocess.run([sys.executable, "-c", HAMMER, url, str(hammer_s), str(interval_s)],
                             capture_output=True, text=True, timeout=hammer_s + 120, cwd=REPO)
    finally:
        stop.set()
        reader.join(timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    hammer = json.loads(out.stdout)
    gaps = sorted(b - a for arrivals in streams for a, b in zip(arrivals, arrivals[1:], strict=False)
                  if a >= hammer["start"] and b <= hammer["end"])
    pick = lambda q: round(gaps[min(len(gaps) - 1, int(len(gaps) * q))] * 1000, 1) if gaps else float("inf")  # noqa: E731
    return {"gaps": len(gaps), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": pick(1.0),
            "answered": hammer["counts"], "unanswered": hammer["unanswered"], "bad": hammer["bad"], "errors": errors,
            "load": round(os.getloadavg()[0], 1)}


def test_stream_is_smooth_while_the_listings_are_hammered(crowded):
    server, _ = crowded
    attempts = []
    for _ in range(ATTEMPTS):
        figures = measure_gaps(server.url)
        attempts.append(figures)
        sys.stderr.write(f"\ninter-chunk gaps while hammering: {figures}\n")
        assert not figures["bad"] and not figures["errors"], figures
        assert figures["gaps"] >= 200, figures  # the stream really ran during the hammering
        if figures["p99_ms"] < GAP_P99_LIMIT_MS or figures["p99_ms"] > 2 * GAP_P99_LIMIT_MS:
            break  # passed, or failed by far more than the machine's noise
    assert figures["p99_ms"] < GAP_P99_LIMIT_MS, attempts
    # The listings kept up with the hammer: every request was answered within 10 s of the last one sent.
    assert figures["unanswered"] == 0 and min(figures["answered"].values()) >= HAMMER_S / HAMMER_INTERVAL_S * 0.9


def test_listing_follows_the_folder(crowded, demo_dir):
    server, folder = crowded
    with httpx.Client(base_url=server.url, timeout=120) as client:
        def names() -> dict[str, dict]:
            return {m["name"]: m for m in client.get("/models/available").json()["models"]}

        assert "late-arrival" not in names()
        _link(demo_dir / "demo-q8_0.gguf", folder / "late-arrival.gguf")
        assert names()["late-arrival"]["usable"]
        assert "late-arrival" in {m["id"] for m in client.get("/v1/models").json()["data"]}
        (folder / "late-arrival.gguf").unlink()
        assert "late-arrival" not in names()
        assert "late-arrival" not in {m["name"] for m in client.get("/api/tags").json()["models"]}
        assert client.post("/models/late-arrival/load").status_code == 404
