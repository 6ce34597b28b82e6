"""The quantization core on real files: every GGUF level, GPTQ 8-bit, bnb fp4, and every error path."""

from __future__ import annotations

import json
import os
from collections import namedtuple

import pytest

from agents.quantization.calibration import default_calibration, load_calibration
from agents.quantization.gguf_quant import GGUF_LEVELS, convert_to_gguf, quantize_gguf, read_gguf_tensors
from agents.quantization.hf_quant import quantize_bnb, quantize_gptq
from lqmf.base import atomic
from lqmf.base.errors import (
    InsufficientDisk,
    QuantizationError,
    TokenizerNotSupported,
    UnsupportedArchitecture,
)
from lqmf.base.manifest import read_manifest
from server.runtime.discovery import discover
from tests.loaders import greedy_twice
from tests.tiny_models import tiny_llama, tiny_qwen2_with_new_bpe, unknown_architecture


@pytest.fixture(scope="module")
def f16(demo_dir):
    return demo_dir / "demo-f16.gguf"


# Levels that cannot be made without an importance matrix are covered in test_imatrix.py.
@pytest.mark.parametrize("level", sorted(n for n, s in GGUF_LEVELS.items() if not s.needs_imatrix))
def test_every_gguf_level_quantizes_to_its_type(f16, tmp_path, level):
    out = tmp_path / f"demo-{level}.gguf"
    manifest = quantize_gguf(f16, out, level)
    report = read_gguf_tensors(out)
    spec = GGUF_LEVELS[level]
    assert report.histogram.get(spec.main_type, 0) > 0, report.histogram
    assert manifest.fallbacks == [], manifest.fallbacks
    assert manifest.level == level and manifest.bits == spec.bits
    assert read_manifest(out)["tensor_types"] == report.histogram
    assert sorted(os.listdir(tmp_path)) == sorted([out.name, out.name + ".lqmf.json"])


def test_convert_to_bf16(demo_dir, tmp_path, settings):
    out = tmp_path / "demo-bf16.gguf"
    manifest = convert_to_gguf(demo_dir / "demo-hf", out, settings, "bf16")
    assert manifest.tensor_types.get("BF16", 0) > 0 and manifest.bits == 16
    assert manifest.source["sha256"] == read_manifest(demo_dir / "demo-f16.gguf")["source"]["sha256"]


def test_k_quant_fallbacks_are_reported(demo_dir, tmp_path, settings):
    """Rows of 64 cannot hold K-quants: llama.cpp falls back, and the manifest says so."""
    src = tiny_llama(demo_dir / "demo-hf", tmp_path / "narrow", hidden=64, intermediate=128)
    convert_to_gguf(src, tmp_path / "narrow-f16.gguf", settings, "f16")
    manifest = quantize_gguf(tmp_path / "narrow-f16.gguf", tmp_path / "narrow-q4_k_m.gguf", "q4_k_m")
    assert manifest.fallbacks, "llama.cpp fell back but nothing was reported"
    assert all(f["type"] not in {"Q4_K", "Q6_K"} for f in manifest.fallbacks)
    assert manifest.warnings and "divisible by 256" in manifest.warnings[0]
    assert read_manifest(tmp_path / "narrow-q4_k_m.gguf")["fallbacks"] == manifest.fallbacks


def test_unsupported_architecture_is_explained(demo_dir, tmp_path, settings):
    src = unknown_architecture(demo_dir / "demo-hf", tmp_path / "frob")
    with pytest.raises(UnsupportedArchitecture, match="FrobnicatorForCausalLM") as info:
        convert_to_gguf(src, tmp_path / "out" / "frob.gguf", settings)
    assert "gptq" in info.value.hint
    assert discover(tmp_path / "out") == [] and os.listdir(tmp_path / "out") == []


def test_refused_tokenizer_is_explained(tmp_path, settings):
    src = tiny_qwen2_with_new_bpe(tmp_path / "newbpe")
    with pytest.raises(TokenizerNotSupported, match="pre-tokenizer"):
        convert_to_gguf(src, tmp_path / "newbpe.gguf", settings)
    assert not (tmp_path / "newbpe.gguf").exists()


def test_not_enough_disk_refuses_before_writing(demo_dir, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage(10 << 20, 9 << 20, 1 << 20))
    with pytest.raises(InsufficientDisk, match="not enough disk"):
        quantize_gguf(demo_dir / "demo-f16.gguf", tmp_path / "x.gguf", "q8_0")
    assert os.listdir(tmp_path) == []


def test_truncated_source_fails_and_leaves_nothing_discoverable(demo_dir, tmp_path):
    broken = tmp_path / "src" / "broken-f16.gguf"
    broken.parent.mkdir()
    data = (demo_dir / "demo-f16.gguf").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    out_dir = tmp_path / "models"
    with pytest.raises(QuantizationError, match="could not quantize"):
        quantize_gguf(broken, out_dir / "broken-q4_k_m.gguf", "q4_k_m")
    assert discover(out_dir) == [] and (not out_dir.exists() or os.listdir(out_dir) == [])


def test_failure_midway_through_a_save_leaves_nothing(demo_dir, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    real_save = PreTrainedModel.save_pretrained

    def save_then_die(self, save_directory, *args, **kwargs):
        real_save(self, save_directory, *args, **kwargs)  # the weights are really written...
        raise OSError("disk vanished")  # ...and then the run dies before it completes

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_then_die)
    with pytest.raises(OSError, match="disk vanished"):
        quantize_bnb(demo_dir / "demo-hf", tmp_path / "demo-bnb-fp4", "fp4")
    assert os.listdir(tmp_path) == [] and discover(tmp_path) == []


