"""llama.cpp's own server engine: one tethered `llama-server` child per loaded GGUF model.

The child listens on 127.0.0.1 only, on a free port, and refuses every request without the key
the parent made for it (passed in its environment, never on its command line, which every user of
the machine can read). It dies with the parent (Linux's parent-death signal, see lqmf.base.tether), so a
`kill -9` of LQMF leaves no child behind. A child that dies on its own is reported, with the last
lines of its log, and started again by the next request, with backoff between failed starts.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from lqmf.base.errors import EngineUnavailable, ModelLoadError
from lqmf.base.processes import end_process, exit_words, free_port, start_child
from lqmf.base.settings import Settings
from lqmf.base.tools import LlamaTools, tools_folder
from server.runtime.gguf_smoke import IN_PROCESS, SERVER, engine_verdict

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 120.0  # a large model on a slow disk takes a while to map and warm up
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # between failed starts of one model's child
LOG_TAIL_LINES = 6


@dataclass(frozen=True)
class EngineChoice:
    """Which engine serves GGUF models, and why (said once, in the log and on the shell's screen).

    The smoke check (server.runtime.gguf_smoke) decides how each engine runs here: llama-server with
    --no-repack when repacking crashed it, and whether GGUF weights may run in this process at all.
    """

    binary: Optional[Path]  # llama-server when the server engine is used, else None
    reason: str
    server_args: tuple[str, ...] = ()  # extra llama-server arguments (--no-repack)
    repack: bool = True  # in-process loads repack weights (llama.cpp's default)
    inprocess_refusal: Optional[str] = None  # why GGUF weights must not run in this process, if they must not

    @property
    def server(self) -> bool:
        return self.binary is not None

    @property
    def name(self) -> str:
        """The engine's name for /health, GET /models and `status`."""
        return "llama-server" if self.server else "in-process"

    def describe(self) -> dict[str, Any]:
        """What /health and GET /models say about how GGUF is served, and why."""
        return {"engine": self.name, "reason": self.reason, "binary": str(self.binary) if self.binary else None,
                "repack": self.repack if not self.server else "--no-repack" not in self.server_args,
                "in_process_weights": self.inprocess_refusal or "allowed"}


def choose_engine(settings: Settings) -> EngineChoice:
    """The server engine when it is built (or asked for) and decodes on this CPU, else the in-process one, with
    the reason; either way as the smoke check found it runs here."""
    inproc = engine_verdict(IN_PROCESS, settings)
    in_process = {"repack": inproc.mode != "no-repack",
                  "inprocess_refusal": inproc.reason if inproc.mode == "off" else None}
    caveat = "" if inproc.mode == "repack" else f" ({inproc.reason})"
    if settings.gguf_engine == "in-process":
        return EngineChoice(None, f"GGUF models are served in-process (LQMF_GGUF_ENGINE=in-process){caveat}",
                            **in_process)
    tools = LlamaTools.in_folder(tools_folder(settings))
    if tools.server.is_file() and os.access(tools.server, os.X_OK):
        verdict = engine_verdict(SERVER, settings)
        if verdict.mode != "off":
            how = "" if verdict.mode == "repack" else f"; {verdict.reason}"
            return EngineChoice(tools.server, f"GGUF models are served by llama.cpp's llama-server ({tools.server})"
                                f"{how}", ("--no-repack",) if verdict.mode == "no-repack" else (), **in_process)
        missing = verdict.reason
    else:
        missing = (f"llama.cpp's llama-server is not built (no {tools.server}); run `make tools` to build it "
                   "(about 4 minutes; needs cmake and a C++ compiler)")
    if settings.gguf_engine == "server":
        raise ModelLoadError(f"LQMF_GGUF_ENGINE=server but {missing.split('; ')[0]}",
                             "run `make tools`, or set LQMF_GGUF_ENGINE=in-process")
    return EngineChoice(None, f"GGUF models are served in-process, one request at a time: {missing}{caveat}",
                        **in_process)


@dataclass(frozen=True)
class ChildSpec:
    """How one model's child runs."""

    binary: Path
    model_path: Path
    name: str
    slots: int
    slot_ctx: int  # tokens each slot's context holds (a request's prompt + generation)
    threads: int
    log_path: Path
    extra_args: tuple[str, ...] = ()  # from the EngineChoice (--no-repack where the smoke check needs it)


class EngineChild:
    """One llama-server process serving one model, started and watched by the parent."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.key = secrets.token_urlsafe(32)
        self.port = 0
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()  # the process handle and its state
        self._restart_lock = threading.Lock()  # one restart at a time (held while the child starts)
        self._serving = False  # set once the child answers /health
        self._stopping = False
        self.died: Optional[str] = None  # why the last child ended on its own, until the next start
        self.restarts = 0
        self._failures = 0
        self._next_start = 0.0  # monotonic time before which no restart is tried (backoff)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        """Running and serving (not merely started: a child still loading answers 503)."""
        return self._serving and self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        s = self.spec
        return [
            str(s.binary), "-m", str(s.model_path), "--host", "127.0.0.1", "--port", str(self.port),
            "-np", str(s.slots), "-c", str(s.slot_ctx * s.slots), "-t", str(s.threads), "-tb", str(s.threads),
            "--jinja", "--no-webui", "--metrics", "--slots", "--no-warmup", "-a", s.name,
            "--log-prefix", "--log-timestamps", *s.extra_args,
        ]

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child and wait until it serves (ModelLoadError with its log's last lines if not)."""
        with self._lock:
            self._stopping = False
            self._serving = False  # a child that died on its own left it set
            for attempt in range(3):  # another process may take the free port between probe and bind
                self.port = free_port()
                self._spawn()
                try:
                    self._wait_healthy()
                    self._serving = True
                    break
                except ModelLoadError:
                    tail = self.log_tail()
                    self._kill()
                    if "bind" in tail.lower() and attempt < 2:
                        continue
                    raise
            self.died = None
            log.info("engine for %s: llama-server pid %d on port %d (%d slots x %d tokens, %d threads)",
                     self.spec.name, self._proc.pid, self.port, self.spec.slots, self.spec.slot_ctx,
                     self.spec.threads)

    def _spawn(self) -> None:
        """Start the child from a thread that lives exactly as long as it does.

        The parent-death signal that tethers the child fires when the *thread* that started it ends,
        not the process: a child started from a load's short-lived thread would be killed the moment
        the load finished. This thread starts it, then waits for it and reports its death.
        """
        started: dict[str, Any] = {}
        ready = threading.Event()

        def run() -> None:
            try:
                started["proc"] = self._popen()
            except BaseException as exc:  # handed to start(), which raises it
                started["error"] = exc
                return
            finally:
                ready.set()
            self._watch(started["proc"])

        threading.Thread(target=run, daemon=True, name=f"lqmf-engine-{self.spec.name}").start()
        ready.wait()
        if "error" in started:
            raise ModelLoadError(f"could not start llama-server for {self.spec.name}: {started['error']}",
                                 f"check {self.spec.binary}")
        self._proc = started["proc"]

    def _popen(self) -> subprocess.Popen:
        s = self.spec
        s.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LLAMA_API_KEY": self.key}
        with open(s.log_path, "ab") as out:
            out.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.command())}\n".encode())
            out.flush()
            # Its own session (start_child): a Ctrl-C at the shell reaches LQMF, which then stops the child itself.
            return start_child(self.command(), stdout=out, env=env)

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        headers = {"Authorization": f"Bearer {self.key}"}
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ModelLoadError(
                    f"llama-server could not serve {self.spec.name} (it {exit_words(self._proc.returncode)}): "
                    f"{self.log_tail()}", f"see {self.spec.log_path}")
            try:
                if httpx.get(f"{self.url}/health", headers=headers, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.05)
        raise ModelLoadError(f"llama-server did not become ready for {self.spec.name} in {HEALTH_TIMEOUT_S:.0f} s",
                             f"see {self.spec.log_path}")

    def _watch(self, proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self._lock:
            if self._stopping or proc is not self._proc:  # stopped on purpose, or replaced
                return
            self.died = f"llama-server for {self.spec.name} {exit_words(code)}: {self.log_tail()}"
        log.error("%s (log: %s); the next request starts it again", self.died, self.spec.log_path)

    def ensure_running(self) -> None:
        """Restart a child that died, with backoff; EngineUnavailable (503) with the reason until it serves.

        Several slots' workers may find it dead at once: one restarts it, the others wait for that
        (the restart lock) and then find it alive, so exactly one new child is started.
        """
        if self.alive():
            return
        with self._restart_lock:
            with self._lock:
                if self.alive():
                    return
                if self._stopping:
                    raise EngineUnavailable(f"{self.spec.name}'s engine is stopping", "send the request again")
                wait = self._next_start - time.monotonic()
                if wait > 0:
                    raise EngineUnavailable(f"{self.died or 'the engine is down'}; next restart in {wait:.1f} s",
                                            "retry shortly")
            try:
                self.start()
            except ModelLoadError as exc:
                self._failures += 1
                delay = BACKOFF_S[min(self._failures - 1, len(BACKOFF_S) - 1)]
                self._next_start = time.monotonic() + delay
                self.died = str(exc.message)
                raise EngineUnavailable(f"restarting {self.spec.name}'s engine failed: {exc.message}",
                                        f"retry in {delay:.0f} s; see {self.spec.log_path}") from exc
            self._failures = 0
            self.restarts += 1
        log.warning("engine for %s restarted (restart %d)", self.spec.name, self.restarts)

    def stop(self) -> None:
        """End the child: SIGTERM, then SIGKILL after a grace period."""
        with self._lock:
            self._stopping = True
            self._kill()

    def _kill(self) -> None:
        self._serving = False
        proc, self._proc = self._proc, None  # first: its watcher then knows the end was ours
        if proc is not None:
            end_process(proc)

    def log_tail(self) -> str:
        """The child's last log lines, for error messages."""
        try:
            with open(self.spec.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in lines[-LOG_TAIL_LINES:]) or "(empty log)"


def engine_log_path(logs_dir: Path, name: str) -> Path:
    """Where a model's child writes its log (kept across restarts, appended)."""
    return logs_dir / "engines" / f"{name}.log"
