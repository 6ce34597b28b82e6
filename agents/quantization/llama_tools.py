"""llama.cpp's `llama-imatrix`, `llama-quantize` and `llama-server`, built once from the pinned llama-cpp-python sdist.

An importance matrix (imatrix) needs llama.cpp's command-line tools, and GGUF serving runs on
llama.cpp's own server engine; the wheel ships neither. They are compiled from the same source
distribution the converter comes from, and cached under `settings.tools_dir / llama.cpp-tools-<version>`.

Fast path: compile only llama.cpp's `common/` library and the two tools, and link them against the
shared libraries the installed wheel already has (libllama, libggml*: built from this very sdist, so
the headers match). The libraries are copied next to the binaries (RUNPATH=$ORIGIN), so the folder
keeps working whatever happens to the virtual environment. Fallback when that fails: the full static
build of ggml + llama + common (several times slower).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import util as import_util
from pathlib import Path
from typing import IO, Callable, Optional

from lqmf.atomic import atomic_output, temp_sibling
from agents.quantization.converter import extract_vendor, fetch_sdist, llama_cpp_version
from lqmf.errors import OutputExists, QuantizationError, ToolUnavailable
from lqmf.processes import tethered
from lqmf.settings import Settings

log = logging.getLogger(__name__)

IMATRIX = "llama-imatrix"
QUANTIZE = "llama-quantize"
SERVER = "llama-server"
TARGETS = (IMATRIX, QUANTIZE, SERVER)
BUILD_RECORD = "build.json"
# The vocab models, docs and media are ~120 MB of the sdist that no build step reads.
SKIPPED_SOURCES = ("models/", "docs/", "media/")
# The wheel's libraries under the names the loader asks for (their SONAMEs): libllama.so.0, ...
WHEEL_LIBRARY = re.compile(r"^lib(?:llama|mtmd|ggml[\w-]*)\.so\.\d+$")
# common/ is argument parsing, logging and tokenizer glue, not the hot loop: -O1 compiles it about
# 40% faster than -O3. The two tools' own sources (imatrix collects activations) keep -O2.
FAST_FLAGS = "-O1 -DNDEBUG"

# Compiles llama.cpp's common/ and the two tools against the wheel's prebuilt libraries. The sdist's
# own CMake cannot do that: its src/ always builds libllama.
WRAPPER_CMAKE = r"""
cmake_minimum_required(VERSION 3.14)
project(lqmf_llama_tools C CXX)

set(LLAMA_BUILD_COMMON ON)
set(LLAMA_OPENSSL OFF)  # https is only for model downloads, which these tools never do
set(LLAMA_SUBPROCESS ON)  # llama-server's common/ code expects it
set(LLAMA_BUILD_NUMBER 0)
set(LLAMA_BUILD_COMMIT "lqmf")
set(BUILD_COMPILER "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}")
set(BUILD_TARGET "${CMAKE_SYSTEM_PROCESSOR}")
set(LLAMA_VERSION_BASE 0.0.0)
set(LLAMA_VERSION_MAJOR 0)
function(llama_add_compile_flags)
endfunction()
function(license_add_file)
endfunction()
find_package(Threads REQUIRED)

add_library(ggml-base SHARED IMPORTED)
set_target_properties(ggml-base PROPERTIES IMPORTED_LOCATION "${LQMF_PREBUILT}/libggml-base.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${LQMF_LLAMA_DIR}/ggml/include")
add_library(ggml SHARED IMPORTED)
set_target_properties(ggml PROPERTIES IMPORTED_LOCATION "${LQMF_PREBUILT}/libggml.so.0"
    INTERFACE_LINK_LIBRARIES ggml-base)
add_library(llama SHARED IMPORTED)
set_target_properties(llama PROPERTIES IMPORTED_LOCATION "${LQMF_PREBUILT}/libllama.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${LQMF_LLAMA_DIR}/include" INTERFACE_LINK_LIBRARIES ggml)

add_library(mtmd SHARED IMPORTED)
set_target_properties(mtmd PROPERTIES IMPORTED_LOCATION "${LQMF_PREBUILT}/libmtmd.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${LQMF_LLAMA_DIR}/tools/mtmd" INTERFACE_LINK_LIBRARIES llama)

