"""Hand a model LQMF made to an existing serving engine: the exact `vllm serve` or `llama-server` command.

LQMF is the factory (it quantizes), the gateway (it routes to servers registered as endpoints) and
the measurement; it is never the cluster. `export_plan` checks, from the artifact's own files, that
the chosen engine can serve it (quantization_config for GPTQ / AWQ / bitsandbytes, the tensor types
of a GGUF) and returns the command line to paste on the serving machine, with the caveats in plain
words. It starts nothing and writes nothing.

What vLLM accepts (checked against vLLM's sources and docs, docs.vllm.ai/features/quantization):
- GPTQ: 2, 3, 4 or 8 bits (`--quantization gptq`); the faster Marlin kernels (`gptq_marlin`) take
  symmetric 4- or 8-bit weights with a group size of -1, 32, 64 or 128.
- AWQ: 4 bits only (`awq`); `awq_marlin` when zero points are on and the group size is one of the above.
- bitsandbytes: pre-quantized 4-bit (nf4/fp4) and 8-bit checkpoints stored as uint8 (`bitsandbytes`).
- GGUF: experimental, single file, with the original model's tokenizer (`--tokenizer`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from lqmf.base.errors import FeatureUnsupported, InvalidRequest, LQMFError

if TYPE_CHECKING:
    from lqmf.base.settings import Settings
    from server.runtime.discovery import ModelRecord

log = logging.getLogger(__name__)

VLLM = "vllm"
LLAMA_SERVER = "llama-server"
# Spellings a user (or the shell's parser) may give, after lower-casing and turning spaces and _ into -.
TARGET_NAMES = {"vllm": VLLM, "llama-server": LLAMA_SERVER, "llamaserver": LLAMA_SERVER,
                "llama.cpp": LLAMA_SERVER, "llamacpp": LLAMA_SERVER}
DEFAULT_PORTS = {VLLM: 8000, LLAMA_SERVER: 8080}
# A server exported for scale-out is reached from other machines; the notes say how to protect it.
DEFAULT_HOST = "0.0.0.0"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# vLLM's kernels (vllm/model_executor/layers/quantization/{gptq,gptq_marlin,awq,awq_marlin}.py,
# utils/marlin_utils.py).
GPTQ_BITS = (2, 3, 4, 8)
MARLIN_GPTQ_BITS = (4, 8)  # symmetric only
MARLIN_GROUP_SIZES = (-1, 32, 64, 128)
MARLIN_MIN_K, MARLIN_MIN_N = 128, 64  # a Marlin layer's input / output sizes must be multiples of these
AWQ_BITS = (4,)
BNB_STORAGE = ("uint8",)
# Tensor types vLLM's GGUF kernels read (vllm/model_executor/layers/quantization/gguf.py).
VLLM_GGUF_TYPES = frozenset({
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "IQ1_M", "IQ1_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS", "IQ4_NL",
})
# A checkpoint's dtype -> what vLLM serves it in (float32 would double the memory for no gain).
VLLM_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "f16": "float16", "float16": "float16",
               "f32": "bfloat16", "float32": "bfloat16"}
FORMAT_WORDS = {"gptq": "a GPTQ folder", "bnb": "a bitsandbytes folder", "hf": "an unquantized Hugging Face folder"}
MAX_SOURCE_HOPS = 6  # q4_k_m <- f16.gguf <- HF folder <- Hub: manifests chained this deep at most


@dataclass
class ExportPlan:
    """How to serve one model on one engine: the argv, the same as one line to paste, and the caveats."""

    target: str  # "vllm" | "llama-server"
    model: str  # the model's name in LQMF, also the name the server answers to
    argv: list[str]
    notes: list[str] = field(default_factory=list)
    experimental: bool = False  # true where the engine's own docs call this path experimental
    command: str = field(init=False)  # shlex.join(argv): the exact thing to paste

    def __post_init__(self) -> None:
        self.command = shlex.join(self.argv)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Request:
    """What every builder needs: the model, the settings and where the server listens."""

    record: "ModelRecord"
    settings: "Settings"
    host: str
    port: int


Builder = Callable[[_Request], ExportPlan]


def export_plan(record: "ModelRecord", target: str, *, settings: "Settings", host: Optional[str] = None,
                port: Optional[int] = None) -> ExportPlan:
    """The command that serves `record` on `target` ("vllm" or "llama-server"), checked against its files.

    Raises LQMFError (FeatureUnsupported, InvalidRequest) with what to do instead when the engine
    cannot serve the artifact: an unusable or remote model, a non-GGUF for llama-server, bit widths
    or layouts vLLM's kernels do not take.
    """
    engine = TARGET_NAMES.get(re.sub(r"[\s_]+", "-", str(target).strip().lower()))
    if engine is None:
        raise InvalidRequest(f"unknown export target {target!r}", "export for vllm or for llama-server")
    if record.format == "remote":
        raise FeatureUnsupported(
            f"{record.name} is a remote model: it is already served elsewhere and has no files here to export",
            "export a local model; add more servers of a remote one as a fleet with `add endpoint NAME at URL1, URL2`")
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidRequest(f"port {port} is out of range", "give a port between 1 and 65535")
    request = _Request(record, settings, host or DEFAULT_HOST, int(port or DEFAULT_PORTS[engine]))
    plan = TARGETS[engine](request)
    log.info("export %s for %s: %s", record.name, engine, plan.command)
    return plan


# -- shared checks ------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FeatureUnsupported(f"cannot read {path}: {exc}", "check the model folder's files") from exc
    return data if isinstance(data, dict) else {}


def _folder_config(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model folder's config.json and its quantization config (from quantize_config.json when absent)."""
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    quant = dict(config.get("quantization_config") or {})
    if not quant and (folder / "quantize_config.json").is_file():
        quant = _read_json(folder / "quantize_config.json")
        quant.setdefault("quant_method", "gptq")
    return config, quant


