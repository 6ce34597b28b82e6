"""Shape-aware plans: llama.cpp's tensor types predicted before it runs, GPTQ group sizes against every width,
measured bits per weight in listings, and GPTQModel's output kept off the terminal.

The GGUF predictions are held against real quantizations of random models whose widths make llama.cpp fall
back (96 and 160 columns: not a multiple of 256; 80: not even of 32) and of the demo model, tensor by tensor.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents.quantization.gguf_mix import GGML_SIZES, float_gguf, predict_gguf, predict_mix
from agents.quantization.gguf_quant import GGUF_LEVELS, convert_to_gguf, quantize_gguf
from agents.quantization.plan import Machine, QuantRequest, make_plan, source_facts
from agents.quantization.shapes import ModelShapes, Tensor, gptq_problems, read_gguf_header, read_shapes
from server.runtime.discovery import discover
from tests.conftest import REPO

BIG = Machine(available_ram=64 * 2**30, free_disk=500 * 2**30, cpus=2)
CONVERTER = REPO / ".cache" / "tools"
LEVELS = ("q4_k_m", "q4_k_s", "q5_k_m", "q6_k", "q3_k_m", "q3_k_l", "q2_k", "q4_0", "q5_0", "q8_0", "iq4_nl", "iq4_xs")
# name: (transformers class prefix, hidden, intermediate, heads, kv heads, tied embeddings)
ZOO = {
    "wide96": ("Llama", 96, 160, 2, 1, False),  # K-quant fallbacks on every matrix; GPTQ works at group size 32
    "tied80": ("Qwen2", 80, 192, 2, 2, True),  # 80 columns fit no block at all (F16), the output tied to the input
    "gqa4": ("Phi3", 128, 320, 4, 1, False),  # fused attn_qkv, 4 query heads per kv head, ffn_down 320 wide
}


def _tiny(kind: str, hidden: int, intermediate: int, heads: int, kv_heads: int, tied: bool, out: Path,
          demo_hf: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, f"{kind}Config")(
        vocab_size=2048, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128, bos_token_id=1,
        eos_token_id=2, pad_token_id=0, tie_word_embeddings=tied)
    getattr(transformers, f"{kind}ForCausalLM")(config).to(torch.float16).save_pretrained(out)
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(demo_hf / name, out / name)
    return out


@pytest.fixture(scope="module")
def zoo(demo_dir, tmp_path_factory) -> Path:
    """A models folder with the random models above and each one's f16 GGUF made by llama.cpp's converter."""
    from lqmf.base.settings import load_settings

    models = tmp_path_factory.mktemp("shape-zoo")
    for name, spec in ZOO.items():
        folder = _tiny(*spec, models / name, demo_dir / "demo-hf")
        convert_to_gguf(folder, models / f"{name}-f16.gguf", load_settings(), "f16")
    return models


def _converter_dir() -> Path:
    from agents.quantization.converter import converter_dir
    from lqmf.base.settings import load_settings

    return converter_dir(load_settings())


def _plan(models: Path, source: str, **request):
    facts = source_facts({r.name: r for r in discover(models)}[source])
    return make_plan(QuantRequest(model=source, name=request.pop("name", "planned-out"), **request), facts, models,
                     BIG, [], converter_dir=_converter_dir())


def _types(gguf: Path) -> dict[str, str]:
    return {t.name: t.dtype for t in read_gguf_header(gguf).tensors}


# -- GGUF: llama.cpp's choice, predicted ------------------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(ZOO))
def test_predicted_types_are_what_llama_cpp_writes(zoo, tmp_path, model):
    """Every tensor's type, from the f16 GGUF and from the HF folder, equals the quantized file's; sizes follow."""
    f16 = zoo / f"{model}-f16.gguf"
    from_gguf, from_hf = read_shapes(f16, "gguf"), read_shapes(zoo / model, "hf")
    fell_back = 0
    for level in LEVELS:
        out = tmp_path / f"{model}-{level}.gguf"
        quantize_gguf(f16, out, level)
        real, size = _types(out), out.stat().st_size
        exact = predict_gguf(from_gguf, f16, level)
        assert {t.name: t.type for t in exact.tensors} == real, level
        assert exact.file_bytes == size, level  # from the GGUF's own header: to the byte
        planned = predict_gguf(from_hf, zoo / model, level, converter_dir=_converter_dir())
        assert {t.name: t.type for t in planned.tensors} == real, level
        assert abs(planned.file_bytes / size - 1) < 0.01, (level, planned.file_bytes, size)
        fell_back += len(exact.fallbacks)
    assert fell_back, "these widths make llama.cpp fall back: the test would prove nothing without it"


@pytest.mark.parametrize("level", ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k", "iq4_xs"])
def test_demo_plan_size_is_the_real_size(demo_dir, tmp_path, level):
    """The plan's size from demo-hf (its shapes, converter names, vocabulary) is within 1% of llama.cpp's file."""
    out = tmp_path / f"demo-{level}.gguf"
    quantize_gguf(demo_dir / "demo-f16.gguf", out, level)
    plan = _plan(demo_dir, "demo-hf", level=level)
    assert abs(plan.expected_size_bytes / out.stat().st_size - 1) < 0.01, (plan.expected_size_bytes, level)
    assert plan.tensor_types == dict(sorted(_histogram(out).items()))
    measured = json.loads(Path(f"{out}.lqmf.json").read_text())["bits_per_weight"]
    assert abs(plan.expected_bits_per_weight - measured) < 0.01  # the manifest's own measure


def _histogram(gguf: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in _types(gguf).values():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_plan_counts_fallbacks_says_why_and_offers_a_level_that_fits(zoo, tmp_path):
    plan = _plan(zoo, "wide96", level="q4_k_m")
    assert plan.runnable, plan.problems
    note = next(n for n in plan.notes if "fall back" in n)
    assert "Q4_K -> Q5_0" in note and "rows are 96, 160 wide, not a multiple of 256" in note
    assert plan.alternative == "iq4_nl" and any("quantize wide96 to iq4_nl" in n for n in plan.notes)
    asked, offered = tmp_path / "asked.gguf", tmp_path / "offered.gguf"
    quantize_gguf(zoo / "wide96-f16.gguf", asked, "q4_k_m")
    quantize_gguf(zoo / "wide96-f16.gguf", offered, "iq4_nl")
    assert offered.stat().st_size < asked.stat().st_size  # the offer is what it claims: smaller
    assert plan.expected_bits_per_weight > GGUF_LEVELS["q4_k_m"].nominal_bits + 0.5  # the fallbacks are counted
    # A model whose widths fit says nothing of the kind.
    clean = _plan(zoo, "gqa4", level="q8_0")
    assert not any("fall back" in n for n in clean.notes) and clean.alternative is None


def test_rows_no_block_fits_stay_f16_and_the_tied_output_follows_the_output_rules(zoo):
    shapes = read_shapes(zoo / "tied80-f16.gguf", "gguf")
    mix = predict_mix(float_gguf(shapes, zoo / "tied80-f16.gguf"), shapes, "q4_k_m")
    by_name = {t.name: t for t in mix.tensors}
    assert "output.weight" not in by_name  # tied: the token embedding is the output
    # The output's rule (Q8_0 when its width is no multiple of Q4_K's 256), then the shape rule: 80 columns fit
    # no quantized block, so llama.cpp keeps F16, as for every other matrix here.
    assert (by_name["token_embd.weight"].wanted, by_name["token_embd.weight"].type) == ("Q8_0", "F16")
    assert by_name["blk.0.attn_q.weight"].type == "F16"
    assert all(t.columns % GGML_SIZES[t.type][0] == 0 for t in mix.tensors)


def test_gguf_header_reader_agrees_with_gguf_py(demo_dir):
    from gguf import GGUFReader

    for name in ("demo-f16.gguf", "demo-q4_k_m.gguf"):
        ours, theirs = read_gguf_header(demo_dir / name), GGUFReader(str(demo_dir / name))
        assert ours.data_offset == theirs.data_offset
        assert [(t.name, t.shape, t.dtype) for t in ours.tensors] == \
            [(t.name, tuple(int(d) for d in reversed(t.shape)), t.tensor_type.name) for t in theirs.tensors]
        assert ours.metadata["general.architecture"] == "llama"


def test_block_table_is_ggmls():
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    assert {name: GGML_QUANT_SIZES[GGMLQuantizationType[name]] for name in GGML_SIZES} == GGML_SIZES


# -- GPTQ: group size against every width -------------------------------------------------------------------------
def test_gptq_plan_is_refused_naming_the_tensor_and_offers_the_group_size_that_works(zoo):
    refused = _plan(zoo, "wide96", method="gptq", bits=4)
    assert not refused.runnable and refused.group_size == 128
    (problem,) = refused.problems
    assert "input columns, not a multiple of group size 128" in problem and "model.layers." in problem
    assert "quantize wide96 to gptq 4bit with group size 32" in problem and refused.alternative == "with group size 32"
    assert not _plan(zoo, "wide96", method="gptq", bits=4, group_size=64).runnable  # 96 is no multiple of 64
    works = _plan(zoo, "wide96", method="gptq", bits=4, group_size=32, name=None)
    assert works.runnable, works.problems
    assert works.group_size == 32 and works.output_name == "wide96-gptq-4bit-g32"
    assert "group size 32" in works.steps[0]
    # 8-bit GPTQ is served by a dequantizing kernel: any width, a partial last group too.
    assert _plan(zoo, "wide96", method="gptq", bits=8).runnable
    odd = _plan(zoo, "wide96", method="gptq", bits=4, group_size=100)
    assert not odd.runnable and "cannot use group size 100" in odd.problems[0]
    # 80 columns: no offered group size divides them.
    none_fits = _plan(zoo, "tied80", method="gptq", bits=4)
    assert not none_fits.runnable and "use gptq 8bit, gguf or bnb" in none_fits.problems[0]
    assert none_fits.alternative is None


def test_gptq_rules_hold_the_cpu_kernels_limits():
    def linear(out_f: int, in_f: int) -> ModelShapes:
        tensors = (Tensor("model.embed_tokens.weight", (2048, in_f), "F16"),
                   Tensor("model.layers.0.self_attn.k_proj.weight", (out_f, in_f), "F16"),
                   Tensor("model.layers.0.input_layernorm.weight", (in_f,), "F16"))
        return ModelShapes("hf", tensors, "LlamaForCausalLM", "llama", 1, 4, 1, 0)

    assert gptq_problems(linear(64, 576), 4, 64) == []
    assert "576 input columns" in str(gptq_problems(linear(64, 576), 4, 128)[0])
    assert "24 output rows, not a multiple of 16" in str(gptq_problems(linear(24, 96), 4, 32)[0])
    assert gptq_problems(linear(24, 96), 8, 64) == []  # 8-bit: no width rule
    assert "group size 16" in str(gptq_problems(linear(64, 576), 4, 16)[0])  # torch's int4 kernel: 32..256


def test_demo_gptq_plan_is_unchanged_and_sized(demo_dir):
    plan = _plan(demo_dir, "demo-hf", method="gptq", bits=4, name="x")
    assert plan.runnable and plan.group_size == 128
    measured = json.loads((demo_dir / "demo-gptq-4bit" / "lqmf.json").read_text())["size_bytes"]
    assert abs(plan.expected_size_bytes / measured - 1) < 0.05


@pytest.mark.parametrize("line, size", [
    ("quantize demo-hf to 4-bit gptq with group size 64", 64),
    ("quantize demo-hf gptq 4bit g32", 32),
    ("quantize demo-hf with gptq --group-size 256 -y", 256),
    ("quantize demo-hf gptq group_size=64 as demo-g64", 64),
    ("quantize demo-hf to 4-bit gptq", None),
])
def test_group_size_is_parsed(line, size):
    from agents.decision_agent import DecisionAgent, describe
    from agents.intents import Intent

    command = DecisionAgent(lambda: ["demo-hf", "demo-g64"]).parse(line)
    assert command.intent is Intent.QUANTIZE_MODEL and command.slots.model == "demo-hf"
    assert command.slots.group_size == size
    assert (f"with group size {size}" in describe(command)) == (size is not None)


def test_public_api_takes_a_group_size(zoo, tmp_path, monkeypatch):
    import lqmf

    models = tmp_path / "models"
    shutil.copytree(zoo / "wide96", models / "wide96")
    monkeypatch.setenv("LQMF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LQMF_MODELS_DIR", str(models))
    refused = lqmf.quantize("wide96", "gptq", bits=4)
    assert not refused.runnable and "with group size 32" in refused.problems[0]
    planned = lqmf.quantize("wide96", "gptq", bits=4, group_size=32)
    assert planned.runnable and planned.plan.group_size == 32 and planned.output == "wide96-gptq-4bit-g32"


# -- listings: what the files hold, not what the level is called ---------------------------------------------------
def test_list_and_show_give_measured_bits_per_weight(demo_dir):
    from rich.console import Console

    from agents.models.results import ModelList
    from cli.render import model_list

    records = discover(demo_dir)
    listing = ModelList(models_dir=str(demo_dir), models=records)
    q4 = next(m for m in listing.to_dict()["models"] if m["name"] == "demo-q4_k_m")
    measured = json.loads((demo_dir / "demo-q4_k_m.gguf.lqmf.json").read_text())["bits_per_weight"]
    assert q4["bits_per_weight"] == pytest.approx(measured) and q4["bits"] == 4
    console = Console(record=True, width=200)
    model_list(listing, console)
    text = console.export_text()
    assert "bits/weight" in text and f"{measured:.2f}" in text and "measured from the weight bytes" in text


# -- GPTQModel's output goes to the log -------------------------------------------------------------------------
@pytest.mark.slow
def test_gptq_output_goes_to_the_log_and_progress_to_the_caller(zoo, tmp_path):
    """A real GPTQ run through the library in a fresh process (as the shell's: GPTQModel decides at import whether
    to draw, and an earlier test of this session may have imported it): nothing of GPTQModel on stdout/stderr,
    its lines in the log, its layers as the caller's progress. CI=1, as in a CI run or an agent's session, where
    LogBar would stop drawing the progress bars the layers are read from."""
    models = tmp_path / "models"
    shutil.copytree(zoo / "wide96", models / "wide96")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "LOGBAR_FORCE_PROGRESS")}
    env.update(LQMF_HOME=str(tmp_path / "home"), LQMF_MODELS_DIR=str(models), CI="1")
    script = ("import json, lqmf\ncalls = []\n"
              "done = lqmf.quantize('wide96', 'gptq', bits=4, group_size=32).run(lambda *c: calls.append(c))\n"
              "open('calls.json', 'w').write(json.dumps({'calls': calls, 'level': done.manifest['level'], "
              "'verified': bool(done.manifest['details']['verified'])}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for line in ("GPT-QModel", "Quantizing layer", "INFO  ", "Kernel:"):
        assert line not in done.stdout and line not in done.stderr, line
    result = json.loads((tmp_path / "calls.json").read_text())
    assert result["level"] == "4bit-g32" and result["verified"]
    log = (tmp_path / "home" / "logs" / "gptqmodel" / "wide96-gptq-4bit-g32.log").read_text()
    assert "Quantizing layer" in log and "GPT-QModel" in log
    layers = [(d, t) for what, d, t in result["calls"] if what.endswith("layers)")]
    assert layers and layers[-1][1] == 2  # the model's two layers, followed as GPTQModel works


def test_refused_gptq_plan_in_the_shell(zoo, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(zoo / "wide96", models / "wide96")
    env = {**os.environ, "LQMF_HOME": str(tmp_path / "home"), "LQMF_MODELS_DIR": str(models), "TERM": "dumb",
           "NO_COLOR": "1", "COLUMNS": "400"}
    done = subprocess.run([sys.executable, "cli/api_cli.py", "-c", "quantize wide96 to 4-bit gptq"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    said = " ".join(done.stdout.split())
    assert "refused" in said and "not a multiple of group size 128" in said, done.stdout + done.stderr
    assert "with group size 32" in said and not (models / "wide96-gptq-4bit").exists()
