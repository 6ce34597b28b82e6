"""Every demo output carries a complete manifest whose numbers match the files on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.quantization.gguf_quant import read_gguf_tensors
from lqmf.base.manifest import REQUIRED_KEYS, manifest_path_for, read_manifest, sha256_file
from lqmf.base.source import hf_parameter_count
from tests.conftest import DEMO_OUTPUTS


def _disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "lqmf.json")


@pytest.mark.parametrize("name", DEMO_OUTPUTS)
def test_manifest_is_complete_and_true(demo_dir, name):
    output = demo_dir / name
    manifest = read_manifest(output)
    assert manifest is not None, f"no manifest at {manifest_path_for(output)}"
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    assert not missing
    assert manifest["source"]["sha256"] and len(manifest["source"]["sha256"]) == 64
    assert manifest["tool_versions"]["lqmf"] and manifest["created_at"].startswith("20")
    assert manifest["wall_time_s"] > 0 and manifest["peak_rss_bytes"] > 50 * 2**20
    # Sizes and hashes are those of the files as they are now.
    base = output if output.is_dir() else output.parent
    assert manifest["weight_files"], "no weight files recorded"
    for entry in manifest["weight_files"]:
        file = base / entry["path"]
        assert file.stat().st_size == entry["size_bytes"]
        assert sha256_file(file) == entry["sha256"]
    assert manifest["size_bytes"] == _disk_size(output)
    # Bits per weight is recomputed here from the files and the parameter count.
    if output.suffix == ".gguf":
        report = read_gguf_tensors(output)
        assert manifest["tensor_types"] == report.histogram
        assert manifest["parameter_count"] == report.parameter_count
        assert manifest["bits_per_weight"] == pytest.approx(report.tensor_bytes * 8 / report.parameter_count, abs=1e-3)
    else:
        params = hf_parameter_count(demo_dir / "demo-hf")
        weight_bytes = sum(e["size_bytes"] for e in manifest["weight_files"])
        assert manifest["parameter_count"] == params
        assert manifest["bits_per_weight"] == pytest.approx(weight_bytes * 8 / params, abs=1e-3)
        assert manifest["tensor_types"], "no dtype histogram"


def test_bits_per_weight_orders_the_variants(demo_dir):
    bpw = {name: read_manifest(demo_dir / name)["bits_per_weight"] for name in DEMO_OUTPUTS}
    assert bpw["demo-q4_k_m.gguf"] < bpw["demo-q8_0.gguf"] < bpw["demo-f16.gguf"] < bpw["demo-hf"]
    assert 4.5 < bpw["demo-q4_k_m.gguf"] < 5.5 and 8.0 < bpw["demo-q8_0.gguf"] < 9.0
    assert bpw["demo-bnb-nf4"] < bpw["demo-bnb-int8"] < bpw["demo-hf"]


def test_q4_k_m_really_holds_q4_k(demo_dir):
    report = read_gguf_tensors(demo_dir / "demo-q4_k_m.gguf")
    assert report.histogram.get("Q4_K", 0) >= 20
    # Every weight matrix is a K-quant: nothing fell back to a legacy type.
    assert set(report.matrix_types.values()) <= {"Q4_K", "Q6_K"}
    manifest = read_manifest(demo_dir / "demo-q4_k_m.gguf")
    assert manifest["fallbacks"] == [] and manifest["warnings"] == []


def test_gptq_and_bnb_hold_quantized_tensors(demo_dir):
    gptq = read_manifest(demo_dir / "demo-gptq-4bit")["tensor_types"]
    assert gptq.get("I32", 0) > 0  # packed 4-bit qweight / qzeros
    nf4 = read_manifest(demo_dir / "demo-bnb-nf4")["tensor_types"]
    assert nf4.get("U8", 0) > 0
    int8 = read_manifest(demo_dir / "demo-bnb-int8")["tensor_types"]
    assert int8.get("I8", 0) > 0


def test_a_child_between_fork_and_exec_is_not_counted_twice():
    # A forked child shares this process's pages until it execs: counted, they doubled a run's measured peak
    # (a quantization "measured" at twice the test process's size whenever the sampler hit that moment).
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from lqmf.base.manifest import process_rss

    ballast = bytearray(256 * 2**20)
    for i in range(0, len(ballast), 4096):  # resident, not just reserved
        ballast[i] = 1
    own = psutil.Process().memory_info().rss
    pid = os.fork()
    if pid == 0:  # the copy: it only waits, as a child does before its exec
        time.sleep(30)
        os._exit(0)
    try:
        time.sleep(0.2)
        assert process_rss() < own * 1.3
        fill = "b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(30)"
        program = subprocess.Popen([sys.executable, "-c", fill])
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and process_rss() < own + 50 * 2**20:
                time.sleep(0.05)
            assert process_rss() >= own + 50 * 2**20  # a child running its own program counts
        finally:
            program.kill()
            program.wait()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    del ballast