def test_bnb_fp4_roundtrips(demo_dir, tmp_path):
    out = tmp_path / "demo-bnb-fp4"
    manifest = quantize_bnb(demo_dir / "demo-hf", out, "fp4")
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["bnb_4bit_quant_type"] == "fp4" and manifest.level == "fp4"
    first, second = greedy_twice(out, "bnb")
    assert first.strip() and first == second


@pytest.mark.slow
def test_gptq_8bit_with_a_calibration_file(demo_dir, tmp_path):
    calibration = tmp_path / "calib.jsonl"
    texts = [t for t in default_calibration(16)]
    calibration.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    out = tmp_path / "models" / "demo-gptq-8bit"
    manifest = quantize_gptq(demo_dir / "demo-hf", out, bits=8, calibration_file=calibration)
    assert manifest.bits == 8 and manifest.details["calibration_samples"] == 16
    assert json.loads((out / "config.json").read_text())["quantization_config"]["bits"] == 8
    gptq4 = read_manifest(demo_dir / "demo-gptq-4bit")["bits_per_weight"]
    assert manifest.bits_per_weight > gptq4
    first, second = greedy_twice(out, "gptq")
    assert first.strip() and first == second
    assert [r.format for r in discover(out.parent)] == ["gptq"]


def test_unknown_levels_and_modes_are_refused(demo_dir, tmp_path):
    with pytest.raises(QuantizationError, match="choose one of"):
        quantize_gguf(demo_dir / "demo-f16.gguf", tmp_path / "x.gguf", "q4_k_x")
    with pytest.raises(QuantizationError, match="nf4"):
        quantize_bnb(demo_dir / "demo-hf", tmp_path / "y", "int3")
    with pytest.raises(QuantizationError, match="bits=4"):
        quantize_gptq(demo_dir / "demo-hf", tmp_path / "z", bits=3)
    assert os.listdir(tmp_path) == []


def test_calibration_sources(tmp_path):
    default = default_calibration(8)
    assert len(default) == 8 and default == default_calibration(8)
    assert all(len(s.split()) >= 10 for s in default)
    txt = tmp_path / "c.txt"
    txt.write_text("short\n\n" + "a real paragraph " * 10 + "\n\n" + "another long paragraph " * 5)
    assert len(load_calibration(txt)) == 2
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"text": "fine fine fine fine fine fine fine fine fine fine"}\nnot json\n')
    with pytest.raises(QuantizationError, match="c.jsonl:2"):
        load_calibration(bad)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("too short")
    with pytest.raises(QuantizationError, match="at least 10 words"):
        load_calibration(tiny)
    with pytest.raises(QuantizationError, match="does not exist"):
        load_calibration(tmp_path / "missing.txt")


def test_conversion_reports_each_tensor_as_it_streams(demo_dir, tmp_path, settings):
    """The converter's per-tensor lines move the progress during the step, not only at its end."""
    import time

    calls: list[tuple[float, int, int]] = []
    convert_to_gguf(demo_dir / "demo-hf", tmp_path / "p-f16.gguf", settings, "f16",
                    on_tensor=lambda what, done, total: calls.append((time.perf_counter(), done, total)))
    tensors = read_gguf_tensors(tmp_path / "p-f16.gguf")
    total = sum(tensors.histogram.values())
    assert {t for _, _, t in calls} == {total}  # 39 on the demo: the source's safetensors tensors
    done = [d for _, d, _ in calls]
    assert done == sorted(done) and done[-1] == total
    assert len(set(done)) >= total - 2  # one call per tensor, not a jump from 0 to the end


def test_in_process_quantization_reports_llama_cpp_tensor_lines(f16, tmp_path):
    calls: list[tuple[int, int]] = []
    quantize_gguf(f16, tmp_path / "p-q4_k_m.gguf", "q4_k_m", on_tensor=lambda what, d, t: calls.append((d, t)))
    n = sum(read_gguf_tensors(f16).histogram.values())
    assert calls == [(i, n) for i in range(1, n + 1)]
    # The process-wide log callback is llama-cpp-python's own again afterwards.
    calls.clear()
    quantize_gguf(f16, tmp_path / "p-q8_0.gguf", "q8_0")
    assert calls == []


def test_tensor_lines_of_a_streaming_child_are_read_as_they_come(tmp_path):
    """llama-quantize's "[ n/ N]" lines (here printed by a stand-in) reach the callback before it exits."""
    import sys
    import time

    from agents.quantization.llama_output import tensor_lines
    from lqmf.base.processes import run_child_lines

    script = ("import sys, time\nfor i in range(1, 4):\n"
              "    print(f'[{i:4d}/{3:4d}] blk.{i}.weight - [256, 256], type = f16, converting to q4_K .. ', "
              "flush=True)\n    time.sleep(0.3)\nsys.stdout.write('Writing: 50%\\rWriting: 100%\\n')\n")
    seen: list[tuple[float, int, int]] = []
    start = time.perf_counter()
    code, output = run_child_lines([sys.executable, "-c", script],
                                   tensor_lines(lambda what, d, t: seen.append((time.perf_counter() - start, d, t))))
    assert code == 0 and "Writing: 100%" in output
    assert [(d, t) for _, d, t in seen] == [(1, 3), (2, 3), (3, 3)]
    assert seen[1][0] - seen[0][0] > 0.2  # streamed, not all read at exit
