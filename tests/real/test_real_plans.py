"""Shape-aware plans on SmolLM2-135M (576 wide): the q4_k_m size counts llama.cpp's fallbacks, GPTQ's group size
128 is refused before work starts and the offered 64 makes a verified variant, quietly."""

from __future__ import annotations

import pytest

from agents.quantization.gguf_quant import convert_to_gguf, quantize_gguf
from agents.quantization.shapes import read_gguf_header

pytestmark = pytest.mark.real

USUAL_LEVELS = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k", "iq4_nl")


@pytest.fixture(scope="module")
def smol_f16(smol_hf, real_models, tmp_path_factory):
    """SmolLM2 as llama.cpp's converter makes it, the float GGUF every level is quantized from."""
    out = tmp_path_factory.mktemp("smol-plans") / "smol-f16.gguf"
    convert_to_gguf(smol_hf, out, real_models.settings(), "f16")
    return out


def _histogram(gguf) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tensor in read_gguf_header(gguf).tensors:
        counts[tensor.dtype] = counts.get(tensor.dtype, 0) + 1
    return dict(sorted(counts.items()))


@pytest.mark.parametrize("level", USUAL_LEVELS)
def test_gguf_plan_from_the_hf_folder_is_the_real_file(library, smol_f16, tmp_path, level):
    """Within 5% (in fact within a kilobyte: only the vocabulary's metadata is estimated), types and all."""
    plan = library.quantize("smol-hf", "gguf", level, name=f"plan-{level}").plan
    out = tmp_path / f"smol-{level}.gguf"
    quantize_gguf(smol_f16, out, level)
    assert abs(plan.expected_size_bytes / out.stat().st_size - 1) < 0.05, (plan.expected_size_bytes, level)
    assert plan.tensor_types == _histogram(out)


def test_q4_k_m_plan_says_its_rows_do_not_fit_and_offers_iq4_nl(library):
    plan = library.quantize("smol-hf", "gguf", "q4_k_m", name="plan-q4").plan
    note = next(n for n in plan.notes if "fall back" in n)
    assert note.startswith("180 of 211 weight matrices") and "rows are 576 wide, not a multiple of 256" in note
    assert plan.expected_bits_per_weight > 6  # what llama.cpp will write, not q4_k_m's nominal 4.89
    assert plan.alternative == "iq4_nl" and any("quantize smol-hf to iq4_nl" in n for n in plan.notes)


def test_gptq_group_size_128_is_refused_before_work_starts(library):
    refused = library.quantize("smol-hf", "gptq", bits=4)
    assert not refused.runnable
    assert "576 input columns, not a multiple of group size 128" in refused.problems[0]
    assert refused.plan.alternative == "with group size 64"
    assert library.quantize("smol-hf", "gptq", bits=4, group_size=64).runnable


@pytest.mark.slow
def test_gptq_with_the_offered_group_size_is_a_verified_variant(library, monkeypatch, capfd):
    """Minutes on 2 cores; nothing of GPTQModel reaches the terminal."""
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # GPTQModel draws its bars outside pytest only
    planned = library.quantize("smol-hf", "gptq", bits=4, group_size=64)
    done = planned.run()
    out, err = capfd.readouterr()
    assert "GPT-QModel" not in out + err and "Quantizing layer" not in out + err
    assert done.manifest["level"] == "4bit-g64" and done.manifest["details"]["verified"]["token"] >= 0
    assert abs(planned.plan.expected_size_bytes / done.manifest["size_bytes"] - 1) < 0.05


@pytest.mark.parametrize("level", ["q8_0", "q4_k_m"])
def test_minilm_plan_counts_its_384_wide_fallbacks(library, minilm_hf, real_models, tmp_path, level):
    """BERT: the converter's own names (its pooler left out) and phantom-space vocabulary, 384-wide rows."""
    plan = library.quantize("minilm-hf", "gguf", level, name=f"plan-minilm-{level}").plan
    f16 = tmp_path / "minilm-f16.gguf"
    convert_to_gguf(minilm_hf, f16, real_models.settings(), "f16")
    out = tmp_path / f"minilm-{level}.gguf"
    quantize_gguf(f16, out, level)
    assert abs(plan.expected_size_bytes / out.stat().st_size - 1) < 0.05
    assert plan.tensor_types == _histogram(out)
