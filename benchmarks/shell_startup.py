"""Time from `python cli/api_cli.py` to its first prompt, on a pseudo-terminal (median of N runs).

    .venv/bin/python benchmarks/shell_startup.py [--runs 5]

Target: the prompt within 1.5 s. The shell lists the models it finds before prompting.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_to_prompt(timeout: float = 30.0) -> float:
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execvpe(sys.executable, [sys.executable, "cli/api_cli.py"], {**os.environ, "TERM": "dumb"})
    seen = b""
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                seen += os.read(fd, 65536)
                if b"lqmf> " in seen:
                    return time.perf_counter() - start
        raise RuntimeError(f"no prompt within {timeout}s: {seen[-500:]!r}")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times = [time_to_prompt() for _ in range(args.runs)]
    print(f"time to prompt over {args.runs} runs: median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s (target <= 1.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