def _require_usable(record: "ModelRecord") -> None:
    """Refuse a model discovery found unusable, with its reason."""
    if not record.usable:
        raise FeatureUnsupported(f"{record.name} cannot be served: {record.reason or 'it is not usable'}",
                                 "`list models` shows why; fix or remove it, then export again")


def _require_files(record: "ModelRecord", folder: Path) -> None:
    """For a folder discovery could not judge (a method LQMF cannot load): weights and a tokenizer present."""
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise FeatureUnsupported(f"{record.name} has no weight files (*.safetensors or *.bin)",
                                 "copy the whole model folder into the models folder")
    if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise FeatureUnsupported(f"{record.name} has no tokenizer files", "copy the model's tokenizer files beside it")


def _security_note(request: _Request, variable: str, flag: str) -> str:
    if request.host in LOOPBACK:
        return (f"It listens on {request.host} only. To require a key, set {variable} in the server's "
                f"environment (or {flag}); never put a key on the command line, where `ps` shows it.")
    return (f"It listens on {request.host}: anyone who can reach port {request.port} can use it. Require a key "
            f"with {flag} or the environment variable {variable} (never a key on the command line, where `ps` "
            "shows it), or firewall the port to the LQMF gateway.")


def _register_note(request: _Request, key_variable: str) -> str:
    where = "SERVER" if request.host in ("0.0.0.0", "::") else request.host
    return (f"Then in LQMF: `add endpoint {request.record.name} at http://{where}:{request.port}/v1 "
            f"model {request.record.name} key from {key_variable}`" + (" (SERVER: its address as LQMF sees it)"
                                                                     if where == "SERVER" else "")
            + "; several URLs, comma-separated, make a fleet.")


# -- vLLM ----------------------------------------------------------------------------------------------
def _vllm_argv(request: _Request, model_arg: str, flags: list[str]) -> list[str]:
    record = request.record
    argv = ["vllm", "serve", model_arg, *flags, "--served-model-name", record.name,
            "--host", request.host, "--port", str(request.port)]
    if record.context_length:
        argv += ["--max-model-len", str(int(record.context_length))]
    return argv


