"""The factory from the shell, end to end: download from a local Hub, plan, quantize, record, load, chat."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lqmf.base.manifest import REQUIRED_KEYS, read_manifest
from memory.store import Store
from server.runtime.discovery import discover
from tests.conftest import REPO
from tests.fake_hub import FakeHub

REPO_ID = "lqmf-test/tiny-llama"


@pytest.fixture
def hub(demo_dir, tmp_path, monkeypatch):
    """The demo HF model served as a public, a private and a gated repo on 127.0.0.1."""
    fake = FakeHub(tokens={"good-token"})
    fake.add_folder(REPO_ID, demo_dir / "demo-hf")
    fake.add_folder("lqmf-test/private-llama", demo_dir / "demo-hf", private=True)
    fake.start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield fake
    fake.stop()


def env_for(home: Path, models: Path) -> dict[str, str]:
    return {**os.environ, "LQMF_HOME": str(home), "LQMF_MODELS_DIR": str(models), "TERM": "dumb", "NO_COLOR": "1",
            "COLUMNS": "200"}


def run_cli(args: list[str], home: Path, models: Path, stdin: str | None = None, timeout: float = 400):
    return subprocess.run([sys.executable, "cli/api_cli.py", *args], cwd=REPO, env=env_for(home, models),
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def models_with(demo_dir: Path, target: Path, *names: str) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = demo_dir / name
        if src.is_dir():
            shutil.copytree(src, target / name)
        else:
            shutil.copy2(src, target / name)
            if (demo_dir / f"{name}.lqmf.json").exists():
                shutil.copy2(demo_dir / f"{name}.lqmf.json", target / f"{name}.lqmf.json")
    return target


def runs(home: Path) -> list[dict]:
    store = Store(home / "memory" / "lqmf.db")
    try:
        return store.quantization_runs()
    finally:
        store.close()


def test_download_quantize_load_chat_from_the_shell(hub, home, tmp_path):
    """The newcomer's path: a repo id straight to a q4_k_m GGUF, then nf4, both loaded and chatted with."""
    models = tmp_path / "models"
    script = tmp_path / "factory.txt"
    script.write_text("\n".join([
        f"quantize {REPO_ID} to 4-bit gguf",  # not on disk: downloaded first, then planned and run
        "quantize tiny-llama to nf4",
        "list models",
        'chat with tiny-llama-q4_k_m "def main"',
        'chat with tiny-llama-bnb-nf4 "def main"',
        "list quantizations",
    ]) + "\n")
    done = run_cli(["--script", str(script)], home, models)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "downloaded" in out and "quantization plan" in out and "why:" in out
    found = {r.name: r for r in discover(models)}
    assert {"tiny-llama", "tiny-llama-q4_k_m", "tiny-llama-bnb-nf4"} <= set(found)
    assert found["tiny-llama"].format == "hf" and found["tiny-llama-q4_k_m"].level == "q4_k_m"
    assert found["tiny-llama-bnb-nf4"].format == "bnb" and all(r.usable for r in found.values())
    assert not [p.name for p in models.iterdir() if p.name.startswith(".") and "lqmf-tmp" in p.name]
    # Both chats streamed a reply from the new models ("N tokens in S s").
    assert len([line for line in out.splitlines() if " tokens in " in line and "tokens/s" in line]) == 2

    # Every run is in the history, complete, with the manifest, duration and peak memory it measured.
    recorded = runs(home)
    assert [(r["output"], r["method"], r["level"], r["status"]) for r in recorded] == [
        ("tiny-llama-bnb-nf4", "bnb", "nf4", "done"), ("tiny-llama-q4_k_m.gguf", "gguf", "q4_k_m", "done")]
    for run in recorded:
        assert run["wall_time_s"] > 0 and run["peak_rss_bytes"] > 50 * 2**20 and run["finished_at"] >= run["started_at"]
        assert run["plan"]["steps"] and run["plan"]["expected_size_bytes"] > 0
        output = models / run["output"]
        assert run["manifest"] == read_manifest(output)
        assert set(REQUIRED_KEYS) <= set(run["manifest"])
    # Lineage: the GGUF names the downloaded folder as its source (not the temporary f16 it went through).
    q4 = read_manifest(models / "tiny-llama-q4_k_m.gguf")
    assert Path(q4["source"]["path"]).name == "tiny-llama" and q4["source"]["format"] == "hf"
    downloaded = read_manifest(models / "tiny-llama")
    assert downloaded["source"]["hub"] == REPO_ID and downloaded["source"]["revision"]
    assert "tiny-llama-q4_k_m.gguf" in out and "done" in out  # list quantizations


