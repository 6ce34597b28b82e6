"""`python lqmf/base/tether.py PARENT_PID -- CMD ...`: run CMD so that it dies with the process that started it.

A killed quantization (SIGKILL cannot be caught) must not leave its converter or llama.cpp tool
running on and writing files after the next run has cleaned up. Linux's parent-death signal does
that, and it survives exec; it is set here, in the child, because setting it between fork and
exec (preexec_fn) is unsafe in a parent that runs threads.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python lqmf/base/tether.py PARENT_PID -- CMD [ARGS...]\n")
        return 2
    parent, cmd = int(argv[0]), argv[2:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            sys.stderr.write(f"prctl failed: {os.strerror(ctypes.get_errno())}\n")
            return 1
        if os.getppid() != parent:  # the parent died before the signal was armed
            return 1
    os.execvp(cmd[0], cmd)
    return 127  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
