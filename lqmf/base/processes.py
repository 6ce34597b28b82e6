"""The one child-process runner every layer uses, and process facts for cleaning up after killed runs.

Every child LQMF starts is tethered (it dies with this process, even on SIGKILL) and leads its own
process group, so ending it ends what it started too (ninja and compilers, a converter's workers).
run_child / run_child_lines / run_child_captured / run_child_split run one to its end; start_child
starts a long-lived one (llama-server) that its owner ends with end_process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional

from lqmf.base.files import write_text_atomic


class ChildTimedOut(TimeoutError):
    """A child ran past its time limit; it and its process group were ended."""

    def __init__(self, cmd: list[str], timeout_s: float, output: str = "") -> None:
        super().__init__(f"{Path(cmd[0]).name} did not finish within {timeout_s:g} s")
        self.cmd = cmd
        self.timeout_s = timeout_s
        self.output = output  # what it wrote before it was ended


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
    """`cmd` wrapped so the child is killed when this process dies (see lqmf.base.tether)."""
    # Run as a file, not `-m`: the child's sys.path need not contain the project.
    return [sys.executable, str(Path(__file__).with_name("tether.py")), str(os.getpid()), "--", *cmd]


def start_child(cmd: list[str], *, stdout=None, stderr=subprocess.STDOUT, cwd: Optional[Path] = None,
                env: Optional[dict[str, str]] = None) -> subprocess.Popen:
    """Start `cmd` tethered, leading its own process group, stdin closed; stop it with end_process.

    stderr goes where stdout goes unless `stderr` says otherwise.
    """
    # Its own session: a Ctrl-C at the terminal reaches only LQMF, which then ends the child's group itself.
    return subprocess.Popen(tethered(cmd), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                            start_new_session=True)


def run_child(cmd: list[str], output: Optional[IO[str]] = None, cwd: Optional[Path] = None,
              env: Optional[dict[str, str]] = None, timeout_s: Optional[float] = None) -> int:
    """Run `cmd` (see start_child) to its end and return its exit status (-N: killed by signal N).

    Output goes to `output` (stdout and stderr together). On any exception in the waiting parent,
    Ctrl-C included, the child's whole group is ended first; past `timeout_s` too, then ChildTimedOut.
    """
    return _wait(start_child(cmd, stdout=output, cwd=cwd, env=env), cmd, timeout_s)


def run_child_lines(cmd: list[str], on_line: Callable[[str], None], cwd: Optional[Path] = None,
                    env: Optional[dict[str, str]] = None, timeout_s: Optional[float] = None) -> tuple[int, str]:
    """Run `cmd` like run_child, handing each output line to `on_line` as it comes; return (status, output).

    Lines end at \\n or \\r (tqdm redraws its bar with \\r). On any exception here, `on_line`'s included,
    the child's whole group is ended first; past `timeout_s` too, then ChildTimedOut (with the output so far).
    """
    proc = start_child(cmd, stdout=subprocess.PIPE, cwd=cwd, env=env)
    assert proc.stdout is not None
    expired = threading.Event()
    timer = None
    if timeout_s is not None:
        # The reading loop blocks in read1(): a timer ends the group, and the loop then sees end of output.
        def expire() -> None:
            if proc.poll() is None:
                expired.set()
                end_process(proc)

        timer = threading.Timer(timeout_s, expire)
        timer.daemon = True
        timer.start()
    chunks: list[bytes] = []
    pending = b""
    try:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            chunks.append(chunk)
            *lines, pending = re.split(rb"[\r\n]", pending + chunk)
            for line in lines:
                on_line(line.decode("utf-8", "replace"))
        if pending:
            on_line(pending.decode("utf-8", "replace"))
        code = proc.wait()
    except BaseException:
        end_process(proc)
        raise
    finally:
        if timer is not None:
            timer.cancel()
        proc.stdout.close()
    output = b"".join(chunks).decode("utf-8", "replace")
    if expired.is_set():
        raise ChildTimedOut(cmd, timeout_s or 0.0, output)
    return code, output


def run_child_captured(cmd: list[str], cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None,
                       timeout_s: Optional[float] = None) -> tuple[int, str]:
    """run_child, returning the exit status and the child's whole output (stdout and stderr together) as text."""
    code, output, _ = _captured(cmd, False, cwd, env, timeout_s)
    return code, output


def run_child_split(cmd: list[str], cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None,
                    timeout_s: Optional[float] = None) -> tuple[int, str, str]:
    """run_child_captured with stdout and stderr kept apart: (status, stdout, stderr)."""
    return _captured(cmd, True, cwd, env, timeout_s)


def _captured(cmd: list[str], apart: bool, cwd: Optional[Path], env: Optional[dict[str, str]],
              timeout_s: Optional[float]) -> tuple[int, str, str]:
    # Temporary files, not pipes: two pipes need a reader each or a chatty child blocks on a full one.
    def text(handle: IO[str]) -> str:
        handle.seek(0)
        return handle.read()

    with (tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as out,
          tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err):
        proc = start_child(cmd, stdout=out, stderr=err if apart else subprocess.STDOUT, cwd=cwd, env=env)
        try:
            code = _wait(proc, cmd, timeout_s)
        except ChildTimedOut as exc:
            exc.output = text(out) + (text(err) if apart else "")
            raise
        return code, text(out), text(err) if apart else ""


def _wait(proc: subprocess.Popen, cmd: list[str], timeout_s: Optional[float]) -> int:
    """Wait for a child of start_child; on any exception, or past `timeout_s`, end its group first."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        end_process(proc)
        raise ChildTimedOut(cmd, timeout_s or 0.0) from None
    except BaseException:
        end_process(proc)
        raise


def end_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop a child: SIGTERM, then SIGKILL when it has not ended after `grace_s`.

    A child that leads its own process group (every start_child child) is ended with its whole group,
    and what of the group outlives it (compilers under ninja) gets a last SIGKILL. Any other child
    (a plain Popen) is signalled alone: its group is its parent's.
    """
    group = _leads_own_group(proc)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            if group:
                os.killpg(proc.pid, sig)
            elif proc.poll() is None:
                proc.send_signal(sig)
            else:
                return
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _leads_own_group(proc: subprocess.Popen) -> bool:
    # Asked only of a child not yet reaped: a reaped child's pid may already be another process's.
    if proc.returncode is not None:
        return False
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def free_port() -> int:
    """A loopback port nothing listens on now (a child binds it; a lost race is retried by the caller)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def recorded_server(folder: Path, host: str, port: int) -> Iterator[Path]:
    """While the block runs, `folder`/PID.json says this process serves http://host:port (`show config` in any
    shell over the same LQMF_HOME reads it); the record goes when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / f"{os.getpid()}.json"
    url_host = f"[{host}]" if ":" in host else host
    write_text_atomic(record, json.dumps({"pid": os.getpid(), "host": host, "port": port, "started_at": time.time(),
                                          "url": f"http://{url_host}:{port}"}))
    try:
        yield record
    finally:
        record.unlink(missing_ok=True)


def running_servers(folder: Path) -> list[dict[str, Any]]:
    """The servers recorded in `folder` whose process still lives, oldest first (a killed one's record is dropped)."""
    found = []
    for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written or removed right now
        if isinstance(entry, dict) and isinstance(entry.get("pid"), int) and pid_alive(entry["pid"]):
            found.append(entry)
        else:
            record.unlink(missing_ok=True)
    return sorted(found, key=lambda entry: entry.get("started_at") or 0)


def exit_words(code: int) -> str:
    """A child's exit status in words: `killed by SIGSEGV`, `exited with 1`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"