def test_plan_is_confirmed_in_the_shell_and_declining_runs_nothing(demo_dir, home, tmp_path):
    models = models_with(demo_dir, tmp_path / "models", "demo-hf")
    declined = run_cli([], home, models, stdin="quantize demo-hf to int8 as kept-out\nn\nexit\n")
    assert declined.returncode == 0, declined.stderr
    assert "quantization plan" in declined.stdout and "Not run" in declined.stdout
    assert not (models / "kept-out").exists() and runs(home) == []
    accepted = run_cli([], home, models, stdin="quantize demo-hf to int8 as kept-in\ny\nlist models\nexit\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "quantized demo-hf → kept-in" in accepted.stdout
    assert "kept-in" in {r.name for r in discover(models)}
    assert [r["status"] for r in runs(home)] == ["done"]


def test_impossible_plans_are_refused_before_work_starts(demo_dir, home, tmp_path):
    models = models_with(demo_dir, tmp_path / "models", "demo-hf", "demo-q4_k_m.gguf", "demo-bnb-nf4")
    for line, reason in [
        ("quantize demo-q4_k_m to q2_k", "already quantized"),
        ("quantize demo-bnb-nf4 to 4-bit gguf", "already quantized"),
        ("quantize demo-hf to 3-bit gptq", "no 3-bit level"),
        ("quantize demo-hf to q4_k_m as demo-q4_k_m", "already exists"),
    ]:
        refused = run_cli(["-c", line], home, models)
        assert refused.returncode == 1, line
        assert "refused" in refused.stdout and reason in refused.stdout.replace("\n", " "), refused.stdout
    assert runs(home) == []  # nothing started, nothing recorded
    assert sorted(p.name for p in models.iterdir()) == sorted(
        ["demo-hf", "demo-q4_k_m.gguf", "demo-q4_k_m.gguf.lqmf.json", "demo-bnb-nf4"])


def _wait_for_running_run(db: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if db.exists():
            try:
                row = sqlite3.connect(db).execute("SELECT status FROM quantization_runs").fetchone()
            except sqlite3.OperationalError:
                row = None
            if row and row[0] == "running":
                return
        time.sleep(0.05)
    raise AssertionError("the run never started")


@pytest.mark.parametrize("how", ["ctrl-c", "kill-9"])
def test_interrupted_quantization_leaves_no_model(demo_dir, home, tmp_path, how):
    """Ctrl-C: partial files removed, run incomplete. kill -9: the hidden temporary is never discoverable,
    the next run sweeps it, and the history marks the dead run incomplete."""
    models = models_with(demo_dir, tmp_path / "models", "demo-hf")
    proc = subprocess.Popen([sys.executable, "cli/api_cli.py", "-c", "quantize demo-hf to q4_k_m as cut"], cwd=REPO,
                            env=env_for(home, models), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_running_run(home / "memory" / "lqmf.db", proc)
    time.sleep(1.0)  # inside the converter by now
    proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert "cut" not in {r.name for r in discover(models)}
    assert not (models / "cut.gguf").exists()
    if how == "ctrl-c":
        assert proc.returncode == 130, out + err
        assert "cancelled" in out
        assert [p.name for p in models.iterdir()] == ["demo-hf"]  # nothing half-written is left
    else:
        assert proc.returncode == -signal.SIGKILL
    recorded = runs(home)  # reopening marks a dead process's run incomplete
    assert [r["status"] for r in recorded] == ["incomplete"]
    if how == "ctrl-c":
        assert recorded[0]["error"] == "stopped with Ctrl-C"
    # The next run starts clean: stale temporaries swept, the output made in full.
    done = run_cli(["-c", "quantize demo-hf to q8_0 as whole"], home, models)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in models.iterdir()) == ["demo-hf", "whole.gguf", "whole.gguf.lqmf.json"]


def test_download_errors_are_explained(hub, home, tmp_path):
    models = tmp_path / "models"
    bad = run_cli(["-c", "download not//a repo"], home, models)
    assert bad.returncode == 1 and "error" in bad.stdout
    missing = run_cli(["-c", "download lqmf-test/no-such-model"], home, models)
    assert missing.returncode == 1 and "lqmf-test/no-such-model" in missing.stdout
    private = run_cli(["-c", "download lqmf-test/private-llama"], home, models)
    assert private.returncode == 1 and "login" in private.stdout.lower().replace("\n", " ")
    assert not models.exists() or not [r for r in discover(models)]
    # With a token the hub accepts (from the environment), the private repo downloads.
    ok = subprocess.run([sys.executable, "cli/api_cli.py", "-c", "download lqmf-test/private-llama"], cwd=REPO,
                        env={**env_for(home, models), "HF_TOKEN": "good-token"}, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert {r.name for r in discover(models)} == {"private-llama"}
    assert read_manifest(models / "private-llama")["source"]["hub"] == "lqmf-test/private-llama"


def test_iq_level_gets_an_importance_matrix_and_a_fidelity_report_card(demo_dir, home, tmp_path):
    """iq2_xxs needs an importance matrix: the plan adds one, the run records it, fidelity follows."""
    models = models_with(demo_dir, tmp_path / "models", "demo-hf")
    done = run_cli(["-c", "quantize demo-hf to iq2_xxs and fidelity --yes as tiny-iq2"], home, models)
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "needs an importance matrix" in out and "compute an importance matrix" in out
    assert "Fidelity against demo-hf" in out and "KLD mean" in out
    manifest = read_manifest(models / "tiny-iq2.gguf")
    imatrix = manifest["details"]["imatrix"]
    assert imatrix["chunks"] >= 2 and "built-in" in imatrix["calibration"]
    assert Path(imatrix["path"]).is_file() and Path(imatrix["path"]).parent.name == ".imatrix"
    assert manifest["tensor_types"].get("IQ2_XXS", 0) > 0
    assert {r.name for r in discover(models)} == {"demo-hf", "tiny-iq2"}  # the imatrix is not listed as a model
    (run,) = runs(home)
    assert run["status"] == "done" and run["plan"]["imatrix"] is True
    store = Store(home / "memory" / "lqmf.db")
    try:
        (fidelity,) = store.experiments(kind="fidelity")
        assert fidelity["status"] == "done" and set(fidelity["models"]) == {"demo-hf", "tiny-iq2"}
        kld = next(r["metrics"]["kld_mean"] for r in store.results(fidelity["id"]) if r["model"] == "tiny-iq2")
    finally:
        store.close()
    assert kld > 0 and f"{kld:.6f}" in out  # the table shows the recorded, measured number


def test_plan_says_when_llama_cpp_tools_must_be_built_first(demo_dir, home, tmp_path):
    models = models_with(demo_dir, tmp_path / "models", "demo-hf")
    env = {**env_for(home, models), "LQMF_TOOLS_DIR": str(tmp_path / "no-tools-yet")}
    shown = subprocess.run([sys.executable, "cli/api_cli.py"], cwd=REPO, env=env, capture_output=True, text=True,
                           input="quantize demo-hf to q4_k_m with imatrix as with-imx\nn\nexit\n", timeout=120)
    out = " ".join(shown.stdout.split())
    assert "1. build llama.cpp's llama-imatrix and llama-quantize (once" in out
    assert "3. compute an importance matrix" in out and "Not run" in out
    assert not (tmp_path / "no-tools-yet").exists() and runs(home) == []


def test_login_in_the_shell_stores_the_token_in_the_hubs_store(hub, home, tmp_path):
    models = tmp_path / "models"
    hf_home = Path(os.environ["HF_HOME"])
    refused = run_cli([], home, models, stdin="login\nnot-a-token\nexit\n")
    assert refused.returncode == 0 and "error" in refused.stdout and not (hf_home / "token").exists()
    accepted = run_cli([], home, models, stdin="login\ngood-token\ndownload lqmf-test/private-llama\nexit\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "logged in" in accepted.stdout and "good-token" not in accepted.stdout
    assert (hf_home / "token").read_text().strip() == "good-token"
    assert "downloaded lqmf-test/private-llama" in accepted.stdout  # the stored token is used from then on
    assert not list(models.rglob("token")) and not (REPO / "token").exists()  # only in the hub's own store
    # -c cannot prompt, so it says how to log in instead.
    once = run_cli(["-c", "login"], home, models)
    assert once.returncode == 1 and "HF_TOKEN" in once.stdout
