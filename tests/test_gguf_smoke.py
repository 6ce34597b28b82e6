"""The smoke check after every build: each GGUF type decoded by the built llama.cpp in a child, in process and
on llama-server; a type that crashes is named, and serving falls back (repacking off, or that engine off)
instead of taking the server or the shell down.

The crashes here are real SIGSEGVs of real children, standing in for ggml's AMX kernel on a Sapphire Rapids
CPU: a wrapper in front of the real Python or llama-server kills itself with SIGSEGV for the types and modes a
test names, and runs the real program otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lqmf.base.errors import ModelLoadError
from lqmf.base.generation import GenerationParams
from lqmf.base.settings import Settings
from lqmf.base.tools import LlamaTools, llama_cpp_version, tools_folder
from server.runtime.engine import choose_engine
from server.runtime.gguf_smoke import IN_PROCESS, SERVER, SMOKE_TYPES, engine_verdict, stored_verdict
from server.runtime.manager import ModelManager
from tests.test_server import start_server

REPO = Path(__file__).resolve().parents[1]
ASK = [{"role": "user", "content": "def main"}]


def crashing(tmp_path: Path, real: str, name: str, types: tuple[str, ...], also_without_repack: bool) -> Path:
    """A wrapper of `real` that dies of SIGSEGV when its arguments name a smoke file of one of `types`
    (and, unless `also_without_repack`, not when they hold --no-repack)."""
    patterns = "|".join(f"*smoke-{t}.gguf*" for t in types) or "*demo-f16.gguf*"
    spared = "" if also_without_repack else 'case "$*" in *--no-repack*) exec "$REAL" "$@";; esac\n'
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\nREAL="{real}"\ncase "$*" in *--quantize*) exec "$REAL" "$@";; esac\n{spared}'
                      f'case "$*" in {patterns}) kill -SEGV $$;; esac\nexec "$REAL" "$@"\n')
    script.chmod(0o755)
    return script


def fake_tools(tmp_path: Path, real: LlamaTools, types: tuple[str, ...], also_without_repack: bool) -> Path:
    """A tools folder like the real one whose llama-server crashes on `types`."""
    root = tmp_path / "tools"
    folder = root / f"llama.cpp-tools-{llama_cpp_version()}"
    folder.mkdir(parents=True)
    for entry in real.folder.iterdir():
        if entry.name not in ("llama-server", "gguf-smoke.json"):
            (folder / entry.name).symlink_to(entry)
    crashing(folder, str(real.server), "llama-server", types, also_without_repack)
    return root


@pytest.fixture(scope="module")
def real_tools(settings) -> LlamaTools:
    tools = LlamaTools.in_folder(tools_folder(settings))
    if not tools.ready():
        pytest.skip("llama.cpp's tools are not built (make tools)")
    return tools


def settings_for(tmp_path: Path, demo_dir: Path, tools: Path, **overrides) -> Settings:
    return Settings(home=tmp_path / "home", models_dir_override=demo_dir, tools_dir_override=tools, **overrides)


def test_this_build_decodes_every_type_on_both_engines(settings, real_tools):
    """What `make setup` checked here: every type decodes (repacking on or, where it crashed, off)."""
    for engine in (IN_PROCESS, SERVER):
        verdict = engine_verdict(engine, settings)
        assert verdict.mode in ("repack", "no-repack"), verdict.reason
        decoded = {c.qtype for c in verdict.cases if c.ok}
        assert decoded == set(SMOKE_TYPES), verdict.cases
        assert stored_verdict(engine, settings) is not None  # kept: the next start only reads it


def test_an_in_process_crash_is_named_and_served_with_repacking_off(tmp_path, demo_dir):
    python = crashing(tmp_path, sys.executable, "python", ("q4_0", "q8_0"), also_without_repack=False)
    settings = settings_for(tmp_path, demo_dir, tmp_path / "no-tools", gguf_engine="in-process")
    verdict = engine_verdict(IN_PROCESS, settings, python=str(python))
    assert verdict.mode == "no-repack"
    assert "q8_0" in verdict.reason and "SIGSEGV" in verdict.reason and "libggml-cpu" in verdict.reason
    assert {c.qtype for c in verdict.cases if not c.ok} == {"q4_0", "q8_0"}
    choice = choose_engine(settings)  # reads the stored verdict: no wrapper involved from here on
    assert choice.repack is False and choice.inprocess_refusal is None and "q8_0" in choice.reason
    manager = ModelManager(settings)
    try:
        out = manager.generate("demo-q8_0", ASK, GenerationParams(max_tokens=4, temperature=0))
        assert out.completion_tokens > 0
        assert manager.load("demo-q8_0").backend.repack is False
    finally:
        manager.close()


def test_a_crash_either_way_keeps_gguf_weights_out_of_the_process_and_the_rest_serves(tmp_path, demo_dir):
    python = crashing(tmp_path, sys.executable, "python", (), also_without_repack=True)  # f16 crashes, always
    settings = settings_for(tmp_path, demo_dir, tmp_path / "no-tools")
    verdict = engine_verdict(IN_PROCESS, settings, python=str(python))
    assert verdict.mode == "off" and "f16" in verdict.reason and "repacking off too" in verdict.reason
    manager = ModelManager(settings)
    try:
        with pytest.raises(ModelLoadError, match="cannot run in this process") as refused:
            manager.load("demo-q4_k_m")
        assert "SIGSEGV" in refused.value.message and "make tools" in refused.value.hint
        out = manager.generate("demo-hf", ASK, GenerationParams(max_tokens=4, temperature=0))
        assert out.completion_tokens > 0  # the rest keeps serving
    finally:
        manager.close()


def test_a_llama_server_crash_runs_the_engine_with_no_repack(tmp_path, demo_dir, real_tools):
    tools = fake_tools(tmp_path, real_tools, ("q4_k_m", "q4_1"), also_without_repack=False)
    settings = settings_for(tmp_path, demo_dir, tools)
    verdict = engine_verdict(SERVER, settings)
    assert verdict.mode == "no-repack" and "q4_k_m" in verdict.reason and "SIGSEGV" in verdict.reason
    server, manager, url = start_server(demo_dir, tmp_path / "home", tools_dir_override=tools)
    try:
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert health["gguf"]["engine"] == "llama-server" and health["gguf"]["repack"] is False
        assert "q4_k_m" in health["gguf"]["reason"]
        reply = httpx.post(f"{url}/models/demo-q4_k_m/chat", json={"message": "def main", "max_tokens": 4},
                           timeout=120)
        assert reply.status_code == 200, reply.text
        loaded = httpx.get(f"{url}/models", timeout=30).json()
        engine = next(m for m in loaded["models"] if m["name"] == "demo-q4_k_m")
        assert engine["engine"] == "llama-server" and engine["args"] == ["--no-repack"]
        assert loaded["gguf"]["engine"] == "llama-server"
    finally:
        server.stop()
        manager.close()


def test_a_llama_server_that_crashes_either_way_leaves_gguf_to_the_in_process_engine(tmp_path, demo_dir,
                                                                                      real_tools):
    tools = fake_tools(tmp_path, real_tools, ("q4_0",), also_without_repack=True)
    settings = settings_for(tmp_path, demo_dir, tools)
    choice = choose_engine(settings)
    assert not choice.server and "in-process" in choice.reason and "q4_0" in choice.reason
    assert "SIGSEGV" in choice.reason
    with pytest.raises(ModelLoadError, match="LQMF_GGUF_ENGINE=server"):
        choose_engine(settings.model_copy(update={"gguf_engine": "server"}))
    manager = ModelManager(settings)
    try:
        assert manager.generate("demo-q4_k_m", ASK, GenerationParams(max_tokens=4)).completion_tokens > 0
    finally:
        manager.close()


def test_a_server_with_a_fresh_home_serves_gguf_on_the_engine(tmp_path, demo_dir, real_tools):
    """LQMF_HOME moves the user's data only: the installation's llama-server still serves GGUF, and says so."""
    env = {k: v for k, v in os.environ.items() if k not in ("LQMF_TOOLS_DIR", "LQMF_HOME", "LQMF_MODELS_DIR")}
    env.update(LQMF_HOME=str(tmp_path / "fresh"), LQMF_MODELS_DIR=str(demo_dir), LQMF_PORT="0",
               LQMF_HOST="127.0.0.1")
    from lqmf.base.processes import free_port

    port = free_port()
    env["LQMF_PORT"] = str(port)
    proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                reply = httpx.get(f"{url}/health", timeout=5)
                if reply.status_code == 200:
                    health = reply.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert health is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert health["gguf"]["engine"] == "llama-server", health
        assert health["gguf"]["binary"].startswith(str(REPO / ".cache" / "tools"))
        reply = httpx.post(f"{url}/api/generate", json={"model": "demo-q4_k_m", "prompt": "def", "stream": False,
                                                         "options": {"num_predict": 4}}, timeout=120)
        assert reply.status_code == 200, reply.text
        models = httpx.get(f"{url}/models", timeout=30).json()
        assert {m["name"]: m["engine"] for m in models["models"]}["demo-q4_k_m"] == "llama-server"
        assert not (tmp_path / "fresh" / ".cache" / "tools").exists()  # nothing fetched or built again
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_verdict_follows_the_build(tmp_path, demo_dir):
    """Stored per library and CPU digest: a verdict for another build is not used."""
    settings = settings_for(tmp_path, demo_dir, tmp_path / "tools")
    verdict = engine_verdict(IN_PROCESS, settings)
    assert stored_verdict(IN_PROCESS, settings).key == verdict.key
    path = settings.tools_dir / "gguf-smoke.json"
    stored = json.loads(path.read_text())
    stored[IN_PROCESS]["key"] = "another-build"
    path.write_text(json.dumps(stored))
    assert stored_verdict(IN_PROCESS, settings) is None


def test_without_a_sample_gguf_serves_unchecked_and_says_so(tmp_path, monkeypatch):
    from server.runtime import gguf_smoke

    monkeypatch.setattr(gguf_smoke, "PROJECT_ROOT", tmp_path)  # no installation demo either
    settings = Settings(home=tmp_path / "home", models_dir_override=tmp_path / "empty",
                        tools_dir_override=tmp_path / "tools")
    choice = choose_engine(settings)
    assert choice.repack and choice.inprocess_refusal is None
    assert "not checked" in choice.reason and "make demo" in choice.reason
    assert not (tmp_path / "tools" / "gguf-smoke.json").exists()  # checked once there is a sample


def test_repacking_off_reaches_llama_cpp(tmp_path, demo_dir):
    """--no-repack (repacking_off) really loads the weights as stored: llama.cpp makes no CPU_REPACK buffer,
    where by default it does on a CPU with repacked kernels (its own log says which it did)."""
    from lqmf.base import gguf_check
    from lqmf.base.processes import run_child_split

    q4_0 = tmp_path / "q4_0.gguf"
    code, _, _ = run_child_split([sys.executable, gguf_check.__file__, "--quantize", str(demo_dir / "demo-f16.gguf"),
                                  str(q4_0), "q4_0", "2"])
    assert code == 0 and q4_0.is_file()
    logs = {}
    for flags in ((), ("--no-repack",)):
        code, stdout, stderr = run_child_split([sys.executable, gguf_check.__file__, str(q4_0), "2", *flags])
        assert code == 0 and gguf_check.read_answer(stdout)["ok"], stderr[-2000:]
        logs[flags] = stderr
    assert "CPU_REPACK model buffer" not in logs[("--no-repack",)]
    if "REPACK = 1" in logs[()]:  # this CPU has repacked kernels for q4_0 (AVX2, AVX-512, NEON, ...)
        assert "CPU_REPACK model buffer" in logs[()]
