"""Test set-up: every writable path in a temp LQMF_HOME; demo models built or copied once per session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WATCHED = ("quantized-models", "logs", "memory", ".cache")
# The real tier's wheels and unpacked models: a cache it fills by design (make real-models fills it first).
REAL_CACHE = REPO / ".cache" / "real-models"
# The shell's intent classifier: `make setup` builds it; a test rebuilds it only when the examples changed since.
UNDERSTANDING = REPO / ".cache" / "understanding"
DEMO_OUTPUTS = (
    "demo-hf", "demo-f16.gguf", "demo-q8_0.gguf", "demo-q4_k_m.gguf",
    "demo-gptq-4bit", "demo-bnb-nf4", "demo-bnb-int8",
)


def _snapshot_checkout() -> dict[str, tuple[int, int]]:
    """Every file under the checkout's writable folders with its size and mtime, plus git status."""
    state: dict[str, tuple[int, int]] = {}
    for folder in WATCHED:
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and not path.is_relative_to(REAL_CACHE) and not path.is_relative_to(UNDERSTANDING):
                stat = path.stat()
                state[str(path.relative_to(REPO))] = (stat.st_size, stat.st_mtime_ns)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True, text=True
    ).stdout
    state["<git status>"] = (hash(status), 0)
    return state


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a non-interactive shell (`make test &`) inherits SIGINT
    # ignored, and so would every child it starts: the Ctrl-C tests would then test nothing real.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # Before any test module imports the settings: nothing may land in the checkout.
    home = Path(tempfile.mkdtemp(prefix="lqmf-test-home-"))
    config._lqmf_home = home  # type: ignore[attr-defined]
    os.environ["LQMF_HOME"] = str(home)
    os.environ.pop("LQMF_MODELS_DIR", None)
    tools = REPO / ".cache" / "tools"
    if tools.is_dir() and any(tools.glob("llama.cpp-converter-*")):
        os.environ["LQMF_TOOLS_DIR"] = str(tools)  # read only: make setup fetched it there
    from lqmf.base.environment import apply_environment_quirks

    apply_environment_quirks()
    config._lqmf_checkout_before = _snapshot_checkout()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    home = getattr(session.config, "_lqmf_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
    before = getattr(session.config, "_lqmf_checkout_before", None)
    if before is None:
        return
    after = _snapshot_checkout()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        sys.stderr.write(f"\nTESTS WROTE INTO THE CHECKOUT: {changed[:20]}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def settings():
    from lqmf.base.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide, read-only copy of the demo models (from the checkout when built, else built here)."""
    from agents.demo.build import build_demo
    from lqmf.base.settings import Settings

    target = tmp_path_factory.mktemp("demo-models")
    checkout = REPO / "quantized-models"
    if all((checkout / name).exists() for name in DEMO_OUTPUTS):
        for entry in checkout.iterdir():
            if entry.name.startswith("demo-"):
                if entry.is_dir():
                    shutil.copytree(entry, target / entry.name)
                else:
                    shutil.copy2(entry, target / entry.name)
    # Builds whatever is missing or stale; with a fresh copy this only verifies the cache.
    report = build_demo(Settings(models_dir_override=target))
    assert set(report.built) | set(report.cached) == set(DEMO_OUTPUTS)
    return target


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LQMF_HOME for one test."""
    monkeypatch.setenv("LQMF_HOME", str(tmp_path))
    monkeypatch.delenv("LQMF_MODELS_DIR", raising=False)
    return tmp_path


@pytest.fixture
def http(served):
    """An HTTP client of the module's `served` server (a module fixture yielding (url, manager, ...))."""
    import httpx

    with httpx.Client(base_url=served[0], timeout=120) as client:
        yield client


def wait_for_health(proc: subprocess.Popen, url: str, timeout: float, output: Callable[[], str] = lambda: "") -> None:
    """Wait until a child server answers GET url/health with 200; fail with its output if it ends or never does."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the server exited {proc.returncode}: {output()[-2000:]}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no /health within {timeout} s: {output()[-2000:]}"
        time.sleep(0.2)


def interrupt(proc: subprocess.Popen, timeout: float = 60) -> str:
    """Ctrl-C a child Python process and wait for it; its stderr (killed instead when it does not end)."""
    try:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return stderr
