"""Ctrl-C never poisons the process: an interrupted load finishes (or fails) on its own thread."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from lqmf.base.generation import GenerationParams
from lqmf.base.settings import Settings
from server.runtime.discovery import discover
from server.runtime.manager import ModelManager
from tests.test_shell import Terminal, shell_env


def test_ctrl_c_stops_the_wait_for_a_load_not_the_load(demo_dir, tmp_path):
    """A real SIGINT while the main thread waits for a load; the load completes and a later load joins it."""
    entered, gate = threading.Event(), threading.Event()

    def gated_discover(models_dir):
        entered.set()  # the load has begun (its first step is finding the model on disk)
        assert gate.wait(30)
        return discover(models_dir)

    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir), discover_fn=gated_discover)
    main = threading.get_ident()

    def press_ctrl_c() -> None:
        assert entered.wait(30)
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            manager.load("demo-q4_k_m")
        presser.join()
        assert time.monotonic() - started < 10  # the wait ended at once, while the load was still gated
        assert not manager.is_loaded("demo-q4_k_m")
        gate.set()
        deadline = time.monotonic() + 30
        while not manager.is_loaded("demo-q4_k_m"):  # nobody waits, yet the load completes
            assert time.monotonic() < deadline, "the interrupted load was abandoned"
            time.sleep(0.05)
        again = manager.load("demo-q4_k_m")
        assert manager.loads() == {"demo-q4_k_m": 1} and again.name == "demo-q4_k_m"
        params = GenerationParams(max_tokens=4, temperature=0, ignore_eos=True)
        reply = manager.generate("demo-q4_k_m", "What does shuffle do?", params)
        assert reply.completion_tokens > 0
    finally:
        gate.set()
        manager.close()


def wait_until_mapped(pid: int, library: str, timeout: float = 60) -> None:
    """Wait until a process has mapped a shared library (its import of the library has begun)."""
    deadline = time.monotonic() + timeout
    while library not in Path(f"/proc/{pid}/maps").read_text():
        assert time.monotonic() < deadline, f"{library} was never loaded"
        time.sleep(0.02)


# Where the Ctrl-C lands: a fixed time after the line, or a time after torch's own library is
# mapped, which is inside `import torch` on any machine (the window the old shell could not survive).
WHEN = [("line", 0.5), ("torch", 0.0), ("torch", 1.0)]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see torch's import begin")
@pytest.mark.parametrize("after, delay_s", WHEN, ids=[f"{a}+{d}s" for a, d in WHEN])
def test_ctrl_c_during_a_first_load_leaves_the_shell_able_to_load(demo_dir, home, after, delay_s):
    """The reproduction: compare demo-hf and demo-bnb-int8, Ctrl-C, then both still load and chat."""
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, demo_dir))
    term.expect(r"lqmf> ")
    term.send("compare demo-hf and demo-bnb-int8\r")
    if after == "torch":
        wait_until_mapped(term.pid, "libtorch")
    time.sleep(delay_s)
    term.send("\x03")
    term.expect(r"cancelled")
    term.expect(r"lqmf> ")
    for model in ("demo-hf", "demo-bnb-int8"):
        term.send(f'ask {model} "What does shuffle do?"\r')
        answer = term.expect(r"\d+ tokens in [\d.]+ s, [\d.]+ tokens/s \((stop|length)\)|error: .*", timeout=120)
        assert not answer.group(0).startswith("error"), answer.group(0)
        term.expect(r"lqmf> ")
    term.send("exit\r")
    assert term.wait() == 0
    assert "Could not import" not in term.buffer and "Traceback" not in term.buffer
