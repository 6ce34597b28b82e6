"""Process facts shared by the pieces that clean up after killed runs."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tethered(cmd: list[str]) -> list[str]:
    """`cmd` wrapped so the child is killed when this process dies (see lqmf.tether)."""
    import sys
    from pathlib import Path

    # Run as a file, not `-m`: the child's sys.path need not contain the project.
    return [sys.executable, str(Path(__file__).with_name("tether.py")), str(os.getpid()), "--", *cmd]


def end_process(proc, grace_s: float = 5.0) -> None:
    """Stop a subprocess.Popen child: SIGTERM, then SIGKILL when it has not ended after `grace_s`."""
    import subprocess

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)
