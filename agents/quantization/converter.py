"""llama.cpp's HF -> GGUF converter, taken from the pinned llama-cpp-python source distribution.

The script ships only in the sdist (vendor/llama.cpp, with its `conversion/` package and
`gguf-py/`), not in the installed wheel, so it is fetched through pip once and cached.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Optional

from lqmf.base.atomic import atomic_output
from lqmf.base.errors import (
    QuantizationError,
    TokenizerNotSupported,
    ToolUnavailable,
    UnsupportedArchitecture,
)
from lqmf.base.processes import run_child_captured, run_child_lines
from lqmf.base.progress import Progress
from lqmf.base.settings import Settings
from lqmf.base.tools import llama_cpp_version

log = logging.getLogger(__name__)

SCRIPT = "convert_hf_to_gguf.py"
# What the converter needs from the sdist's vendor/llama.cpp, relative to that folder.
NEEDED = (SCRIPT, "conversion/", "gguf-py/", "LICENSE")
GGUF_OUTTYPES = ("f32", "f16", "bf16")
VENDOR_PREFIX = "vendor/llama.cpp/"
# The converter logs one line per tensor it writes: "INFO:hf-to-gguf:blk.0.attn_q.weight, torch.float32 --> F16, ..."
TENSOR_LINE = re.compile(r"^INFO:hf-to-gguf:[^,\s]+,\s+\S+\s+-->\s")
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b(?::|$)")


def converter_dir(settings: Settings) -> Path:
    return settings.tools_dir / f"llama.cpp-converter-{llama_cpp_version()}"


def ensure_converter(settings: Settings) -> Path:
    """Return the cached converter folder, fetching the sdist through pip the first time."""
    target = converter_dir(settings)
    if (target / SCRIPT).is_file():
        return target
    version = llama_cpp_version()
    log.info("fetching llama.cpp converter from llama-cpp-python==%s sdist", version)
    with tempfile.TemporaryDirectory(prefix="lqmf-sdist-") as download:
        archive = fetch_sdist(version, Path(download))
        with atomic_output(target, is_dir=True) as tmp:
            names = extract_vendor(archive, tmp, _converter_needs)
            if SCRIPT not in names:
                raise ToolUnavailable(f"{archive.name} holds no {VENDOR_PREFIX}{SCRIPT}", "report this version")
    return target


def fetch_sdist(version: str, dest: Path) -> Path:
    """Download the llama-cpp-python `version` source distribution into `dest`; return the archive.

    Shared by the converter and the llama.cpp tools build: both need files that only the sdist has.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
        "--dest", str(dest), f"llama-cpp-python=={version}",
    ]
    code, output = run_child_captured(cmd)
    archives = list(Path(dest).glob("llama_cpp_python-*.tar.gz"))
    if code != 0 or not archives:
        raise ToolUnavailable(
            f"could not download the llama-cpp-python {version} source distribution: "
            f"{output.strip()[-500:]}",
            "check access to the package registry, then run `make setup` again",
        )
    return archives[0]


def extract_vendor(archive: Path, dest: Path, wanted: Callable[[str], bool]) -> set[str]:
    """Extract the sdist's vendor/llama.cpp files for which `wanted(relative path)` holds into `dest`.

    Paths are made relative to vendor/llama.cpp; returns them. Unsafe members are refused by tarfile's
    "data" filter.
    """
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) < 2 or not parts[1].startswith(VENDOR_PREFIX):
                continue
            rel = parts[1][len(VENDOR_PREFIX):]
            if rel and (member.isfile() or member.isdir()) and wanted(rel):
                member.name = rel
                members.append(member)
        tar.extractall(dest, members=members, filter="data")
    return {m.name for m in members}


def _converter_needs(rel: str) -> bool:
    return any(rel == need or (need.endswith("/") and rel.startswith(need)) for need in NEEDED)


def convert_hf_folder(src: Path, out_file: Path, outtype: str, settings: Settings,
                      on_tensor: Optional[Progress] = None) -> str:
    """Run the converter on an HF folder into `out_file`; return its log. Errors are explained.

    `on_tensor("tensors", done, total)` is called as the converter reports each tensor (total: the source's
    safetensors tensors; the converter may skip a few, so the last call is (total, total) on success).
    """
    if outtype not in GGUF_OUTTYPES:
        raise QuantizationError(f"unknown GGUF outtype {outtype!r}", f"use one of {', '.join(GGUF_OUTTYPES)}")
    folder = ensure_converter(settings)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # its lines must arrive as it writes them, not when it exits
    env.pop("NO_LOCAL_GGUF", None)
    cmd = [sys.executable, str(folder / SCRIPT), str(src), "--outfile", str(out_file), "--outtype", outtype]
    total = _source_tensor_count(src) if on_tensor is not None else 0
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        if on_tensor is not None and TENSOR_LINE.match(line):
            done += 1
            on_tensor("tensors", min(done, total), total)

    code, output = run_child_lines(cmd, on_line, env=env)
    if code != 0 or not out_file.is_file():
        log.error("converter failed on %s (exit %s):\n%s", src, code, output)
        raise _explain_converter_failure(output, src)
    if on_tensor is not None:
        on_tensor("tensors", total, total)
    return output


def _source_tensor_count(src: Path) -> int:
    from lqmf.base.source import safetensors_headers

    return sum(len([k for k in header if k != "__metadata__"]) for header in safetensors_headers(src))


def converter_reason(output: str) -> str:
    """What the converter said when it failed: its exception line(s), never the traceback around them."""
    from agents.quantization.faults import strip_traceback

    lines = [line for line in strip_traceback(output).splitlines() if line.strip()]
    raised = [line for line in lines if EXCEPTION_LINE.match(line)]
    if raised:
        return raised[-1].strip()
    errors = [line for line in lines if line.startswith(("ERROR:", "CRITICAL:"))]
    return "\n".join((errors or lines)[-3:]).strip() or "no output"


def _explain_converter_failure(output: str, src: Path) -> QuantizationError:
    tail = converter_reason(output)
    if "pre-tokenizer was not recognized" in output:
        return TokenizerNotSupported(
            f"llama.cpp's converter does not know the BPE pre-tokenizer of {src.name}",
            "use a model with a SentencePiece tokenizer.model, a newer llama-cpp-python, or another method (gptq, bnb)",
        )
    arch = re.search(r"(?:Architecture '?|Model )(\S+?)'? (?:is )?not supported", output)
    if arch:
        return UnsupportedArchitecture(
            f"llama.cpp's converter does not support the architecture {arch.group(1)} of {src.name}",
            "use the gptq or bnb method for this model",
        )
    return QuantizationError(f"llama.cpp's converter failed on {src.name}: {tail}",
                             "see logs/lqmf.log for the converter's full output")


def main() -> int:
    """`python -m agents.quantization.converter`: fetch (or confirm) the cached converter."""
    from lqmf.base.environment import apply_environment_quirks
    from lqmf.base.log import configure_logging
    from lqmf.base.settings import load_settings

    apply_environment_quirks()
    settings = load_settings()
    configure_logging(settings)
    try:
        folder = ensure_converter(settings)
    except ToolUnavailable as exc:
        sys.stderr.write(f"[converter] {exc}\n")
        return 1
    sys.stderr.write(f"[converter] llama.cpp converter ready in {folder}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