set(CMAKE_RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/bin")
set(CMAKE_BUILD_WITH_INSTALL_RPATH ON)
set(CMAKE_INSTALL_RPATH "$ORIGIN")

add_subdirectory("${LQMF_LLAMA_DIR}/vendor/nlohmann" vendor/nlohmann)
add_subdirectory("${LQMF_LLAMA_DIR}/vendor/sheredom" vendor/sheredom)
add_subdirectory("${LQMF_LLAMA_DIR}/vendor/cpp-httplib" vendor/cpp-httplib)
add_subdirectory("${LQMF_LLAMA_DIR}/common" common)
add_subdirectory("${LQMF_LLAMA_DIR}/tools/imatrix" imatrix)
add_subdirectory("${LQMF_LLAMA_DIR}/tools/quantize" quantize)
target_compile_options(llama-imatrix PRIVATE -O2)
target_compile_options(llama-quantize-impl PRIVATE -O2)

# llama-server embeds a web UI; LQMF serves none, so its asset table is generated empty (no npm, no
# download). tools/ui's own CMakeLists cannot be used: it finds its script under PROJECT_SOURCE_DIR.
set(LQMF_UI_DIR "${CMAKE_BINARY_DIR}/ui")
execute_process(COMMAND ${CMAKE_COMMAND} "-DUI_SOURCE_DIR=${LQMF_LLAMA_DIR}/tools/ui" "-DUI_BINARY_DIR=${LQMF_UI_DIR}"
    "-DLLAMA_SOURCE_DIR=${LQMF_LLAMA_DIR}" -DLLAMA_BUILD_NUMBER=0 -DHF_BUCKET=none -DHF_VERSION=b0 -DHF_ENABLED=OFF
    -DBUILD_UI=OFF -DLLAMA_UI_GZIP=OFF -P "${LQMF_LLAMA_DIR}/scripts/ui-assets.cmake" RESULT_VARIABLE LQMF_UI_RESULT)
if(NOT LQMF_UI_RESULT EQUAL 0)
    message(FATAL_ERROR "could not generate llama-server's (empty) web UI table")
endif()
add_library(llama-ui STATIC "${LQMF_UI_DIR}/ui.cpp")
target_include_directories(llama-ui PUBLIC "${LQMF_UI_DIR}")
add_custom_target(llama-ui-assets)
add_subdirectory("${LQMF_LLAMA_DIR}/tools/server" server)
# The request loop, sampling and JSON of every token run here: optimised like the tools' own code.
target_compile_options(server-context PRIVATE -O2)
target_compile_options(llama-server-impl PRIVATE -O2)
"""

STATIC_OPTIONS = (
    "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
)

BUILD_KINDS = {
    "shared": "common/, the tools and the server, linked against the llama-cpp-python wheel's libraries",
    "static": "ggml, llama, common/, the tools and the server, all built from the sdist",
}

DEFAULT_CHUNK = 512  # llama-imatrix's own default context per chunk
MIN_CHUNK = 64  # below this a chunk holds too little context to be representative


@dataclass(frozen=True)
class LlamaTools:
    """The built executables (and the folder that holds them with their libraries)."""

    folder: Path
    imatrix: Path
    quantize: Path
    server: Path

    @classmethod
    def in_folder(cls, folder: Path) -> "LlamaTools":
        return cls(folder, folder / IMATRIX, folder / QUANTIZE, folder / SERVER)

    def ready(self) -> bool:
        return all(p.is_file() and os.access(p, os.X_OK) for p in (self.imatrix, self.quantize, self.server))


@dataclass(frozen=True)
class ImatrixReport:
    """What one llama-imatrix run produced."""

    path: Path
    sha256: str
    chunks: int  # chunks of `chunk_size` tokens the activations were collected over
    chunk_size: int
    tokens: int  # tokens evaluated: chunks x chunk_size
    samples: int
    calibration: str  # where the text came from, in words
    perplexity: Optional[float]  # the f16 model's perplexity on the calibration text, as llama-imatrix reports
    wall_time_s: float


class _BuildFailed(Exception):
    """One build attempt failed; the message says which step."""


# -- building --------------------------------------------------------------------------------------------
def tools_folder(settings: Settings) -> Path:
    return settings.tools_dir / f"llama.cpp-tools-{llama_cpp_version()}"


def ensure_llama_tools(settings: Settings) -> LlamaTools:
    """Return the cached llama-imatrix / llama-quantize / llama-server, building them the first time (~4 min on 2 cores).

    The build log goes to `settings.logs_dir`; a missing compiler or a failed build raises ToolUnavailable.
    """
    target = tools_folder(settings)
    tools = LlamaTools.in_folder(target)
    if tools.ready():
        return tools
    _require_build_programs()
    version = llama_cpp_version()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"llama-tools-build-{version}.log"
    log.info("building llama.cpp's %s from llama-cpp-python==%s (log: %s)", " and ".join(TARGETS), version, log_path)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lqmf-llama-build-") as work_name, open(log_path, "w") as build_log:
        work = Path(work_name)
        archive = fetch_sdist(version, work)
        source = work / "llama.cpp"
        extract_vendor(archive, source, lambda rel: not rel.startswith(SKIPPED_SOURCES))
        archive.unlink()
        # overwrite: a folder from an older LQMF may hold only some of the programs.
        with atomic_output(target, is_dir=True, overwrite=True) as out:
            how = _build(source, work, out, build_log, log_path)
            record = {"version": version, "how": how, "detail": BUILD_KINDS[how],
                      "build_seconds": round(time.perf_counter() - start, 1)}
            (out / BUILD_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    log.info("llama.cpp tools ready in %s (%s build, %.0f s)", target, how, time.perf_counter() - start)
    return tools


def _require_build_programs() -> None:
    missing = [name for name in ("cmake",) if shutil.which(name) is None]
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler")
    if missing:
        raise ToolUnavailable(
            f"building llama.cpp's tools and server needs {' and '.join(missing)}",
            "install them (Debian/Ubuntu: apt-get install cmake ninja-build g++); until then GGUF models are "
            "served in-process and quantization works without an importance matrix (K-quant levels such as q4_k_m)",
        )


def _build(source: Path, work: Path, out: Path, build_log: IO[str], log_path: Path) -> str:
    """Build into `out` (fast path, else full static build); return which one worked (a BUILD_KINDS key)."""
    try:
        _build_against_wheel(source, work / "build-shared", out, build_log)
        return "shared"
    except _BuildFailed as exc:
        log.warning("building against the wheel's libraries failed (%s); falling back to a full static "
                    "build, which takes several minutes", exc)
        build_log.write(f"\n### fast build failed ({exc}); full static build\n")
        for entry in out.iterdir():
            entry.unlink()
    try:
        _build_static(source, work / "build-static", out, build_log)
    except _BuildFailed as exc:
        raise ToolUnavailable(
            f"could not build llama.cpp's {' and '.join(TARGETS)}: {exc}",
            f"see {log_path}; importance matrices and IQ levels need these tools, K-quant levels do not, and "
            "GGUF serving falls back to the in-process engine",
        ) from exc
    return "static"


def wheel_library_dir() -> Path:
    """Where the installed llama-cpp-python keeps libllama.so and libggml*.so."""
    spec = import_util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ToolUnavailable("llama-cpp-python is not installed", "run `make setup`")
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


def _build_against_wheel(source: Path, build_dir: Path, out: Path, build_log: IO[str]) -> None:
    libraries = wheel_library_dir()
    copied = [p for p in sorted(libraries.glob("lib*.so.*")) if WHEEL_LIBRARY.match(p.name)]
    needed = {"libllama.so.0", "libggml.so.0", "libggml-base.so.0", "libmtmd.so.0"}
    if not needed <= {p.name for p in copied}:
        raise _BuildFailed(f"{libraries} does not hold {', '.join(sorted(needed))}")
    for library in copied:
        shutil.copy2(library, out / library.name)
    wrapper = build_dir.parent / "wrapper"
    wrapper.mkdir(parents=True, exist_ok=True)
    (wrapper / "CMakeLists.txt").write_text(WRAPPER_CMAKE, encoding="utf-8")
    _cmake(wrapper, build_dir, build_log, (
        f"-DLQMF_LLAMA_DIR={source}", f"-DLQMF_PREBUILT={out}", "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_C_FLAGS_RELEASE={FAST_FLAGS}", f"-DCMAKE_CXX_FLAGS_RELEASE={FAST_FLAGS}",
    ))
    _install_binaries(build_dir / "bin", out)


def _build_static(source: Path, build_dir: Path, out: Path, build_log: IO[str]) -> None:
    _cmake(source, build_dir, build_log, ("-DCMAKE_BUILD_TYPE=Release", *STATIC_OPTIONS))
    _install_binaries(build_dir / "bin", out)


def _cmake(source: Path, build_dir: Path, build_log: IO[str], options: tuple[str, ...]) -> None:
    generator = ("-G", "Ninja") if shutil.which("ninja") else ()
    steps = (
        ("configure", ["cmake", "-S", str(source), "-B", str(build_dir), *generator, *options]),
        ("compile", ["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 1), "--target", *TARGETS]),
    )
    for step, cmd in steps:
        build_log.write(f"\n### {' '.join(cmd)}\n")
        build_log.flush()
        code = run_child(cmd, output=build_log)
        if code != 0:
            raise _BuildFailed(f"cmake {step} step exited with {code}")


def _install_binaries(bin_dir: Path, out: Path) -> None:
    """Copy the executables into `out` and check that they start (every symbol resolves)."""
    for name in TARGETS:
        if not (bin_dir / name).is_file():
            raise _BuildFailed(f"the build produced no {name}")
        shutil.copy2(bin_dir / name, out / name)
    # LD_BIND_NOW resolves every symbol at start-up, so a library mismatch fails here, not mid-run.
    env = {**os.environ, "LD_BIND_NOW": "1"}
    probes = ((IMATRIX, "--version", "version:"), (QUANTIZE, "--help", "usage:"), (SERVER, "--version", "version:"))
    for name, flag, expected in probes:
        proc = subprocess.run([str(out / name), flag], capture_output=True, text=True, env=env, timeout=60)
        if expected not in proc.stdout + proc.stderr:
            raise _BuildFailed(f"{name} {flag} does not run: {(proc.stdout + proc.stderr).strip()[-300:]}")


# -- running ---------------------------------------------------------------------------------------------
def run_child(cmd: list[str], output: Optional[IO[str]] = None, cwd: Optional[Path] = None) -> int:
    """Run `cmd` in its own process group and return its exit status.

    Output goes to `output` (stdout and stderr together). On any exception in the waiting parent,
    Ctrl-C included, the whole group (the child and what it started: ninja, compilers) is ended first.
    """
    proc = subprocess.Popen(
        tethered(cmd), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
    )
    try:
        return proc.wait()
    except BaseException:
        _end_group(proc)
        raise


# llama.cpp's quantizer (llama-quantize, and llama_model_quantize through the log callback) starts each
# tensor's line with "[  12/  39] blk.1.attn_q.weight - ...": the progress a long step can show.
TENSOR_PROGRESS = re.compile(r"^\[\s*(\d+)\s*/\s*(\d+)\]")
TensorProgress = Callable[[int, int], None]  # (tensors done, tensors in all)


def run_child_lines(cmd: list[str], on_line: Callable[[str], None], cwd: Optional[Path] = None,
                    env: Optional[dict[str, str]] = None) -> tuple[int, str]:
    """Run `cmd` like run_child, handing each output line to `on_line` as it comes; return (status, output).

    Lines end at \\n or \\r (tqdm redraws its bar with \\r). On any exception here, `on_line`'s included,
    the child's whole group is ended first.
    """
    proc = subprocess.Popen(
        tethered(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=cwd, env=env,
    )
    assert proc.stdout is not None
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
        _end_group(proc)
        raise
    finally:
        proc.stdout.close()
    return code, b"".join(chunks).decode("utf-8", "replace")


def tensor_lines(on_tensor: Optional[TensorProgress]) -> Callable[[str], None]:
    """An on_line for run_child_lines that reports llama.cpp's "[ n/ N]" tensor lines to `on_tensor`."""

    def on_line(line: str) -> None:
        match = TENSOR_PROGRESS.match(line)
        if match and on_tensor is not None:
            on_tensor(int(match.group(1)), int(match.group(2)))

    return on_line


def run_child_captured(cmd: list[str], cwd: Optional[Path] = None) -> tuple[int, str]:
    """run_child, returning the exit status and the child's whole output as text."""
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as capture:
        code = run_child(cmd, output=capture, cwd=cwd)
        capture.seek(0)
        return code, capture.read()


def _end_group(proc: subprocess.Popen) -> None:
    """End a child started by run_child and everything in its process group: politely first, then not."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # The group may outlive its leader for a moment (compilers): a last SIGKILL to what is left.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- the importance matrix -------------------------------------------------------------------------------
CALIBRATION_FILE = "lqmf-calibration.txt"  # the name llama-imatrix records as the imatrix's dataset


def gguf_context_length(model_gguf: Path) -> int:
    """The training context (`<arch>.context_length`) stored in a GGUF model."""
    from gguf import GGUFReader

    reader = GGUFReader(str(model_gguf))
    arch = reader.fields.get("general.architecture")
    field = reader.fields.get(f"{arch.contents()}.context_length") if arch is not None else None
    if field is None:
        raise QuantizationError(f"{model_gguf.name} records no context length", "is it a GGUF model file?")
    return int(field.contents())


def compute_imatrix(
    model_gguf: Path,
    samples: list[str],
    out_file: Path,
    settings: Settings,
    threads: Optional[int] = None,
    ctx: Optional[int] = None,
    calibration: Optional[str] = None,
    overwrite: bool = False,
) -> ImatrixReport:
    """Run llama-imatrix over `samples` with `model_gguf` (a float GGUF); write `out_file`, a GGUF imatrix.

    Chunks are `ctx` tokens (default: 512, or the model's training context when smaller; a short text
    gets shorter chunks); llama-imatrix needs at least two chunks of text. `calibration` describes the
    text for the records. The output and its manifest (`<out_file>.lqmf.json`, which quantize_gguf reads)
    appear only when complete; Ctrl-C ends the child and leaves neither output nor temporary behind.
    """
    from lqmf.manifest import measure_run

    model_gguf, out_file = Path(model_gguf).resolve(), Path(out_file).resolve()
    if not model_gguf.is_file():
        raise QuantizationError(f"no GGUF file at {model_gguf}", "convert the model to an f16 GGUF first")
    if not any(s.strip() for s in samples):
        raise QuantizationError("no calibration text for the importance matrix", "give a calibration file")
    if out_file.exists() and not overwrite:
        raise OutputExists(f"{out_file} already exists", "choose another name or pass overwrite=True")
    chunk = min(ctx or DEFAULT_CHUNK, gguf_context_length(model_gguf))
    calibration = calibration or f"{len(samples)} calibration samples"
    tools = ensure_llama_tools(settings)
    nthreads = threads or settings.threads or os.cpu_count() or 1
    # A temp sibling folder, not /tmp: sweep_stale_temps removes it if this process is killed.
    workdir = temp_sibling(out_file.with_name(out_file.name + ".calibration"))
    text = "\n\n".join(samples)
    # Decided here from our own token count: llama-imatrix's "too short" message is written by an
    # asynchronous logger and is sometimes lost when it exits at once.
    chunk = _chunk_for(count_tokens(model_gguf, text), chunk, allow_smaller=ctx is None, chars=len(text))
    try:
        workdir.mkdir(parents=True)
        (workdir / CALIBRATION_FILE).write_text(text, encoding="utf-8")
        with atomic_output(out_file, overwrite=overwrite) as tmp:
            with measure_run() as measure:
                output = _run_imatrix(tools, model_gguf, workdir, tmp, chunk, nthreads)
            report = _imatrix_report(out_file, tmp, output, samples, calibration, measure.wall_time_s)
            _write_imatrix_manifest(out_file, tmp, model_gguf, report, measure, nthreads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("importance matrix %s: %d chunks of %d tokens from %s", out_file, report.chunks, report.chunk_size,
             calibration)
    return report


def count_tokens(model_gguf: Path, text: str) -> int:
    """Tokens of `text` as llama-imatrix counts them (the model's own vocabulary, with BOS)."""
    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    vocab = llama_cpp.Llama(str(model_gguf), vocab_only=True, verbose=False)
    try:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=True, special=False))
    finally:
        vocab.close()


