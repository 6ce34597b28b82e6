"""lqmf.base.processes: tethered children die with the process that started them; the runner streams their
output, and a timeout, a cancel or an error ends the child's whole process group."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from lqmf.base.processes import (
    ChildTimedOut,
    end_process,
    pid_alive,
    run_child_captured,
    run_child_lines,
    run_child_split,
    start_child,
    tethered,
)
from tests.conftest import REPO, interrupt

PARENT = """
import subprocess, sys, time
sys.path.insert(0, {repo!r})
from lqmf.base.processes import tethered
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


# A child that starts a grandchild in its own process group, says both pids, then waits.
WITH_GRANDCHILD = """
import os, subprocess, time
grandchild = subprocess.Popen(["sleep", "60"])
print(os.getpid(), grandchild.pid, flush=True)
time.sleep(60)
"""


def _gone(*pids: int) -> bool:
    """True once none of `pids` runs (waiting up to 5 s: the group ends asynchronously)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    return not any(_running(pid) for pid in pids)


def test_run_child_lines_hands_over_each_line_as_it_comes():
    script = ("import sys, time\n"
              "print('first', flush=True)\n"
              "time.sleep(1.0)\n"
              "sys.stdout.write('bar 1\\rbar 2\\rsecond\\n'); sys.stdout.flush()\n"
              "sys.exit(4)\n")
    seen: list[tuple[float, str]] = []
    code, output = run_child_lines([sys.executable, "-c", script], lambda line: seen.append((time.monotonic(), line)))
    ended = time.monotonic()
    assert code == 4 and [line for _, line in seen] == ["first", "bar 1", "bar 2", "second"]  # \r ends a line too
    assert ended - seen[0][0] > 0.7, "the first line came only when the child ended"
    assert output == "first\nbar 1\rbar 2\rsecond\n"


def test_run_child_captured_and_split():
    script = "import sys; print('out', flush=True); print('err', file=sys.stderr, flush=True); sys.exit(3)"
    assert run_child_captured([sys.executable, "-c", script]) == (3, "out\nerr\n")
    assert run_child_split([sys.executable, "-c", script]) == (3, "out\n", "err\n")


def test_a_timeout_ends_the_whole_group():
    started = time.monotonic()
    with pytest.raises(ChildTimedOut) as info:
        run_child_captured([sys.executable, "-c", WITH_GRANDCHILD], timeout_s=2)
    assert time.monotonic() - started < 15
    child, grandchild = (int(pid) for pid in info.value.output.split())
    assert _gone(child, grandchild)


def test_a_timeout_while_streaming_lines_ends_the_whole_group():
    lines: list[str] = []
    with pytest.raises(ChildTimedOut) as info:
        run_child_lines([sys.executable, "-c", WITH_GRANDCHILD], lines.append, timeout_s=2)
    child, grandchild = (int(pid) for pid in lines[0].split())
    assert info.value.output.strip() == lines[0] and _gone(child, grandchild)


def test_an_error_in_on_line_ends_the_whole_group():
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.extend(int(pid) for pid in line.split())
        raise ValueError("the reader gave up")

    with pytest.raises(ValueError, match="gave up"):
        run_child_lines([sys.executable, "-c", WITH_GRANDCHILD], on_line)
    assert len(pids) == 2 and _gone(*pids)


CANCELLED = """
import sys
sys.path.insert(0, {repo!r})
from lqmf.base.processes import run_child
run_child([sys.executable, "-c", {script!r}])
"""


def test_ctrl_c_in_the_waiting_parent_ends_the_whole_group():
    parent = subprocess.Popen([sys.executable, "-c", CANCELLED.format(repo=str(REPO), script=WITH_GRANDCHILD)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child, grandchild = (int(pid) for pid in parent.stdout.readline().split())
    stderr = interrupt(parent, timeout=30)
    assert parent.returncode != 0 and "KeyboardInterrupt" in stderr
    assert _gone(child, grandchild)


def test_end_process_sends_sigkill_when_sigterm_is_ignored():
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('ready', flush=True); time.sleep(60)")
    proc = start_child([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        started = time.monotonic()
        end_process(proc, grace_s=0.5)
        assert proc.returncode == -signal.SIGKILL and time.monotonic() - started < 5
    finally:
        proc.stdout.close()


def test_end_process_signals_a_child_outside_its_own_group_alone():
    proc = subprocess.Popen(["sleep", "60"])  # in this process's group: a group kill would end the tests too
    end_process(proc)
    assert proc.returncode == -signal.SIGTERM
    end_process(proc)  # a child already ended: nothing to do
