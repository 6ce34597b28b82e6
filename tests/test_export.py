"""Export to existing engines: exact vLLM / llama-server flags per format, the refusals, and the exported
llama-server command actually run on the demo q4_k_m (when llama-server is built)."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from agents.models.export import ExportPlan, export_plan, llama_server_binary, original_model
from lqmf.base.errors import FeatureUnsupported, InvalidRequest, LQMFError
from lqmf.base.processes import end_process
from server.runtime.discovery import ModelRecord, discover, inspect_gguf
from server.runtime.engine import free_port
from tests.conftest import wait_for_health

HEALTH_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def demo(demo_dir) -> dict[str, ModelRecord]:
    return {r.name: r for r in discover(demo_dir)}


@pytest.fixture
def tuned(settings):
    """Settings with a known slot count and context cap, so the flags are exact."""
    return settings.model_copy(update={"parallel": 2, "context_length": 512})


def flag(argv: list[str], name: str) -> str:
    """The value after `name` in argv (exactly once)."""
    assert argv.count(name) == 1, (name, argv)
    return argv[argv.index(name) + 1]


def copy_with_quant(src: Path, dest: Path, quant: dict) -> ModelRecord:
    """A copy of a model folder whose config.json carries `quant` as its quantization_config."""
    shutil.copytree(src, dest)
    (dest / "quantize_config.json").unlink(missing_ok=True)
    config = json.loads((dest / "config.json").read_text())
    config["quantization_config"] = quant
    (dest / "config.json").write_text(json.dumps(config))
    return {r.name: r for r in discover(dest.parent)}[dest.name]


def write_gguf(path: Path, quant_type: str, split_count: int = 1) -> ModelRecord:
    """A tiny GGUF holding one tensor of `quant_type` (and split.count when > 1)."""
    import gguf

    kind = gguf.GGMLQuantizationType[quant_type]
    writer = gguf.GGUFWriter(str(path), "llama")
    if split_count > 1:
        writer.add_uint16("split.count", split_count)
    _, type_size = gguf.GGML_QUANT_SIZES[kind]
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((1, type_size), dtype=np.uint8), raw_dtype=kind)
    writer.add_tensor("output_norm.weight", np.zeros(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    record = inspect_gguf(path, path.stem)
    assert record.usable, record.reason
    return record


# -- vLLM, one test per format -------------------------------------------------------------------------
def test_vllm_gptq_uses_marlin_with_exact_flags(demo, tuned):
    record = demo["demo-gptq-4bit"]
    plan = export_plan(record, "vllm", settings=tuned)
    assert plan.argv == [
        "vllm", "serve", str(record.path), "--quantization", "gptq_marlin", "--dtype", "float16",
        "--served-model-name", "demo-gptq-4bit", "--host", "0.0.0.0", "--port", "8000", "--max-model-len", "1024"]
    assert plan.command == shlex.join(plan.argv) and shlex.split(plan.command) == plan.argv
    assert plan.target == "vllm" and plan.model == "demo-gptq-4bit" and not plan.experimental
    assert any("GPTQ 4-bit, group size 128, desc_act false, sym true" in n for n in plan.notes)
    assert any("VLLM_API_KEY" in n and "0.0.0.0" in n for n in plan.notes)


@pytest.mark.parametrize("change, method", [
    ({"bits": 3}, "gptq"),  # vLLM's gptq kernel takes 3-bit, Marlin does not
    ({"sym": False}, "gptq"),  # Marlin is symmetric only
    ({"group_size": 256}, "gptq"),  # Marlin takes -1/32/64/128
    ({"bits": 8, "group_size": 64}, "gptq_marlin"),
])
def test_vllm_gptq_kernel_follows_the_config(demo, tuned, tmp_path, change, method):
    quant = {**json.loads((demo["demo-gptq-4bit"].path / "config.json").read_text())["quantization_config"], **change}
    record = copy_with_quant(demo["demo-gptq-4bit"].path, tmp_path / "variant", quant)
    plan = export_plan(record, "vllm", settings=tuned, host="127.0.0.1", port=9000)
    assert flag(plan.argv, "--quantization") == method
    assert (flag(plan.argv, "--host"), flag(plan.argv, "--port")) == ("127.0.0.1", "9000")


@pytest.mark.parametrize("bits", [5, 6])
def test_vllm_refuses_gptq_bit_widths_its_kernels_lack(demo, tuned, tmp_path, bits):
    quant = {**json.loads((demo["demo-gptq-4bit"].path / "config.json").read_text())["quantization_config"],
             "bits": bits}
    record = copy_with_quant(demo["demo-gptq-4bit"].path, tmp_path / "odd", quant)
    with pytest.raises(FeatureUnsupported) as err:
        export_plan(record, "vllm", settings=tuned)
    assert f"GPTQ {bits}-bit" in err.value.message and "2, 3, 4 or 8" in err.value.message
    assert "4-bit gptq" in err.value.hint and "demo-hf" in err.value.hint  # the source, from the manifest


def test_vllm_awq_folder_is_exported_though_lqmf_cannot_run_it(demo, tuned, tmp_path):
    awq = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
    record = copy_with_quant(demo["demo-gptq-4bit"].path, tmp_path / "awq", awq)
    assert not record.usable and "awq" in record.reason  # discovery cannot load it ...
    plan = export_plan(record, "vllm", settings=tuned)  # ... vLLM can
    assert plan.argv[:7] == ["vllm", "serve", str(record.path), "--quantization", "awq_marlin", "--dtype", "float16"]
    no_zero = copy_with_quant(demo["demo-gptq-4bit"].path, tmp_path / "awq-nz", {**awq, "zero_point": False})
    assert flag(export_plan(no_zero, "vllm", settings=tuned).argv, "--quantization") == "awq"
    eight = copy_with_quant(demo["demo-gptq-4bit"].path, tmp_path / "awq8", {**awq, "bits": 8})
    with pytest.raises(FeatureUnsupported, match="AWQ 8-bit.*4-bit weights only"):
        export_plan(eight, "vllm", settings=tuned)
    with pytest.raises(FeatureUnsupported, match="GGUF files only"):
        export_plan(record, "llama-server", settings=tuned)
    # Discovery stopped at the method, so export checks the files itself.
    for weights in (tmp_path / "awq-nz").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FeatureUnsupported, match="no weight files"):
        export_plan(no_zero, "vllm", settings=tuned)


@pytest.mark.parametrize("name, kind", [("demo-bnb-nf4", "4-bit nf4"), ("demo-bnb-int8", "8-bit")])
def test_vllm_bitsandbytes(demo, tuned, name, kind):
    plan = export_plan(demo[name], "vllm", settings=tuned)
    assert plan.argv == [
        "vllm", "serve", str(demo[name].path), "--quantization", "bitsandbytes", "--dtype", "bfloat16",
        "--served-model-name", name, "--host", "0.0.0.0", "--port", "8000", "--max-model-len", "1024"]
    assert any(f"bitsandbytes {kind}" in n for n in plan.notes)


def test_vllm_refuses_bitsandbytes_storage_it_cannot_read(demo, tuned, tmp_path):
    quant = {**json.loads((demo["demo-bnb-nf4"].path / "config.json").read_text())["quantization_config"],
             "bnb_4bit_quant_storage": "float16"}
    record = copy_with_quant(demo["demo-bnb-nf4"].path, tmp_path / "bnb", quant)
    assert record.usable
    with pytest.raises(FeatureUnsupported, match="stores its 4-bit weights as float16"):
        export_plan(record, "vllm", settings=tuned)


def test_vllm_plain_hf_has_no_quantization_flag_and_a_dtype(demo, tuned):
    plan = export_plan(demo["demo-hf"], "vllm", settings=tuned, port=8123)
    assert "--quantization" not in plan.argv
    assert plan.argv == ["vllm", "serve", str(demo["demo-hf"].path), "--dtype", "bfloat16",
                         "--served-model-name", "demo-hf", "--host", "0.0.0.0", "--port", "8123",
                         "--max-model-len", "1024"]
    assert any("float32" in n and "--dtype float32" in n for n in plan.notes)


def test_vllm_refuses_a_quant_method_it_cannot_check(demo, tuned, tmp_path):
    record = copy_with_quant(demo["demo-hf"].path, tmp_path / "fp8", {"quant_method": "fp8"})
    with pytest.raises(FeatureUnsupported) as err:
        export_plan(record, "vllm", settings=tuned)
    assert "'fp8'" in err.value.message and "vllm serve" in err.value.hint


# -- vLLM and GGUF: experimental, with the original tokenizer ---------------------------------------------
def test_vllm_gguf_is_experimental_with_the_source_tokenizer(demo, tuned):
    record = demo["demo-q4_k_m"]
    plan = export_plan(record, "vllm", settings=tuned)
    assert plan.experimental
    tokenizer = flag(plan.argv, "--tokenizer")
    assert Path(tokenizer).name == "demo-hf" and (Path(tokenizer) / "tokenizer.json").is_file()
    assert flag(plan.argv, "--hf-config-path") == tokenizer
    assert plan.argv[:3] == ["vllm", "serve", str(record.path)]
    assert flag(plan.argv, "--dtype") == "float16" and flag(plan.argv, "--max-model-len") == "1024"
    assert plan.notes[0].startswith("EXPERIMENTAL") and "vllm-gguf-plugin" in plan.notes[1]
    assert "Q4_K" in plan.notes[2] and "Q6_K" in plan.notes[2]  # read from the file's tensors


def test_gguf_tokenizer_follows_moved_manifests_and_prefers_the_hub(demo_dir, tuned, tmp_path):
    """q4_k_m -> f16 -> demo-hf, recorded at paths that no longer exist: found beside the model."""
    for name in ("demo-q4_k_m.gguf", "demo-f16.gguf"):
        shutil.copy2(demo_dir / name, tmp_path / name)
    shutil.copytree(demo_dir / "demo-hf", tmp_path / "demo-hf")
    for name, source in (("demo-q4_k_m.gguf", {"format": "gguf", "path": "/gone/demo-f16.gguf"}),
                         ("demo-f16.gguf", {"format": "hf", "path": "/gone/demo-hf"})):
        manifest = json.loads((demo_dir / f"{name}.lqmf.json").read_text())
        (tmp_path / f"{name}.lqmf.json").write_text(json.dumps({**manifest, "source": source}))
    record = {r.name: r for r in discover(tmp_path)}["demo-q4_k_m"]
    assert original_model(record, tuned) == str(tmp_path / "demo-hf")
    # The HF folder came from the Hub: the repo id is what a serving machine can fetch.
    hf_manifest = tmp_path / "demo-hf" / "lqmf.json"
    data = json.loads(hf_manifest.read_text())
    source = {"hub": "org/base", "path": "hf://org/base@abc", "format": "hf"}
    hf_manifest.write_text(json.dumps({**data, "source": source}))
    plan = export_plan(record, "vllm", settings=tuned)
    assert flag(plan.argv, "--tokenizer") == "org/base" and flag(plan.argv, "--hf-config-path") == "org/base"
    assert any("downloads them from the Hugging Face Hub" in n for n in plan.notes)


def test_gguf_without_a_manifest_says_to_pass_the_tokenizer(demo_dir, tuned, tmp_path):
    shutil.copy2(demo_dir / "demo-q4_k_m.gguf", tmp_path / "bare.gguf")
    record = inspect_gguf(tmp_path / "bare.gguf", "bare")
    plan = export_plan(record, "vllm", settings=tuned)
    assert "--tokenizer" not in plan.argv and plan.experimental
    assert any("vLLM needs --tokenizer" in n for n in plan.notes)


def test_vllm_refuses_gguf_types_its_kernels_lack_and_split_files(tuned, tmp_path):
    ternary = write_gguf(tmp_path / "ternary.gguf", "TQ1_0")
    with pytest.raises(FeatureUnsupported, match="TQ1_0") as err:
        export_plan(ternary, "vllm", settings=tuned)
    assert "llama-server" in err.value.hint
    assert export_plan(ternary, "llama-server", settings=tuned).argv[2] == str(ternary.path)  # llama.cpp reads it
    part = write_gguf(tmp_path / "part.gguf", "Q8_0", split_count=3)
    with pytest.raises(FeatureUnsupported, match="split into 3 files") as err:
        export_plan(part, "vllm", settings=tuned)
    assert "--merge" in err.value.hint


# -- llama-server --------------------------------------------------------------------------------------
def test_llama_server_flags_match_how_lqmf_runs_it(demo, tuned, settings):
    record = demo["demo-q4_k_m"]
    plan = export_plan(record, "llama-server", settings=tuned)
    binary = llama_server_binary(tuned)
    assert plan.argv == [
        str(binary) if binary else "llama-server", "-m", str(record.path), "--host", "0.0.0.0", "--port", "8080",
        "-c", "1024", "--parallel", "2", "--alias", "demo-q4_k_m", "--jinja", "--no-webui", "--metrics"]
    assert not plan.experimental and plan.target == "llama-server"
    assert any("2 parallel slots of 512 tokens" in n for n in plan.notes)
    key_note = next(n for n in plan.notes if "LLAMA_API_KEY" in n and "--api-key-file" in n)
    assert "never a key on the command line" in key_note and "--api-key " not in plan.command
    # The model's trained context caps a slot when LQMF's own cap is larger.
    wide = export_plan(record, "llama-server",
                       settings=settings.model_copy(update={"parallel": 3, "context_length": 4096}))
    assert (flag(wide.argv, "-c"), flag(wide.argv, "--parallel")) == ("3072", "3")


def test_llama_server_binary_falls_back_to_path(demo, tuned, tmp_path):
    bare = tuned.model_copy(update={"tools_dir_override": tmp_path})
    assert llama_server_binary(bare) is None
    plan = export_plan(demo["demo-q8_0"], "llama-server", settings=bare, host="127.0.0.1", port=8081)
    assert plan.argv[0] == "llama-server" and any("looked up on PATH" in n for n in plan.notes)
    assert any("listens on 127.0.0.1 only" in n for n in plan.notes)


@pytest.mark.parametrize("name", ["demo-gptq-4bit", "demo-bnb-nf4", "demo-hf"])
def test_llama_server_refuses_non_gguf_with_a_quantize_hint(demo, tuned, name):
    with pytest.raises(FeatureUnsupported) as err:
        export_plan(demo[name], "llama-server", settings=tuned)
    assert "GGUF files only" in err.value.message
    assert "quantize demo-hf to 4-bit gguf" in err.value.hint and f"export {name} for vllm" in err.value.hint


def test_command_quotes_paths_with_spaces(demo_dir, tuned, tmp_path):
    folder = tmp_path / "my models"
    folder.mkdir()
    shutil.copy2(demo_dir / "demo-q4_k_m.gguf", folder / "demo q4.gguf")
    record = inspect_gguf(folder / "demo q4.gguf", "demo q4")
    for target in ("llama-server", "vllm"):
        plan = export_plan(record, target, settings=tuned)
        assert f"'{folder / 'demo q4.gguf'}'" in plan.command
        assert shlex.split(plan.command) == plan.argv


# -- what cannot be exported ----------------------------------------------------------------------------
def test_unusable_remote_and_unknown_targets_are_refused(demo, tuned, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"NOPE" + b"\0" * 64)
    record = inspect_gguf(broken, "broken")
    for target in ("vllm", "llama-server"):
        with pytest.raises(FeatureUnsupported, match="broken cannot be served: not a GGUF file"):
            export_plan(record, target, settings=tuned)
    remote = ModelRecord(name="gpt-remote", path=Path("https://api.example.com/v1"), format="remote")
    for target in ("vllm", "llama-server"):
        with pytest.raises(FeatureUnsupported, match="remote model") as err:
            export_plan(remote, target, settings=tuned)
        assert "add endpoint" in err.value.hint
    with pytest.raises(InvalidRequest, match="unknown export target 'tgi'"):
        export_plan(demo["demo-q4_k_m"], "tgi", settings=tuned)
    with pytest.raises(InvalidRequest, match="port 70000"):
        export_plan(demo["demo-q4_k_m"], "vllm", settings=tuned, port=70000)
    assert issubclass(FeatureUnsupported, LQMFError) and issubclass(InvalidRequest, LQMFError)


def test_plan_as_dict_for_the_api(demo, tuned):
    plan = export_plan(demo["demo-q4_k_m"], "LLAMA-SERVER", settings=tuned)  # target names are case-blind
    for spelling in ("llama server", "llama_server", "Llama.cpp"):  # as the shell's parser may pass them
        assert export_plan(demo["demo-q4_k_m"], spelling, settings=tuned).argv == plan.argv
    data = plan.to_dict()
    assert isinstance(plan, ExportPlan) and data["target"] == "llama-server"
    assert data["command"] == plan.command and data["argv"] == plan.argv and data["experimental"] is False


# -- the strongest check: run what was exported ----------------------------------------------------------
def test_exported_llama_server_command_serves_the_demo_model(demo, settings, tmp_path):
    record = demo["demo-q4_k_m"]
    tuned = settings.model_copy(update={"parallel": 2})
    if llama_server_binary(tuned) is None:
        pytest.skip("llama-server is not built here (`make tools` builds it): the exported command cannot be run")
    port = free_port()
    plan = export_plan(record, "llama-server", settings=tuned, host="127.0.0.1", port=port)
    argv = shlex.split(plan.command)  # exactly what a user pastes
    assert argv == plan.argv
    key = secrets.token_urlsafe(24)  # given as the notes say: in the environment, not in the command
    env = {**os.environ, "LLAMA_API_KEY": key}
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    log_path = tmp_path / "llama-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        wait_for_health(proc, url, HEALTH_TIMEOUT_S, log_path.read_text)
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401  # the key is required
        models = httpx.get(f"{url}/v1/models", headers=auth, timeout=10)
        assert models.status_code == 200
        assert "demo-q4_k_m" in [m["id"] for m in models.json()["data"]]
        done = httpx.post(f"{url}/v1/completions", headers=auth, timeout=60,
                          json={"model": "demo-q4_k_m", "prompt": "def main(", "max_tokens": 4, "temperature": 0})
        assert done.status_code == 200, done.text
        body = done.json()
        assert isinstance(body["choices"][0]["text"], str)
        assert 1 <= body["usage"]["completion_tokens"] <= 4
        slots = httpx.get(f"{url}/props", headers=auth, timeout=10).json()
        assert slots["total_slots"] == 2 and slots["default_generation_settings"]["n_ctx"] == 1024
    finally:
        end_process(proc)
    assert proc.poll() is not None