def _chunk_for(tokens: int, chunk: int, allow_smaller: bool, chars: int) -> int:
    """The chunk size a text of `tokens` fills twice (llama-imatrix's minimum), or the error that says how much more."""
    if tokens >= 2 * chunk:
        return chunk
    if allow_smaller and tokens // 2 >= MIN_CHUNK:
        log.info("the calibration text is %d tokens: chunks of %d instead of %d", tokens, tokens // 2, chunk)
        return tokens // 2
    needed = 2 * (min(chunk, MIN_CHUNK) if allow_smaller else chunk)
    raise QuantizationError(
        f"the calibration text is only {tokens} tokens; llama-imatrix needs at least {needed} "
        f"(two chunks of {needed // 2} tokens)",
        f"give a longer calibration text: about {int((needed - tokens) * chars / max(tokens, 1)) + 1} "
        "more characters",
    )


def _run_imatrix(tools: LlamaTools, model: Path, workdir: Path, out: Path, chunk: int, threads: int) -> str:
    """Run llama-imatrix into `out` with chunks of `chunk` tokens."""
    cmd = [
        str(tools.imatrix), "-m", str(model), "-f", CALIBRATION_FILE, "-o", str(out), "--output-format", "gguf",
        "-c", str(chunk), "-b", str(chunk), "-t", str(threads),
    ]
    code, output = run_child_captured(cmd, cwd=workdir)
    log.debug("llama-imatrix output:\n%s", output)
    if code != 0 or not out.is_file():
        tail = "\n".join(output.strip().splitlines()[-8:])
        how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        raise QuantizationError(f"llama-imatrix {how}:\n{tail}", "see logs/lqmf.log for the full output")
    return output


def _imatrix_report(final: Path, built: Path, output: str, samples: list[str], calibration: str,
                    wall_time_s: float) -> ImatrixReport:
    from lqmf.manifest import sha256_file

    facts = read_imatrix(built)
    perplexity = re.search(r"Final estimate: PPL = ([0-9.]+)", output)
    return ImatrixReport(
        path=final, sha256=sha256_file(built), chunks=facts["chunks"], chunk_size=facts["chunk_size"],
        tokens=facts["chunks"] * facts["chunk_size"], samples=len(samples), calibration=calibration,
        perplexity=float(perplexity.group(1)) if perplexity else None, wall_time_s=round(wall_time_s, 3),
    )


def _write_imatrix_manifest(final: Path, built: Path, model: Path, report: ImatrixReport, measure,
                            threads: int) -> None:
    """The imatrix's own manifest, beside it: what quantize_gguf copies into the quantized model's record."""
    from lqmf.manifest import Manifest, WeightFile, manifest_path_for, sha256_file, tool_versions

    facts = read_imatrix(built)
    manifest = Manifest(
        name=final.name, format="imatrix", method="llama-imatrix", bits=32.0, level="imatrix",
        source={"path": str(model), "format": "gguf", "sha256": sha256_file(model)},
        tool_versions=tool_versions("llama-cpp-python", "gguf"), size_bytes=built.stat().st_size,
        parameter_count=facts["values"], bits_per_weight=32.0,
        weight_files=[WeightFile(final.name, built.stat().st_size, report.sha256)],
        wall_time_s=round(measure.wall_time_s, 3), peak_rss_bytes=measure.peak_rss_bytes,
        details={"calibration": report.calibration, "samples": report.samples, "chunks": report.chunks,
                 "chunk_size": report.chunk_size, "tokens": report.tokens, "perplexity": report.perplexity,
                 "threads": threads},
    )
    with atomic_output(manifest_path_for(final), overwrite=True) as tmp:
        tmp.write_text(manifest.to_json(), encoding="utf-8")


def read_imatrix(path: Path) -> dict:
    """What a GGUF imatrix file says about itself: chunks, chunk size, datasets, number of values."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    kind = reader.fields.get("general.type")
    if kind is None or kind.contents() != "imatrix":
        raise QuantizationError(f"{Path(path).name} is not a GGUF importance matrix",
                                "compute one with llama-imatrix (compute_imatrix)")

    def value(key: str, default):
        field = reader.fields.get(key)
        return field.contents() if field is not None else default

    return {
        "chunks": int(value("imatrix.chunk_count", 0)),
        "chunk_size": int(value("imatrix.chunk_size", 0)),
        "datasets": list(value("imatrix.datasets", [])),
        "values": sum(int(t.n_elements) for t in reader.tensors),
    }


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m agents.quantization.llama_tools [--optional]`: build (or confirm) the cached llama.cpp tools.

    --optional (what `make setup` passes): a machine that cannot build them is told why and what it
    loses, and setup goes on (GGUF is then served in-process).
    """
    optional = "--optional" in (sys.argv[1:] if argv is None else argv)
    from lqmf.environment import apply_environment_quirks
    from lqmf.log import configure_logging
    from lqmf.settings import load_settings

    apply_environment_quirks()
    settings = load_settings()
    configure_logging(settings)
    start = time.perf_counter()
    try:
        tools = ensure_llama_tools(settings)
    except ToolUnavailable as exc:
        sys.stderr.write(f"[llama-tools] {exc}\n")
        return 0 if optional else 1
    sys.stderr.write(f"[llama-tools] {', '.join(TARGETS)} ready in {tools.folder} "
                     f"({time.perf_counter() - start:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
