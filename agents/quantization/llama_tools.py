"""Build llama.cpp's `llama-imatrix`, `llama-quantize`, `llama-perplexity` and `llama-server` once, from the
pinned llama-cpp-python sdist.

An importance matrix (agents.quantization.imatrix) needs llama.cpp's command-line tools, and GGUF
serving runs on llama.cpp's own server engine, and llama-perplexity is llama.cpp's own KL-divergence
yardstick (agents.measure.llama_perplexity); the wheel ships none of them. They are compiled from the
same source distribution the converter comes from, into lqmf.base.tools.tools_folder(settings)
(`settings.tools_dir / llama.cpp-tools-<version>`), where every user finds them.

Fast path: compile only llama.cpp's `common/` library and the tools, and link them against the
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
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Optional

from agents.quantization.converter import extract_vendor, fetch_sdist
from lqmf.base.atomic import atomic_output
from lqmf.base.errors import ToolUnavailable
from lqmf.base.native_build import amx_libraries, flags_text, wheel_library_dir
from lqmf.base.processes import ChildTimedOut, run_child, run_child_captured
from lqmf.base.settings import Settings
from lqmf.base.tools import IMATRIX, PERPLEXITY, QUANTIZE, SERVER, TARGETS, LlamaTools, llama_cpp_version, tools_folder

log = logging.getLogger(__name__)

BUILD_RECORD = "build.json"
# The vocab models, docs and media are ~120 MB of the sdist that no build step reads.
SKIPPED_SOURCES = ("models/", "docs/", "media/")
# The wheel's libraries under the names the loader asks for (their SONAMEs): libllama.so.0, ...
WHEEL_LIBRARY = re.compile(r"^lib(?:llama|mtmd|ggml[\w-]*)\.so\.\d+$")
# common/ is argument parsing, logging and tokenizer glue, not the hot loop: -O1 compiles it about
# 40% faster than -O3. The tools' own sources (imatrix collects activations, perplexity sums logits) keep -O2.
FAST_FLAGS = "-O1 -DNDEBUG"
PROBE_TIMEOUT_S = 60.0  # a built program answering --version / --help

# Compiles llama.cpp's common/ and the tools against the wheel's prebuilt libraries. The sdist's
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
add_subdirectory("${LQMF_LLAMA_DIR}/tools/perplexity" perplexity)
target_compile_options(llama-imatrix PRIVATE -O2)
target_compile_options(llama-quantize-impl PRIVATE -O2)
target_compile_options(llama-perplexity-impl PRIVATE -O2)

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


class _BuildFailed(Exception):
    """One build attempt failed; the message says which step."""


def ensure_llama_tools(settings: Settings) -> LlamaTools:
    """Return the cached llama-imatrix / llama-quantize / llama-server / llama-perplexity, building them the first time
    (~4 min on 2 cores).

    The build log goes to `settings.logs_dir`; a missing compiler or a failed build raises ToolUnavailable.
    """
    target = tools_folder(settings)
    tools = LlamaTools.in_folder(target)
    stale = build_staleness(target) if tools.ready() else "not built"
    if stale is None:
        return tools
    if tools.ready():
        log.warning("rebuilding llama.cpp's tools in %s: %s", target, stale)
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
            found = amx_libraries(out)
            if found:
                raise ToolUnavailable(
                    f"the built {found[0].name} holds llama.cpp's AMX kernels although it was compiled with "
                    f"{flags_text()}", f"see {log_path}; report this with the output of `cc -v`")
            record = {"version": version, "how": how, "detail": BUILD_KINDS[how],
                      "compiler_flags": flags_text(), "amx_kernels": False,
                      "build_seconds": round(time.perf_counter() - start, 1)}
            (out / BUILD_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    log.info("llama.cpp tools ready in %s (%s build, %.0f s)", target, how, time.perf_counter() - start)
    return tools


def build_staleness(folder: Path) -> Optional[str]:
    """Why the built tools in `folder` must be built again (None: they are current).

    A folder built by an older LQMF, with other flags, or holding libraries with the AMX kernels
    (copied from a wheel built with them) is rebuilt.
    """
    try:
        record = json.loads((folder / BUILD_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{BUILD_RECORD} is missing or unreadable"
    if not isinstance(record, dict) or record.get("compiler_flags") != flags_text():
        flags = record.get("compiler_flags") if isinstance(record, dict) else None
        return f"built with compiler flags {flags!r}, not {flags_text()!r}"
    found = amx_libraries(folder)
    if found:
        return f"{found[0].name} holds llama.cpp's AMX kernels, which segfault on AMX CPUs"
    return None


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


def _build_against_wheel(source: Path, build_dir: Path, out: Path, build_log: IO[str]) -> None:
    libraries = wheel_library_dir()
    if libraries is None:
        raise ToolUnavailable("llama-cpp-python is not installed", "run `make setup`")
    if amx_libraries(libraries):
        raise _BuildFailed(f"the wheel's CPU library in {libraries} holds the AMX kernels (run `make install`)")
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
    # The same flags the wheel was compiled with (lqmf.base.native_build): no AMX kernels on x86.
    flags = (f"-DCMAKE_C_FLAGS={flags_text()}", f"-DCMAKE_CXX_FLAGS={flags_text()}")
    steps = (
        ("configure", ["cmake", "-S", str(source), "-B", str(build_dir), *generator, *flags, *options]),
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
    probes = ((IMATRIX, "--version", "version:"), (QUANTIZE, "--help", "usage:"), (SERVER, "--version", "version:"),
              (PERPLEXITY, "--version", "version:"))
    for name, flag, expected in probes:
        try:
            _, output = run_child_captured([str(out / name), flag], env=env, timeout_s=PROBE_TIMEOUT_S)
        except ChildTimedOut:
            raise _BuildFailed(f"{name} {flag} did not answer within {PROBE_TIMEOUT_S:.0f} s") from None
        if expected not in output:
            raise _BuildFailed(f"{name} {flag} does not run: {output.strip()[-300:]}")


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m agents.quantization.llama_tools [--optional]`: build (or confirm) the cached llama.cpp tools.

    --optional (what `make setup` passes): a machine that cannot build them is told why and what it
    loses, and setup goes on (GGUF is then served in-process).
    """
    optional = "--optional" in (sys.argv[1:] if argv is None else argv)
    from lqmf.base.environment import apply_environment_quirks
    from lqmf.base.log import configure_logging
    from lqmf.base.settings import load_settings

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
