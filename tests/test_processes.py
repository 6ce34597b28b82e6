"""Children started through lqmf.processes.tethered die with the process that started them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from lqmf.processes import pid_alive, tethered
from tests.conftest import REPO

PARENT = """
import subprocess, sys, time
sys.path.insert(0, {repo!r})
from lqmf.processes import tethered
child = subprocess.Popen(tethered(["sleep", "60"]))
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_tethered_child_dies_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(repo=str(REPO))], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.5)  # the tether has armed the signal and exec'd sleep
    assert pid_alive(child)
    with open(f"/proc/{child}/cmdline", "rb") as handle:
        assert handle.read().split(b"\0")[0] == b"sleep"  # exec replaced the launcher
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.05)
    assert not _running(child)


def test_tethered_runs_the_command_and_passes_its_status():
    done = subprocess.run(tethered([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"]),
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (3, "out\n")


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
