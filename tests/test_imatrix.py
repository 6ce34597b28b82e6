"""Importance matrices through llama.cpp's own tools, and the IQ levels they unlock, on the real demo model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from agents.quantization.calibration import load_calibration
from agents.quantization.gguf_quant import GGUF_LEVELS, convert_to_gguf, quantize_gguf, read_gguf_tensors
from agents.quantization.imatrix import DEFAULT_CHUNK, MIN_CHUNK, compute_imatrix
from agents.quantization.llama_tools import BUILD_KINDS, BUILD_RECORD, ensure_llama_tools
from lqmf.base.errors import QuantizationError, ToolUnavailable
from lqmf.base.manifest import read_manifest, sha256_file
from lqmf.base.tools import IMATRIX, LlamaTools, tools_folder
from server.runtime.discovery import discover
from tests.conftest import interrupt
from tests.loaders import greedy_twice
from tests.tiny_models import tiny_llama

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = "built-in: Python standard library docstrings"
NEEDS_IMATRIX = sorted(name for name, spec in GGUF_LEVELS.items() if spec.needs_imatrix)


@pytest.fixture(scope="session")
def tool_settings(tmp_path_factory):
    """Settings whose tools folder holds the built tools: the checkout's (`make tools`, read only) or a fresh build."""
    from lqmf.base.settings import Settings, load_settings

    shared = load_settings()
    if LlamaTools.in_folder(tools_folder(shared)).ready():
        return shared
    settings = Settings(tools_dir_override=tmp_path_factory.mktemp("llama-tools"))
    ensure_llama_tools(settings)
    return settings


@pytest.fixture(scope="module")
def f16(demo_dir):
    return demo_dir / "demo-f16.gguf"


@pytest.fixture(scope="module")
def imatrix(f16, tool_settings, tmp_path_factory):
    """The importance matrix of demo-f16 over the built-in calibration text, computed once."""
    out = tmp_path_factory.mktemp("imatrix") / "demo.imatrix.gguf"
    return compute_imatrix(f16, load_calibration(None), out, tool_settings, calibration=CALIBRATION)


def _tensor_bytes(path: Path) -> dict[str, bytes]:
    from gguf import GGUFReader

    return {t.name: bytes(np.asarray(t.data).tobytes()) for t in GGUFReader(str(path)).tensors}


