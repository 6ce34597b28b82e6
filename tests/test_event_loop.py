"""Nothing blocks the event loop: discovery is cached (invalidated by what changes on disk) and off the loop.

The real server (`python -m server`) serves a folder of 300 entries, 50 of them GGUF files, plus
the demo model. One client streams long generations while another process hammers /v1/models,
/api/tags and /models/available; the gaps between the stream's chunks, counted only while the
hammering runs, must stay under 20 ms at the 99th percentile.
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
from server.discovery import DiscoveryCache, discover
from tests.conftest import REPO

GGUF_COPIES = 50
ENTRIES = 300
GAP_P99_LIMIT_S = 0.020
HAMMER_S = 6.0
LISTINGS = ("/v1/models", "/api/tags", "/models/available")

# A separate process, so that its work never competes with the stream reader for this process's GIL.
HAMMER = r"""
import json, sys, threading, time
import httpx
url, seconds, per_path, interval = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
paths = ["/v1/models", "/api/tags", "/models/available"]
counts = {p: 0 for p in paths}
bad = []
start = time.time()
def hammer(path):
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.time() - start < seconds:
            sent = time.time()
            r = client.get(path)
            if r.status_code != 200:
                bad.append((path, r.status_code))
            counts[path] += 1
            time.sleep(max(0.0, interval - (time.time() - sent)))
threads = [threading.Thread(target=hammer, args=(p,)) for p in paths for _ in range(per_path)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"start": start, "end": time.time(), "counts": counts, "bad": bad[:10]}))
"""


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem: a copy will do
        shutil.copy2(source, target)


def fill(folder: Path, demo_dir: Path) -> None:
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


# -- the cache itself -----------------------------------------------------------------------------

def test_cache_inspects_only_what_changed(demo_dir, tmp_path):
    fill(tmp_path, demo_dir)
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

    # Rewritten in place (same name, same folder mtime): the file's own stat gives it away.
    data = (tmp_path / "copy-007-q8_0.gguf").read_bytes()
    (tmp_path / "copy-007-q8_0.gguf").unlink()
    (tmp_path / "copy-007-q8_0.gguf").write_bytes(data[: len(data) // 3])
    broken = {r.name: r for r in cache.records(tmp_path)}["copy-007-q8_0"]
    assert not broken.usable and "unreadable GGUF" in broken.reason

    # A file inside a model folder changes: the folder is inspected again.
    config = tmp_path / "hf-000" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}))
    assert {r.name: r for r in cache.records(tmp_path)}["hf-000"].format == "bnb"


def test_cache_hands_out_copies(demo_dir, tmp_path):
    _link(demo_dir / "demo-q8_0.gguf", tmp_path / "a.gguf")
    cache = DiscoveryCache()
    record = cache.records(tmp_path)[0]
    record.name, record.usable = "renamed", False
    again = cache.records(tmp_path)[0]
    assert again.name == "a" and again.usable


def test_cache_is_single_flight_under_threads(demo_dir, tmp_path):
    fill(tmp_path, demo_dir)
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
    fill(folder, demo_dir)
    with ServerProcess(folder, env={"LQMF_AUTO_BENCHMARK_EVERY": "0"}) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert len(client.get("/models/available").json()["models"]) == ENTRIES - 83  # the .txt files are not models
            assert client.post("/models/demo-q4_k_m/load").status_code == 200
        yield server, folder


def _stream_arrivals(url: str, stop: threading.Event, streams: list[list[float]]) -> None:
    """Long greedy streams, one after another; the arrival time of every read, per stream."""
    body = {"model": "demo-q4_k_m", "messages": [{"role": "user", "content": "What does shuffle do?"}],
            "stream": True, "max_tokens": 600, "ignore_eos": True, "temperature": 0}
    with httpx.Client(base_url=url, timeout=120) as client:
        while not stop.is_set():
            arrivals: list[float] = []
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                for _ in response.iter_raw():
                    arrivals.append(time.time())
            streams.append(arrivals[1:])  # from the first chunk on: time to first token is not a gap


def measure_gaps(url: str, per_path: int = 1, interval_s: float = 0.0) -> dict:
    """Stream while another process hammers the listings; the gaps that fell inside the hammering."""
    stop = threading.Event()
    streams: list[list[float]] = []
    reader = threading.Thread(target=_stream_arrivals, args=(url, stop, streams))
    reader.start()
    time.sleep(0.5)
    try:
        out = subprocess.run([sys.executable, "-c", HAMMER, url, str(HAMMER_S), str(per_path), str(interval_s)],
                             capture_output=True, text=True, timeout=HAMMER_S + 120, cwd=REPO)
    finally:
        stop.set()
        reader.join(timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    hammer = json.loads(out.stdout)
    gaps = sorted(b - a for arrivals in streams for a, b in zip(arrivals, arrivals[1:])
                  if a >= hammer["start"] and b <= hammer["end"])
    p99 = gaps[int(len(gaps) * 0.99)] if gaps else float("inf")
    return {"gaps": len(gaps), "p50_ms": gaps[len(gaps) // 2] * 1000 if gaps else None, "p99_ms": p99 * 1000,
            "max_ms": gaps[-1] * 1000 if gaps else None, "requests": hammer["counts"], "bad": hammer["bad"]}


def test_stream_is_smooth_while_the_listings_are_hammered(crowded):
    server, _ = crowded
    figures = measure_gaps(server.url)
    sys.stderr.write(f"\ninter-chunk gaps while hammering: {figures}\n")
    assert not figures["bad"], figures
    assert all(n >= 5 for n in figures["requests"].values()), figures  # the listings really were hammered
    assert figures["gaps"] >= 200, figures
    assert figures["p99_ms"] < GAP_P99_LIMIT_S * 1000, figures


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
