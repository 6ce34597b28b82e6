"""How llama.cpp's native code is compiled here, and what a built library holds.

One set of compiler flags serves both builds of llama.cpp: the llama-cpp-python wheel pip compiles
(`make install`) and the llama-server / llama-quantize / llama-imatrix tools (`make tools`).

Why AMX is left out: on Intel Xeons with AMX (Sapphire Rapids and later), a `-march=native` build
compiles ggml's AMX kernels in; ggml then repacks q8_0, q4_0, q4_1 and q4_K weights into its AMX
buffer, and its AMX matrix multiply segfaults on the first decode (llama.cpp issue #20824, open; the
per-thread XTILEDATA permission fix, PR #26954, is not merged; Ollama dropped its AMX build variant,
#9203). `-mno-amx-*` after `-march=native` keeps every other native feature (AVX-512, VNNI). GCC
expands `-march=native` ahead of the explicit `-m` flags, and clang applies explicit feature flags on
top of `-march`, so these flags win wherever CMake puts them.

This module imports only the standard library: the Makefile runs it with the system Python, before
the virtual environment holds anything.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import platform
import subprocess
import sys
from importlib import metadata
from importlib import util as import_util
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

AMX_OFF = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})
# A string ggml compiles in only with its AMX kernels (ggml/src/ggml-cpu/amx/amx.cpp, under
# `#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)`): its presence means the kernels are there.
AMX_MARKER = b"amx repack tensor"
CPU_LIBRARY_GLOB = "libggml-cpu*.so*"
PACKAGE = "llama-cpp-python"


def compiler_flags(machine: Optional[str] = None) -> tuple[str, ...]:
    """The C/C++ flags every llama.cpp build of this installation adds (none off x86)."""
    machine = (machine or platform.machine()).lower()
    return AMX_OFF if machine in X86_MACHINES else ()


def flags_text(machine: Optional[str] = None) -> str:
    """compiler_flags() as one string (CFLAGS, CMAKE_C_FLAGS, build.json)."""
    return " ".join(compiler_flags(machine))


def build_environment(machine: Optional[str] = None) -> dict[str, str]:
    """os.environ with CFLAGS/CXXFLAGS carrying compiler_flags() (CMake starts from them)."""
    env = dict(os.environ)
    extra = flags_text(machine)
    if extra:
        for name in ("CFLAGS", "CXXFLAGS"):
            env[name] = f"{env.get(name, '')} {extra}".strip()
    return env


def has_amx_kernels(library: Path) -> bool:
    """True when the built library holds ggml's AMX kernels."""
    with open(library, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(AMX_MARKER) != -1


def cpu_libraries(folder: Path) -> list[Path]:
    """ggml's CPU backend libraries in `folder` (the real files, not their symlinks)."""
    return sorted(p for p in folder.glob(CPU_LIBRARY_GLOB) if p.is_file() and not p.is_symlink())


def amx_libraries(folder: Path) -> list[Path]:
    """The CPU libraries in `folder` that hold the AMX kernels."""
    return [p for p in cpu_libraries(folder) if has_amx_kernels(p)]


def wheel_library_dir() -> Optional[Path]:
    """Where the installed llama-cpp-python keeps libllama.so and libggml*.so (None: not installed)."""
    spec = import_util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


def libraries_digest(folders: list[Path]) -> str:
    """A short digest of the CPU libraries in `folders`: which build of ggml would run."""
    digest = hashlib.sha256()
    for folder in folders:
        for library in cpu_libraries(folder):
            digest.update(library.name.encode())
            with open(library, "rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def rebuild_wheel(python: str = sys.executable) -> int:
    """Compile llama-cpp-python again from its sdist with compiler_flags(); pip's exit code.

    The wheel pip cached from the earlier build goes first, or pip would install it again.
    """
    version = metadata.version(PACKAGE)
    env = build_environment()
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "cache", "remove", "llama_cpp_python"], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run([*pip, "install", "--force-reinstall", "--no-deps", "--no-binary", PACKAGE,
                           f"{PACKAGE}=={version}"], env=env, check=False).returncode


def ensure_wheel(python: str = sys.executable) -> int:
    """Rebuild llama-cpp-python when its CPU library holds the AMX kernels; 0 when the wheel is clean."""
    folder = wheel_library_dir()
    if folder is None:
        sys.stderr.write(f"[native-build] {PACKAGE} is not installed: run `make install`\n")
        return 1
    found = amx_libraries(folder)
    if not found:
        return 0
    sys.stderr.write(
        f"[native-build] {', '.join(p.name for p in found)} in {folder} holds llama.cpp's AMX kernels, which "
        "segfault on the first decode on AMX CPUs (llama.cpp #20824): rebuilding "
        f"{PACKAGE} with {flags_text()} (several minutes, once)\n")
    code = rebuild_wheel(python)
    if code != 0:
        sys.stderr.write(f"[native-build] the rebuild of {PACKAGE} failed (pip exited {code})\n")
        return code
    # The rebuilt package lives in the same folder; scan it again in a fresh process's view of the files.
    still = amx_libraries(folder)
    if still:
        sys.stderr.write(f"[native-build] {still[0]} still holds the AMX kernels after the rebuild: the compiler "
                         f"ignored {flags_text()}; report this with `{python} -m pip config list` and `cc -v`\n")
        return 1
    sys.stderr.write(f"[native-build] {PACKAGE} rebuilt without the AMX kernels\n")
    return 0


def _print_flags() -> int:
    sys.stdout.write(flags_text() + "\n")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m lqmf.base.native_build flags|ensure`: print the build flags, or rebuild a wheel that has AMX."""
    args = sys.argv[1:] if argv is None else argv
    commands = {"flags": _print_flags, "ensure": ensure_wheel}
    if len(args) != 1 or args[0] not in commands:
        sys.stderr.write(f"usage: python -m lqmf.base.native_build {'|'.join(commands)}\n")
        return 2
    return commands[args[0]]()


if __name__ == "__main__":
    sys.exit(main())
