"""llama.cpp is built here without the AMX kernels that segfault on AMX Xeons: the wheel, the tools, and the
flags that keep them out, checked on the real built libraries and on llama.cpp's own AMX source."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from agents.quantization.llama_tools import BUILD_RECORD, build_staleness
from lqmf.base import native_build
from lqmf.base.native_build import (
    AMX_MARKER,
    amx_libraries,
    compiler_flags,
    cpu_libraries,
    ensure_wheel,
    flags_text,
    has_amx_kernels,
    wheel_library_dir,
)
from lqmf.base.settings import load_settings
from lqmf.base.tools import LlamaTools, tools_folder

REPO = Path(__file__).resolve().parents[1]
X86 = platform.machine().lower() in native_build.X86_MACHINES
AMX_SOURCE = "src/ggml-cpu/amx/amx.cpp"


@pytest.fixture(scope="module")
def ggml_source(tmp_path_factory) -> Path:
    """ggml's sources from the pinned llama-cpp-python sdist (pip's cache has it since `make setup`)."""
    from agents.quantization.converter import extract_vendor, fetch_sdist
    from lqmf.base.tools import llama_cpp_version

    work = tmp_path_factory.mktemp("sdist")
    archive = fetch_sdist(llama_cpp_version(), work)
    extract_vendor(archive, work / "llama.cpp", lambda rel: rel.startswith("ggml/"))
    return work / "llama.cpp" / "ggml"


def compile_amx_source(ggml: Path, out: Path, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Path:
    """llama.cpp's AMX kernels' file, compiled for a Sapphire Rapids CPU with flags before and after -march."""
    cxx = shutil.which("c++") or shutil.which("g++")
    cmd = [cxx, "-std=gnu++17", "-O0", "-c", str(ggml / AMX_SOURCE), f"-I{ggml / 'include'}", f"-I{ggml / 'src'}",
           f"-I{ggml / 'src' / 'ggml-cpu'}", *before, "-march=sapphirerapids", *after, "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_the_flags_leave_amx_out_on_x86_and_add_nothing_elsewhere():
    assert compiler_flags("x86_64") == ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
    assert compiler_flags("AMD64") == compiler_flags("x86_64")
    assert compiler_flags("aarch64") == () and flags_text("aarch64") == ""
    env = native_build.build_environment("x86_64")
    assert all(flag in env["CFLAGS"].split() and flag in env["CXXFLAGS"].split() for flag in compiler_flags("x86_64"))


@pytest.mark.skipif(not X86, reason="AMX is an x86 extension")
def test_the_detector_sees_llama_cpps_amx_kernels_and_our_flags_remove_them(ggml_source, tmp_path):
    """A build for an AMX CPU holds the kernels; the same build with our flags does not (in either order)."""
    amx = compile_amx_source(ggml_source, tmp_path / "libggml-cpu-amx.so")
    assert has_amx_kernels(amx)
    assert not has_amx_kernels(compile_amx_source(ggml_source, tmp_path / "after.o", after=compiler_flags()))
    # CMake puts CMAKE_CXX_FLAGS before ggml's own -march=native; explicit -m flags win from there too.
    assert not has_amx_kernels(compile_amx_source(ggml_source, tmp_path / "before.o", before=compiler_flags()))
    assert amx_libraries(tmp_path) == [amx]


def test_the_installed_wheel_holds_no_amx_kernels():
    folder = wheel_library_dir()
    assert folder is not None, "llama-cpp-python is not installed"
    libraries = cpu_libraries(folder)
    assert libraries, f"no {native_build.CPU_LIBRARY_GLOB} in {folder}"
    assert amx_libraries(folder) == [], "make install should have rebuilt llama-cpp-python without AMX"


def test_the_built_tools_hold_no_amx_kernels_and_record_their_flags():
    tools = LlamaTools.in_folder(tools_folder(load_settings()))
    if not tools.ready():
        pytest.skip(f"llama.cpp's tools are not built in {tools.folder} (make tools)")
    record = json.loads((tools.folder / BUILD_RECORD).read_text())
    assert record["compiler_flags"] == flags_text() and record["amx_kernels"] is False
    assert amx_libraries(tools.folder) == []
    assert build_staleness(tools.folder) is None


def test_tools_built_otherwise_are_stale(tmp_path):
    """A folder from an older LQMF, other flags, or with AMX kernels in its libraries is built again."""
    assert "missing" in build_staleness(tmp_path)
    (tmp_path / BUILD_RECORD).write_text(json.dumps({"version": "0.3.36", "how": "shared"}))
    assert "compiler flags" in build_staleness(tmp_path)
    (tmp_path / BUILD_RECORD).write_text(json.dumps({"compiler_flags": flags_text()}))
    assert build_staleness(tmp_path) is None
    (tmp_path / "libggml-cpu.so.0").write_bytes(b"\0ELF..." + AMX_MARKER + b"...")
    assert "AMX" in build_staleness(tmp_path)


def test_ensure_rebuilds_a_wheel_with_amx_kernels_and_leaves_a_clean_one(tmp_path, monkeypatch):
    """`make install` runs `native_build ensure` every time: an AMX wheel (built earlier, or from pip's cache) is
    rebuilt; a clean one is left alone. The rebuild itself (pip, minutes) is stood in for here."""
    library = tmp_path / "libggml-cpu.so"
    library.write_bytes(b"\0ELF" + AMX_MARKER)
    monkeypatch.setattr(native_build, "wheel_library_dir", lambda: tmp_path)
    rebuilds: list[str] = []

    def rebuild(python):
        rebuilds.append(python)
        library.write_bytes(b"\0ELF clean")
        return 0

    monkeypatch.setattr(native_build, "rebuild_wheel", rebuild)
    assert ensure_wheel("py") == 0 and rebuilds == ["py"]
    assert ensure_wheel("py") == 0 and rebuilds == ["py"]  # clean now: nothing to do
    library.write_bytes(b"\0ELF" + AMX_MARKER)
    monkeypatch.setattr(native_build, "rebuild_wheel", lambda python: 0)  # a rebuild that changed nothing
    assert ensure_wheel("py") == 1


def test_make_install_builds_with_the_flags_and_checks_the_wheel_every_time():
    dry = subprocess.run(["make", "-n", "-B", "install"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    pip_line = next(line for line in dry.splitlines() if "pip install" in line and "-r requirements.txt" in line)
    assert f'CFLAGS="{flags_text()}"' in pip_line and f'CXXFLAGS="{flags_text()}"' in pip_line
    assert "-m lqmf.base.native_build ensure" in dry
    # Without -B (stamps current): the check still runs.
    again = subprocess.run(["make", "-n", "install"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "-m lqmf.base.native_build ensure" in again
