"""The entry points a newcomer uses: the shell lists models; setup is idempotent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import DEMO_OUTPUTS, REPO


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_shell_lists_the_demo_models(demo_dir, home):
    proc = subprocess.run(
        [sys.executable, "cli/api_cli.py", "-c", "list models"], cwd=REPO, capture_output=True, text=True,
        env=_env(LQMF_HOME=str(home), LQMF_MODELS_DIR=str(demo_dir), COLUMNS="200"), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("demo-f16", "demo-q8_0", "demo-q4_k_m", "demo-gptq-4bit", "demo-bnb-nf4", "demo-bnb-int8", "demo-hf"):
        assert name in proc.stdout
    assert (home / "logs" / "lqmf.log").is_file()


def test_interactive_shell_starts_lists_and_exits(demo_dir, home):
    proc = subprocess.run(
        [sys.executable, "cli/api_cli.py"], cwd=REPO, input="help\nexit\n", capture_output=True, text=True,
        env=_env(LQMF_HOME=str(home), LQMF_MODELS_DIR=str(demo_dir), COLUMNS="200"), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo-q4_k_m" in proc.stdout and "Commands (" in proc.stdout and "start server" in proc.stdout


def test_demo_build_is_cached(demo_dir, tmp_path):
    """A second build with everything in place builds nothing and touches no file."""
    copy = tmp_path / "models"
    shutil.copytree(demo_dir, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    proc = subprocess.run(
        [sys.executable, "-m", "agents.demo"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=_env(LQMF_HOME=str(tmp_path / "home"), LQMF_MODELS_DIR=str(copy)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "built none" in proc.stderr
    for name in DEMO_OUTPUTS:
        assert name in proc.stderr.split("cached", 1)[1]
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*")} == before


def test_a_stale_output_is_rebuilt(demo_dir, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(demo_dir, copy)
    (copy / "demo-q8_0.gguf").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "agents.demo"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=_env(LQMF_HOME=str(tmp_path / "home"), LQMF_MODELS_DIR=str(copy)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "built ['demo-q8_0.gguf']" in proc.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_is_stamped_on_the_requirements_hash():
    """After `make setup`, a dry run plans no pip install; a different requirements hash would."""
    import hashlib

    digest = hashlib.sha256((REPO / "requirements.txt").read_bytes()).hexdigest()[:16]
    if not (REPO / ".venv" / f".installed-{digest}").exists():
        pytest.skip("run through `make test` (requirements.txt changed since the last install)")
    current = subprocess.run(["make", "-n", "install"], cwd=REPO, capture_output=True, text=True)
    assert current.returncode == 0 and "pip install" not in current.stdout
    changed = subprocess.run(["make", "-n", "install", "REQ_HASH=0123456789abcdef"], cwd=REPO,
                             capture_output=True, text=True)
    assert "pip install" in changed.stdout
