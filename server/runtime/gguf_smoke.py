"""Does the built llama.cpp decode every GGUF type on this CPU? Checked in tethered children, remembered per build.

A CPU kernel that crashes (ggml's AMX matrix multiply on Sapphire Rapids, llama.cpp #20824, is the
known one) kills whatever process runs it. So each GGUF type is decoded first in a child: in
process (llama-cpp-python, what embeddings, fidelity and the in-process engine run) and on
llama-server (the engine). A type that crashes is tried again with weight repacking off. The verdict
per engine is then one of:

- "repack": every type decodes as llama.cpp loads it by default;
- "no-repack": some type crashed, and every type decodes with repacking off (that is how it then runs);
- "off": some type crashes either way (that engine is not used; the reason names library and type);
- "unchecked": nothing to check with (no demo-f16.gguf yet) or not built.

The verdict is kept in the tools folder, keyed by a digest of the libraries and of the CPU, so a
rebuild or another machine checks again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from lqmf.base import gguf_check
from lqmf.base.atomic import atomic_output
from lqmf.base.native_build import libraries_digest, wheel_library_dir
from lqmf.base.processes import ChildTimedOut, end_process, exit_words, free_port, run_child_split, start_child
from lqmf.base.settings import PROJECT_ROOT, Settings
from lqmf.base.tools import LlamaTools, tools_folder

log = logging.getLogger(__name__)

IN_PROCESS = "in-process"
SERVER = "llama-server"
ENGINES = (IN_PROCESS, SERVER)
SAMPLE = "demo-f16.gguf"
# f16 as the sample is; the others made from it on the fly. q8_0, q4_0, q4_1 and q4_K are the types
# ggml repacks (into its AMX buffer on AMX CPUs, else into interleaved AVX2/NEON layouts).
SMOKE_TYPES = ("f16", "q8_0", "q4_k_m", "q4_0", "q4_1")
VERDICT_FILE = "gguf-smoke.json"
CHILD_TIMEOUT_S = 120.0
SERVER_TOKENS = 4


def smoke_threads() -> int:
    """Several compute threads, as serving runs: a kernel may fail only on a thread other than the first
    (AMX needs a per-thread permission, llama.cpp PR #26954)."""
    return max(2, min(4, os.cpu_count() or 2))


@dataclass(frozen=True)
class SmokeCase:
    """One type decoded by one engine, with repacking on or off."""

    engine: str
    qtype: str
    repack: bool
    ok: bool
    detail: str = ""


@dataclass
class EngineVerdict:
    """What the smoke check found for one engine's build."""

    engine: str
    key: str
    library: str  # the library or program that ran the types
    cases: list[SmokeCase] = field(default_factory=list)
    checked_at: float = 0.0

    @property
    def mode(self) -> str:
        """repack, no-repack, off or unchecked (see the module's docstring)."""
        if not self.cases:
            return "unchecked"
        if all(c.ok for c in self.cases if c.repack):
            return "repack"
        without = [c for c in self.cases if not c.repack]
        if without and all(c.ok for c in without):
            return "no-repack"
        return "off"

    @property
    def reason(self) -> str:
        """One sentence for /health, `status` and the log."""
        crashed = [c for c in self.cases if not c.ok]
        if self.mode == "unchecked":
            return f"{self.engine}: not checked ({self.library})"
        if not crashed:
            return f"{self.engine}: {', '.join(sorted({c.qtype for c in self.cases}))} decode on this CPU"
        first = crashed[0]
        what = f"{self.library} crashed decoding {first.qtype} ({first.detail})"
        if self.mode == "no-repack":
            return f"{self.engine}: {what}; it runs with weight repacking off, which decodes every type"
        return f"{self.engine}: {what}, with weight repacking off too; that engine is not used on this CPU"


def cpu_identity() -> str:
    """The CPU's model and feature flags, as the kernels ggml picks see them."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    wanted = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(wanted))  # the first processor's lines; the others repeat them


def engine_key(engine: str, settings: Settings) -> Optional[tuple[str, str]]:
    """(digest of the build and the CPU, what runs the types) for `engine`; None when it is not built."""
    cpu = hashlib.sha256(cpu_identity().encode()).hexdigest()[:16]
    if engine == IN_PROCESS:
        folder = wheel_library_dir()
        if folder is None:
            return None
        return f"{libraries_digest([folder])}-{cpu}", f"llama-cpp-python's libggml-cpu ({folder})"
    tools = LlamaTools.in_folder(tools_folder(settings))
    if not tools.server.is_file():
        return None
    with open(tools.server, "rb") as handle:
        program = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    return f"{libraries_digest([tools.folder])}-{program}-{cpu}", f"llama-server ({tools.server})"


def verdict_path(settings: Settings) -> Path:
    return settings.tools_dir / VERDICT_FILE


def stored_verdict(engine: str, settings: Settings, key: Optional[str] = None) -> Optional[EngineVerdict]:
    """The verdict kept for the current build of `engine` on this CPU (`key`: its engine_key, when known)."""
    if key is None:
        found = engine_key(engine, settings)
        if found is None:
            return None
        key = found[0]
    try:
        stored = json.loads(verdict_path(settings).read_text(encoding="utf-8")).get(engine)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    try:
        cases = [SmokeCase(**c) for c in stored["cases"]]
        return EngineVerdict(engine, stored["key"], stored["library"], cases, float(stored["checked_at"]))
    except (KeyError, TypeError, ValueError):
        return None  # written by another version: check again


def find_sample(settings: Settings) -> Optional[Path]:
    """The f16 demo GGUF every type is made from: the user's models folder, else the installation's."""
    for folder in (settings.models_dir, PROJECT_ROOT / "quantized-models"):
        if (folder / SAMPLE).is_file():
            return folder / SAMPLE
    return None


def engine_verdict(engine: str, settings: Settings, python: str = sys.executable) -> EngineVerdict:
    """The stored verdict for `engine`, else a smoke check run now (seconds) and stored."""
    found = engine_key(engine, settings)  # hashes the libraries (and llama-server): once per verdict
    if found is None:
        return EngineVerdict(engine, "", "not built")
    stored = stored_verdict(engine, settings, found[0])
    if stored is not None:
        return stored
    sample = find_sample(settings)
    if sample is None:
        return EngineVerdict(engine, found[0], f"no {SAMPLE} to check with: run `make demo`")
    verdict = run_smoke(engine, settings, sample, python, found)
    _store(verdict, settings)
    return verdict


def run_smoke(engine: str, settings: Settings, sample: Path, python: str = sys.executable,
              found: Optional[tuple[str, str]] = None) -> EngineVerdict:
    """Decode a few tokens of every SMOKE_TYPES type with `engine`, each in a child; after a crash, all again
    with repacking off. `found`: engine_key's answer, when the caller has it."""
    key, library = found or engine_key(engine, settings) or ("", "not built")
    verdict = EngineVerdict(engine, key, library, checked_at=time.time())
    decode = {IN_PROCESS: _decode_in_child, SERVER: _decode_on_server}[engine]
    server = LlamaTools.in_folder(tools_folder(settings)).server
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lqmf-smoke-") as work:
        files: dict[str, Path] = {}
        for qtype in SMOKE_TYPES:
            path = sample if qtype == "f16" else Path(work) / f"smoke-{qtype}.gguf"
            made = "" if path.exists() else _quantize(sample, path, qtype, python)
            if made:
                verdict.cases.append(SmokeCase(engine, qtype, True, False, f"could not make it: {made}"))
            else:
                files[qtype] = path
        # Repacking off is how every type then runs, so a crash with it on checks every type with it off.
        for repack in (True, False):
            for qtype, path in files.items():
                ok, detail = decode(path, repack, python=python, server=server, logs_dir=settings.logs_dir)
                verdict.cases.append(SmokeCase(engine, qtype, repack, ok, detail))
            if all(c.ok for c in verdict.cases):
                break
    (log.info if verdict.mode == "repack" else log.error)(
        "GGUF smoke check in %.1f s: %s", time.perf_counter() - start, verdict.reason)
    return verdict


def _store(verdict: EngineVerdict, settings: Settings) -> None:
    """Keep the verdict beside the other engine's; an unwritable tools folder only costs a check per start."""
    path = verdict_path(settings)
    try:
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    stored[verdict.engine] = {"key": verdict.key, "library": verdict.library, "checked_at": verdict.checked_at,
                              "mode": verdict.mode, "reason": verdict.reason,
                              "cases": [asdict(c) for c in verdict.cases]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(stored, indent=2), encoding="utf-8")
    except OSError as exc:
        log.warning("could not keep the GGUF smoke verdict in %s (%s): it is checked again at the next start",
                    path, exc)


def _quantize(sample: Path, out: Path, qtype: str, python: str) -> str:
    """Make `out` from `sample` in a child; '' when done, else why not."""
    cmd = [python, gguf_check.__file__, "--quantize", str(sample), str(out), qtype, "1"]
    try:
        code, stdout, stderr = run_child_split(cmd, timeout_s=CHILD_TIMEOUT_S)
    except ChildTimedOut:
        return f"quantizing did not finish in {CHILD_TIMEOUT_S:.0f} s"
    return "" if code == 0 and out.is_file() else f"the quantizer {exit_words(code)}: {stderr.strip()[-200:]}"


def _decode_in_child(path: Path, repack: bool, *, python: str, **_) -> tuple[bool, str]:
    """llama-cpp-python loads `path` and decodes a token in a child: (decoded, what happened)."""
    cmd = [python, gguf_check.__file__, str(path), str(smoke_threads()), *(() if repack else ("--no-repack",))]
    try:
        code, stdout, stderr = run_child_split(cmd, timeout_s=CHILD_TIMEOUT_S)
    except ChildTimedOut:
        return False, f"no answer in {CHILD_TIMEOUT_S:.0f} s"
    answer = gguf_check.read_answer(stdout)
    if code == 0 and answer.get("ok"):
        return True, f"token {answer.get('token')}"
    return False, exit_words(code) + (f", {answer['error']}" if answer.get("error") else "")


def _decode_on_server(path: Path, repack: bool, *, server: Path, logs_dir: Path, **_) -> tuple[bool, str]:
    """llama-server serves `path` and generates a few tokens: (generated, what happened)."""
    import httpx

    port = free_port()
    cmd = [str(server), "-m", str(path), "--host", "127.0.0.1", "--port", str(port), "-c", "256", "-np", "1",
           "-t", str(smoke_threads()), "--no-webui", *(() if repack else ("--no-repack",))]
    logs_dir.mkdir(parents=True, exist_ok=True)
    with open(logs_dir / "gguf-smoke-server.log", "ab") as out:
        proc = start_child(cmd, stdout=out)
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                reply = httpx.post(f"{url}/completion", json={"prompt": "def main", "n_predict": SERVER_TOKENS},
                                   timeout=CHILD_TIMEOUT_S)
            except httpx.HTTPError:
                time.sleep(0.05)  # not listening yet, or it died mid-answer: the poll says which
                continue
            if reply.status_code == 503:  # still loading
                time.sleep(0.05)
                continue
            if reply.status_code == 200 and proc.poll() is None:
                return True, f"{reply.json().get('tokens_predicted', '?')} tokens"
            return False, f"answered {reply.status_code}: {reply.text[:200]}"
        if proc.poll() is not None:
            return False, exit_words(proc.returncode)
        return False, f"no answer in {CHILD_TIMEOUT_S:.0f} s"
    finally:
        end_process(proc)


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m server.runtime.gguf_smoke [--again]`: both engines' verdicts; 0 unless none decodes."""
    from lqmf.base.environment import apply_environment_quirks
    from lqmf.base.log import configure_logging
    from lqmf.base.settings import load_settings

    args = sys.argv[1:] if argv is None else argv
    apply_environment_quirks()
    settings = load_settings()
    configure_logging(settings)
    if "--again" in args:
        verdict_path(settings).unlink(missing_ok=True)
    verdicts = [engine_verdict(engine, settings) for engine in ENGINES]
    for verdict in verdicts:
        sys.stderr.write(f"[gguf-smoke] {verdict.mode}: {verdict.reason}\n")
    # Setup goes on whatever the verdict: a fallback serves. Only a build where nothing decodes fails it.
    return 1 if all(v.mode == "off" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