def _vllm_common_notes(request: _Request, where: str) -> list[str]:
    record = request.record
    notes = [f"vllm serve reads {where} from the serving machine's disk: copy it there to the same path, "
             "or change the path in the command."]
    if record.architecture and record.format != "gguf":  # a GGUF names llama.cpp's architecture, not vLLM's
        notes.append(f"vLLM must support the architecture {record.architecture} (its supported-models list).")
    notes.append(_security_note(request, "VLLM_API_KEY", "--api-key"))
    notes.append(_register_note(request, "VLLM_API_KEY"))
    return notes


def _int(quant: dict[str, Any], keys: tuple[str, ...], default: int) -> int:
    """An integer field of a quantization config (the first of `keys` present), refused when it is not one."""
    value = next((quant[k] for k in keys if quant.get(k) is not None), default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FeatureUnsupported(f"quantization_config has {keys[0]}={value!r}, not a number",
                                 "check the model folder's config.json") from None


def _marlin_shape_ok(config: dict[str, Any]) -> bool:
    """Marlin needs every layer's input size a multiple of 128 and output a multiple of 64."""
    sizes = [config.get("hidden_size"), config.get("intermediate_size")]
    known = [int(s) for s in sizes if isinstance(s, int)]
    return all(s % MARLIN_MIN_K == 0 and s % MARLIN_MIN_N == 0 for s in known)


def _requantize_hint(record: "ModelRecord", what: str) -> str:
    source = _source_name(record)
    return f"quantize {source} again to {what}, or export a GGUF of it for llama-server"


def _vllm_gptq(request: _Request, config: dict[str, Any], quant: dict[str, Any]) -> ExportPlan:
    record = request.record
    bits, group = _int(quant, ("bits",), 4), _int(quant, ("group_size",), 128)
    desc_act, sym = bool(quant.get("desc_act", False)), bool(quant.get("sym", True))
    if bits not in GPTQ_BITS:
        raise FeatureUnsupported(
            f"{record.name} is GPTQ {bits}-bit; vLLM's GPTQ kernels take 2, 3, 4 or 8-bit weights only",
            _requantize_hint(record, "4-bit gptq"))
    facts = f"GPTQ {bits}-bit, group size {group}, desc_act {str(desc_act).lower()}, sym {str(sym).lower()}"
    marlin = bits in MARLIN_GPTQ_BITS and sym and group in MARLIN_GROUP_SIZES and _marlin_shape_ok(config)
    method = "gptq_marlin" if marlin else "gptq"
    notes = [f"{facts}: served with vLLM's {method} kernel (--quantization {method}), in float16."]
    if marlin:
        notes.append("Marlin needs an NVIDIA GPU of compute capability 7.5 or newer; on an older one use "
                     "--quantization gptq (the slower kernel).")
    else:
        notes.append("The faster Marlin kernel takes symmetric 4/8-bit weights, group size -1/32/64/128 and "
                     "layer sizes that are multiples of 128; this model is outside that, so the plain gptq kernel.")
    return _kernel_plan(request, method, notes)


def _kernel_plan(request: _Request, method: str, notes: list[str]) -> ExportPlan:
    """A vLLM plan for a quantized folder served by `method`'s kernel, in float16."""
    record = request.record
    return ExportPlan(VLLM, record.name,
                      _vllm_argv(request, str(record.path), ["--quantization", method, "--dtype", "float16"]),
                      notes + _vllm_common_notes(request, f"the folder {record.path}"))


def _vllm_awq(request: _Request, config: dict[str, Any], quant: dict[str, Any]) -> ExportPlan:
    record = request.record
    bits, group = _int(quant, ("bits", "w_bit"), 4), _int(quant, ("group_size", "q_group_size"), 128)
    zero_point = bool(quant.get("zero_point", True))
    if bits not in AWQ_BITS:
        raise FeatureUnsupported(f"{record.name} is AWQ {bits}-bit; vLLM's AWQ kernels take 4-bit weights only",
                                 _requantize_hint(record, "4-bit gptq (or AWQ 4-bit)"))
    marlin = zero_point and group in MARLIN_GROUP_SIZES and _marlin_shape_ok(config)
    method = "awq_marlin" if marlin else "awq"
    notes = [f"AWQ {bits}-bit, group size {group}, zero_point {str(zero_point).lower()}: served with vLLM's "
             f"{method} kernel (--quantization {method}), in float16. LQMF itself cannot run AWQ: "
             "measure it through the endpoint once it is served."]
    if marlin:
        notes.append("Marlin needs an NVIDIA GPU of compute capability 7.5 or newer; on an older one use "
                     "--quantization awq.")
    return _kernel_plan(request, method, notes)


def _vllm_bnb(request: _Request, config: dict[str, Any], quant: dict[str, Any]) -> ExportPlan:
    record = request.record
    storage = str(quant.get("bnb_4bit_quant_storage") or "uint8")
    eight = bool(quant.get("load_in_8bit"))
    if not eight and storage not in BNB_STORAGE:
        raise FeatureUnsupported(
            f"{record.name} stores its 4-bit weights as {storage}; vLLM reads bitsandbytes checkpoints stored as uint8",
            _requantize_hint(record, "nf4 (LQMF saves uint8 storage)"))
    kind = "8-bit (LLM.int8)" if eight else f"4-bit {quant.get('bnb_4bit_quant_type', 'fp4')}"
    notes = [f"bitsandbytes {kind}, pre-quantized: --quantization bitsandbytes, served in bfloat16 "
             "(use --dtype float16 on GPUs older than Ampere). vLLM needs `pip install bitsandbytes` on the server; "
             "vLLM versions before 0.7 also need --load-format bitsandbytes.",
             "bitsandbytes is the slowest of vLLM's quantized paths; for throughput export a GPTQ or AWQ variant."]
    return ExportPlan(VLLM, record.name,
                      _vllm_argv(request, str(record.path), ["--quantization", "bitsandbytes", "--dtype", "bfloat16"]),
                      notes + _vllm_common_notes(request, f"the folder {record.path}"))


def _vllm_hf(request: _Request, config: dict[str, Any], quant: dict[str, Any]) -> ExportPlan:
    record = request.record
    stored = str(config.get("torch_dtype") or config.get("dtype") or record.level or "float32")
    dtype = VLLM_DTYPES.get(stored, "auto")
    notes = [f"Unquantized ({stored}): no --quantization flag, served in {dtype}."]
    if stored in ("float32", "f32"):
        notes.append("The checkpoint is float32; bfloat16 halves the memory. Use --dtype float16 on GPUs older "
                     "than Ampere, or --dtype float32 to serve it exactly as stored.")
    return ExportPlan(VLLM, record.name, _vllm_argv(request, str(record.path), ["--dtype", dtype]),
                      notes + _vllm_common_notes(request, f"the folder {record.path}"))


def _gguf_facts(path: Path) -> tuple[set[str], int]:
    """The tensor types in a GGUF file, and how many files it is split into (1 for a whole file)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    types = {t.tensor_type.name for t in reader.tensors}
    split = reader.fields.get("split.count")
    return types, int(split.contents()) if split is not None else 1


def _vllm_gguf(request: _Request) -> ExportPlan:
    record = request.record
    types, split = _gguf_facts(Path(record.path))
    if split > 1:
        raise FeatureUnsupported(f"{record.name} is one part of a GGUF split into {split} files; "
                                 "vLLM loads single-file GGUF only",
                                 "merge the parts with llama.cpp's `llama-gguf-split --merge`, "
                                 "or serve it on llama-server")
    unsupported = sorted(types - VLLM_GGUF_TYPES)
    if unsupported:
        raise FeatureUnsupported(
            f"{record.name} holds GGUF tensor types vLLM's GGUF kernels cannot read: {', '.join(unsupported)}",
            f"export it for llama-server instead, or quantize {_source_name(record)} to q4_k_m")
    tokenizer = original_model(record, request.settings)
    flags: list[str] = []
    notes = [f"EXPERIMENTAL: vLLM's GGUF support is, in vLLM's own words, highly experimental and under-optimized "
             f"(often several times slower than GPTQ/AWQ on the same GPU). For production, serve {record.name} "
             "on llama-server, or export a GPTQ/AWQ variant for vLLM.",
             "Recent vLLM versions moved GGUF to a plugin: `pip install vllm-gguf-plugin` on the server first.",
             f"{record.level or 'GGUF'} tensors ({', '.join(sorted(types))}) are all types vLLM's GGUF kernels read."]
    if tokenizer is not None:
        flags += ["--tokenizer", tokenizer, "--hf-config-path", tokenizer]
        local = Path(tokenizer).is_absolute()  # else a Hub repo id
        notes.append(f"Tokenizer and config come from the model this GGUF was made from ({tokenizer}), as vLLM "
                     "recommends" + (": copy that folder to the server as well." if local else
                                     ": the server downloads them from the Hugging Face Hub."))
    else:
        notes.append("vLLM needs --tokenizer pointing at the original Hugging Face model (e.g. --tokenizer "
                     "ORG/MODEL); this GGUF's manifest does not say which model it was made from, so add it "
                     "yourself. Without it vLLM converts the GGUF's own tokenizer, slowly and not reliably; "
                     f"and unless transformers knows the GGUF architecture {record.architecture or '(unknown)'}, "
                     "add --hf-config-path ORG/MODEL as well.")
    return ExportPlan(VLLM, record.name, _vllm_argv(request, str(record.path), [*flags, "--dtype", "float16"]),
                      notes + _vllm_common_notes(request, f"the file {record.path}"), experimental=True)


# Quantization methods (config.json's quant_method; "" for none) -> the vLLM plan for such a folder.
VLLM_FOLDER_BUILDERS: dict[str, Callable[[_Request, dict[str, Any], dict[str, Any]], ExportPlan]] = {
    "gptq": _vllm_gptq,
    "awq": _vllm_awq,
    "bitsandbytes": _vllm_bnb,
    "": _vllm_hf,
}
LQMF_LOADS = ("gptq", "bitsandbytes", "")  # methods discovery judges fully (AWQ it marks unusable outright)


def _vllm_plan(request: _Request) -> ExportPlan:
    record = request.record
    if record.format == "gguf":
        _require_usable(record)
        return _vllm_gguf(request)
    folder = Path(record.path)
    if not folder.is_dir():
        _require_usable(record)
        raise FeatureUnsupported(f"{record.name} is neither a GGUF file nor a model folder",
                                 "export a GGUF file or a Hugging Face model folder")
    config, quant = _folder_config(folder)
    method = str(quant.get("quant_method", "")).lower()
    builder = VLLM_FOLDER_BUILDERS.get(method)
    if builder is None:
        raise FeatureUnsupported(
            f"LQMF cannot check {record.name}'s quantization ({method!r}) for vLLM",
            "LQMF exports GPTQ, AWQ, bitsandbytes, plain Hugging Face folders and GGUF; "
            f"vLLM may still read it: try `vllm serve {folder}`")
    if method in LQMF_LOADS:
        _require_usable(record)
    else:  # discovery refused the method itself, so it checked nothing else
        _require_files(record, folder)
    return builder(request, config, quant)


# -- llama-server --------------------------------------------------------------------------------------
def llama_server_binary(settings: "Settings") -> Optional[Path]:
    """The llama-server LQMF built (see agents/quantization/llama_tools.py), or None when it is not built."""
    try:
        from lqmf.base.tools import LlamaTools, tools_folder

        server = LlamaTools.in_folder(tools_folder(settings)).server
    except LQMFError:  # llama-cpp-python is not installed: nothing was built either
        return None
    return server if server.is_file() and os.access(server, os.X_OK) else None


def _llama_server_plan(request: _Request) -> ExportPlan:
    record, settings = request.record, request.settings
    if record.format != "gguf":
        raise FeatureUnsupported(
            "llama-server serves GGUF files only; "
            f"{record.name} is {FORMAT_WORDS.get(record.format, 'not a GGUF file')}",
            f"quantize {_source_name(record)} to 4-bit gguf and export that for llama-server, "
            f"or export {record.name} for vllm")
    _require_usable(record)
    binary = llama_server_binary(settings)
    # As LQMF runs it (server/runtime/engine.py EngineChild.command): -c is the whole KV cache, shared by the
    # slots, each holding the model's trained context capped by LQMF's context_length.
    slot_ctx = min(settings.context_length, int(record.context_length or settings.context_length))
    slots = settings.parallel
    argv = [str(binary) if binary else "llama-server", "-m", str(record.path), "--host", request.host,
            "--port", str(request.port), "-c", str(slot_ctx * slots), "--parallel", str(slots),
            "--alias", record.name, "--jinja", "--no-webui", "--metrics"]
    notes = [f"-c {slot_ctx * slots} is {slots} parallel slots of {slot_ctx} tokens each "
             f"(the model was trained on {record.context_length or 'an unknown context'}); "
             "LQMF_PARALLEL and LQMF_CONTEXT_LENGTH change them.",
             "--jinja applies the chat template stored in the GGUF; --metrics serves Prometheus metrics at /metrics."]
    if binary:
        notes.append(f"{binary} is the llama-server LQMF built (CPU, with its libraries beside it). On another "
                     "machine use that machine's own llama.cpp build (CUDA, Metal...) with the same flags: only "
                     "the first word changes (a build that keeps layers on the CPU by default needs -ngl 99).")
    else:
        notes.append("`llama-server` is looked up on PATH: install llama.cpp on the server (`make tools` builds "
                     "one here).")
    notes.append(f"llama-server reads {record.path} from the serving machine's disk: copy the file there.")
    notes.append(_security_note(request, "LLAMA_API_KEY", "--api-key-file FILE"))
    notes.append(_register_note(request, "LLAMA_API_KEY"))
    return ExportPlan(LLAMA_SERVER, record.name, argv, notes)


TARGETS: dict[str, Builder] = {VLLM: _vllm_plan, LLAMA_SERVER: _llama_server_plan}


# -- where a model came from ---------------------------------------------------------------------------
def _locate(recorded: str, near: list[Path]) -> Optional[Path]:
    """A source path as recorded, or the same name in one of the `near` folders (a moved models folder)."""
    path = Path(recorded)
    if path.exists():
        return path
    for folder in near:
        candidate = folder / path.name
        if candidate.exists():
            return candidate
    return None


def original_model(record: "ModelRecord", settings: "Settings") -> Optional[str]:
    """The Hugging Face model a GGUF was made from: a Hub repo id when it came from the Hub, else its folder.

    Follows the manifests' `source` back through intermediate GGUFs (q4_k_m <- f16 <- HF folder);
    None when the chain ends without an HF model (a GGUF downloaded as is, a manifest missing).
    """
    from lqmf.base.manifest import read_manifest

    near = [Path(record.path).parent, Path(settings.models_dir)]
    manifest = record.manifest
    for _ in range(MAX_SOURCE_HOPS):
        source = (manifest or {}).get("source") or {}
        fmt = str(source.get("format", ""))
        if fmt == "hf":
            folder = _locate(str(source.get("path", "")), near) if source.get("path") else None
            own = (read_manifest(folder) or {}).get("source", {}) if folder is not None else {}
            hub = own.get("hub") or source.get("hub")
            if hub:
                return str(hub)
            return str(folder) if folder is not None else None
        if fmt != "gguf" or not source.get("path") or str(source.get("path")).startswith("hf://"):
            return None
        parent = _locate(str(source["path"]), near)
        if parent is None:
            return None
        manifest = read_manifest(parent)
    return None


def _source_name(record: "ModelRecord") -> str:
    """What to quantize again: the record itself when it is unquantized, else the source its manifest names."""
    if record.format == "hf":
        return record.name
    source = (record.manifest or {}).get("source") or {}
    if source.get("hub"):
        return str(source["hub"])
    if source.get("path") and not str(source["path"]).startswith("hf://"):
        return Path(str(source["path"])).name
    return "the original model"