def _children_named(pid: int, name: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() == name:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


# -- the tools -------------------------------------------------------------------------------------------
def test_tools_are_built_once_and_run(tool_settings):
    first = ensure_llama_tools(tool_settings)
    stamp = first.imatrix.stat().st_mtime_ns
    started = time.perf_counter()
    again = ensure_llama_tools(tool_settings)
    assert again == first and time.perf_counter() - started < 1 and first.imatrix.stat().st_mtime_ns == stamp
    record = json.loads((first.folder / BUILD_RECORD).read_text())
    assert record["how"] in BUILD_KINDS
    if record["how"] == "shared":  # the wheel's libraries travel with the binaries
        assert (first.folder / "libllama.so.0").is_file()
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([str(first.quantize), "--help"], capture_output=True, text=True, env=env)
    assert "--imatrix" in proc.stdout + proc.stderr


def test_missing_build_programs_are_explained(tmp_path, monkeypatch):
    from lqmf.base.settings import Settings

    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, no compiler
    with pytest.raises(ToolUnavailable, match="cmake") as info:
        ensure_llama_tools(Settings(tools_dir_override=tmp_path / "tools"))
    assert "apt-get install" in info.value.hint and not (tmp_path / "tools").exists()


# -- computing an importance matrix ----------------------------------------------------------------------
def test_imatrix_from_the_builtin_calibration(imatrix, f16):
    from gguf import GGUFReader

    assert imatrix.chunks > 0 and imatrix.chunk_size == 512  # the demo's context (1024) allows llama.cpp's 512
    assert imatrix.tokens == imatrix.chunks * 512 and imatrix.samples == 64
    assert imatrix.perplexity is not None and imatrix.perplexity > 1
    reader = GGUFReader(str(imatrix.path))
    assert reader.fields["general.type"].contents() == "imatrix"
    assert reader.fields["imatrix.chunk_count"].contents() == imatrix.chunks
    sums = {t.name.removesuffix(".in_sum2"): np.asarray(t.data) for t in reader.tensors if t.name.endswith(".in_sum2")}
    layer_matrices = {n for n, t in read_gguf_tensors(f16).matrix_types.items() if n.startswith("blk.")}
    assert layer_matrices and layer_matrices <= set(sums)  # every matrix a layer multiplies by has statistics
    assert all(np.isfinite(v).all() and (v >= 0).all() and v.sum() > 0 for v in sums.values())
    assert imatrix.sha256 == sha256_file(imatrix.path)
    manifest = read_manifest(imatrix.path)
    assert manifest["format"] == "imatrix" and manifest["details"]["calibration"] == CALIBRATION
    assert manifest["details"]["chunks"] == imatrix.chunks and manifest["source"]["sha256"] == sha256_file(f16)
    assert sorted(os.listdir(imatrix.path.parent)) == ["demo.imatrix.gguf", "demo.imatrix.gguf.lqmf.json"]
    records = discover(imatrix.path.parent)
    assert len(records) == 1 and not records[0].usable and "importance matrix" in records[0].reason


def test_chunks_follow_a_small_context_and_iq_fallbacks_are_listed(demo_dir, tmp_path, settings, tool_settings):
    """A model with a 256-token context gets 256-token chunks; its 64-wide rows push IQ2_XXS to IQ4_NL, listed."""
    src = tiny_llama(demo_dir / "demo-hf", tmp_path / "narrow", hidden=64, intermediate=128)
    convert_to_gguf(src, tmp_path / "narrow-f16.gguf", settings, "f16")
    report = compute_imatrix(tmp_path / "narrow-f16.gguf", load_calibration(None), tmp_path / "narrow.imatrix.gguf",
                             tool_settings)
    assert report.chunk_size == 256 and report.chunks > 0
    manifest = quantize_gguf(tmp_path / "narrow-f16.gguf", tmp_path / "narrow-iq2_xxs.gguf", "iq2_xxs",
                             imatrix=report.path, settings=tool_settings)
    assert manifest.fallbacks, "llama.cpp fell back but nothing was reported"
    assert {f["type"] for f in manifest.fallbacks} <= {"IQ4_NL", "Q4_0", "Q5_0", "Q5_1", "Q8_0", "F16"}
    assert any(f["type"] == "IQ4_NL" for f in manifest.fallbacks)
    assert "divisible by 256" in manifest.warnings[0]
    # No row here is 256 wide, so no layer matrix can hold a 256-block type: every one is listed.
    types = read_gguf_tensors(tmp_path / "narrow-iq2_xxs.gguf").matrix_types
    layer_matrices = {name for name in types if name.startswith("blk.")}
    assert layer_matrices <= {f["tensor"] for f in manifest.fallbacks}


def test_short_calibration_text_is_explained(f16, tmp_path, tool_settings):
    out = tmp_path / "short.imatrix.gguf"
    with pytest.raises(QuantizationError, match=r"only \d+ tokens; llama-imatrix needs at least 128") as info:
        compute_imatrix(f16, ["a few words of calibration text, far too few for even one chunk"], out, tool_settings)
    assert "more characters" in info.value.hint
    text = ["\n\n".join(load_calibration(None))[:2000]]  # some 650 tokens: under two chunks of 512
    with pytest.raises(QuantizationError, match="needs at least 1024"):
        compute_imatrix(f16, text, out, tool_settings, ctx=512)
    assert os.listdir(tmp_path) == []
    report = compute_imatrix(f16, text, out, tool_settings)  # no ctx asked: shorter chunks that the text fills
    assert MIN_CHUNK <= report.chunk_size < DEFAULT_CHUNK and report.chunks == 2


def test_killed_imatrix_child_fails_clearly_and_leaves_nothing(f16, tmp_path, tool_settings):
    samples = load_calibration(None) * 60  # minutes of work, so the kill lands mid-run
    killed: list[int] = []

    def kill_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for child in _children_named(os.getpid(), IMATRIX):
                child.kill()
                killed.append(child.pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    with pytest.raises(QuantizationError, match="killed by SIGKILL"):
        compute_imatrix(f16, samples, tmp_path / "killed.imatrix.gguf", tool_settings)
    killer.join()
    assert killed and os.listdir(tmp_path) == []


def test_ctrl_c_ends_the_child_and_leaves_nothing(f16, tmp_path, tool_settings):
    out_dir = tmp_path / "models"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from agents.quantization.calibration import load_calibration\n"
        "from agents.quantization.imatrix import compute_imatrix\n"
        "from lqmf.base.settings import load_settings\n"
        "compute_imatrix(Path(sys.argv[1]), load_calibration(None) * 60, Path(sys.argv[2]), load_settings())\n"
    )
    env = {**os.environ, "LQMF_TOOLS_DIR": str(tool_settings.tools_dir), "LQMF_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-c", script, str(f16), str(out_dir / "cut.imatrix.gguf")], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        children: list[psutil.Process] = []
        while not children and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            children = _children_named(proc.pid, IMATRIX)
        assert children, f"llama-imatrix never started: {proc.stderr.read() if proc.poll() is not None else ''}"
    finally:
        if not children and proc.poll() is None:
            proc.kill()
    time.sleep(0.5)  # let it get into its chunks
    stderr = interrupt(proc, timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    assert not any(child.is_running() for child in children)
    assert os.listdir(out_dir) == []


# -- quantizing with it -----------------------------------------------------------------------------------
def test_q4_k_m_with_an_imatrix_changes_the_weights_and_says_so(f16, imatrix, tmp_path, tool_settings):
    plain = quantize_gguf(f16, tmp_path / "plain-q4_k_m.gguf", "q4_k_m")
    guided = quantize_gguf(f16, tmp_path / "imx-q4_k_m.gguf", "q4_k_m", imatrix=imatrix.path, settings=tool_settings)
    assert guided.tensor_types == plain.tensor_types and guided.fallbacks == []
    before, after = _tensor_bytes(tmp_path / "plain-q4_k_m.gguf"), _tensor_bytes(tmp_path / "imx-q4_k_m.gguf")
    layer_matrices = [n for n in read_gguf_tensors(f16).matrix_types if n.startswith("blk.")]
    changed = [n for n in layer_matrices if before[n] != after[n]]
    assert changed == layer_matrices  # the imatrix weighs every layer's rounding
    record = read_manifest(tmp_path / "imx-q4_k_m.gguf")["details"]["imatrix"]
    assert record == {"path": str(imatrix.path.resolve()), "sha256": imatrix.sha256, "chunks": imatrix.chunks,
                      "chunk_size": 512, "calibration": CALIBRATION}
    assert "llama-quantize" in guided.details["quantizer"] and "imatrix" not in plain.details


@pytest.mark.parametrize("level", ["iq4_xs", "iq3_xxs", "iq2_m"])
def test_iq_levels_with_an_imatrix_load_and_generate(f16, imatrix, tmp_path, tool_settings, level):
    out = tmp_path / f"demo-{level}.gguf"
    manifest = quantize_gguf(f16, out, level, imatrix=imatrix.path, settings=tool_settings)
    spec = GGUF_LEVELS[level]
    assert manifest.tensor_types.get(spec.main_type, 0) > 0 and manifest.fallbacks == []
    assert manifest.bits_per_weight < read_manifest(f16)["bits_per_weight"] / 3
    first, second = greedy_twice(out, "gguf")
    assert first.strip() and first == second
    records = discover(tmp_path)
    assert [(r.name, r.level, r.bits, r.usable) for r in records] == [(f"demo-{level}", level, float(spec.bits), True)]


@pytest.mark.parametrize("level", NEEDS_IMATRIX)
def test_levels_that_need_an_imatrix_quantize_to_their_type_with_one(f16, imatrix, tmp_path, tool_settings, level):
    manifest = quantize_gguf(f16, tmp_path / f"demo-{level}.gguf", level, imatrix=imatrix.path, settings=tool_settings)
    assert manifest.tensor_types.get(GGUF_LEVELS[level].main_type, 0) > 0, manifest.tensor_types
    assert manifest.fallbacks == [] and manifest.details["imatrix"]["sha256"] == imatrix.sha256


@pytest.mark.parametrize("level", NEEDS_IMATRIX)
def test_iq_level_without_an_imatrix_is_refused(f16, tmp_path, level):
    with pytest.raises(QuantizationError, match="needs an importance matrix") as info:
        quantize_gguf(f16, tmp_path / f"demo-{level}.gguf", level)
    assert "add an importance matrix" in info.value.hint
    assert os.listdir(tmp_path) == []


def test_a_file_that_is_not_an_imatrix_is_refused(f16, tmp_path, tool_settings):
    with pytest.raises(QuantizationError, match="not a GGUF importance matrix"):
        quantize_gguf(f16, tmp_path / "x.gguf", "iq4_xs", imatrix=f16, settings=tool_settings)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_fidelity_with_and_without_the_imatrix(f16, imatrix, demo_dir, tmp_path, tool_settings):
    """KLD against demo-hf on held-out text: the imatrix-guided files stay close to the source, and the
    IQ levels it unlocks rank by their bits."""
    import shutil

    from agents.measure.fidelity import PositionStats, position_stats, scoring_chunks, summarize
    from lqmf.base.corpus import load_corpus
    from lqmf.base.settings import Settings
    from server.runtime.manager import ModelManager

    shutil.copytree(demo_dir / "demo-hf", tmp_path / "demo-hf")
    quantize_gguf(f16, tmp_path / "plain-q4_k_m.gguf", "q4_k_m")
    for level in ("q4_k_m", "iq3_xxs", "iq2_xxs"):
        quantize_gguf(f16, tmp_path / f"imx-{level}.gguf", level, imatrix=imatrix.path, settings=tool_settings)
    names = ["plain-q4_k_m", "imx-q4_k_m", "imx-iq3_xxs", "imx-iq2_xxs"]
    manager = ModelManager(Settings(home=tmp_path / "home", models_dir_override=tmp_path, keep_alive_s=-1))
    try:
        ids = manager.call("demo-hf", lambda b: b.tokenize(load_corpus().heldout, add_special=False))
        bos = manager.call("demo-hf", lambda b: b.tokenize("", add_special=True))
        parts: dict[str, list[PositionStats]] = {n: [] for n in names}
        for window, first in scoring_chunks(ids, 512, bos[0] if bos else None)[:8]:
            ref = manager.call("demo-hf", lambda b, window=window: b.logits(window))[first:-1]
            for name in names:
                logits = manager.call(name, lambda b, window=window: b.logits(window))[first:-1]
                parts[name].append(position_stats(ref, logits, window[first + 1:]))
    finally:
        manager.close()
    kld = {name: summarize(PositionStats.join(p)).kld_mean for name, p in parts.items()}
    sys.stderr.write(f"\nKLD vs demo-hf: {json.dumps({k: round(v, 5) for k, v in kld.items()})}\n")
    assert all(math.isfinite(v) and v > 0 for v in kld.values())
    # Measured on this demo: 0.00171 without, 0.00179 with the built-in imatrix (40 windows, an imatrix from
    # the training text: 0.00175 vs 0.00187). On a 4-layer model it does not help K-quants; it must not harm.
    assert kld["imx-q4_k_m"] < 1.25 * kld["plain-q4_k_m"]
    assert kld["imx-q4_k_m"] < kld["imx-iq3_xxs"] < kld["imx-iq2_xxs"]
