"""Factory faults, end to end through the shell's `-c`: a library that raises and an output llama.cpp refuses
are failed runs (the step, the library's words, the log file), never a traceback, and leave nothing on disk.
Every kept output was loaded once by the runtime that will serve it.

The broken sources are tiny random-weight models built here with transformers' own classes and the demo's
SentencePiece tokenizer (about 600 KB each, nothing downloaded).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.quantization.verify import VERIFY_STEP
from tests.test_factory import run_cli, runs

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")


def _tiny(kind: str, folder: Path, demo_hf: Path) -> Path:
    """A one-layer random model of `kind` (qwen2 | phi3) saved in f16, with the demo's tokenizer."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = dict(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                 pad_token_id=None)
    config_class, model_class = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "phi3": (Phi3Config, Phi3ForCausalLM)}[kind]
    model_class(config_class(**shape)).to(torch.float16).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy2(demo_hf / name, folder / name)
    return folder


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="module")
def broken(demo_dir, tmp_path_factory) -> Path:
    """Read-only sources the factory must fail on, one folder each."""
    root = tmp_path_factory.mktemp("broken-sources")
    # GPTQModel builds a Qwen2 whose padding index is outside the embedding when pad_token_id is null:
    # torch's nn.Embedding raises AssertionError inside transformers, under GPTQModel.load.
    _tiny("qwen2", root / "qwen2-null-pad", demo_dir / "demo-hf")
    # A Phi-3 long-context RoPE whose factor lists do not match the head size: llama.cpp's converter refuses it.
    rope = _tiny("phi3", root / "phi3-bad-rope", demo_dir / "demo-hf")
    _edit_config(rope, original_max_position_embeddings=64, rope_parameters={
        "rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
        "original_max_position_embeddings": 64, "long_factor": [1.0] * 3, "short_factor": [1.0] * 3})
    # Phi-3 with a llama-style SentencePiece tokenizer: it converts and quantizes, but llama.cpp's Phi-3
    # vocabulary loader cannot read it (the bug: the run used to report success).
    _tiny("phi3", root / "phi3-llama-tokenizer", demo_dir / "demo-hf")
    return root


def _models_with(source: Path, target: Path) -> Path:
    target.mkdir()
    shutil.copytree(source, target / source.name)
    return target


def _assert_failed_cleanly(done, home: Path, models: Path, source: str, step: str, said: list[str]) -> None:
    """Exit 1 with a readable error; the run recorded failed with the step and the words; nothing left over."""
    shown = done.stdout + done.stderr
    flat = " ".join(done.stdout.split())
    assert done.returncode == 1, shown
    assert "Traceback" not in shown and 'File "' not in shown, shown
    assert "error:" in flat and "unexpected" not in flat, flat
    log_path = home / "logs" / "lqmf.log"
    assert step in flat and all(words in flat for words in said) and str(log_path) in flat, flat
    (run,) = runs(home)
    assert run["status"] == "failed" and run["manifest"] is None and run["finished_at"]
    assert step in run["error"] and all(words in run["error"] for words in said) and str(log_path) in run["error"]
    # No output, no hidden temporary, no manifest, no importance matrix: only the source is there.
    assert sorted(p.name for p in models.iterdir()) == [source]
    log_text = log_path.read_text()
    assert "Traceback (most recent call last)" in log_text and said[-1] in log_text


@pytest.mark.parametrize("source, line, step, said", [
    # Group size 64: the plan refuses the default 128 on these 64-wide rows before GPTQModel could fail.
    ("qwen2-null-pad", "quantize qwen2-null-pad to 4-bit gptq with group size 64", "quantize with GPTQModel",
     ["torch raised AssertionError inside gptqmodel", "Padding_idx must be within num_embeddings"]),
    ("phi3-bad-rope", "quantize phi3-bad-rope to 4-bit gguf", "convert the Hugging Face folder",
     ["llama.cpp's converter failed on phi3-bad-rope", "ValueError: The length of rope long and short factors"]),
], ids=["gptq", "gguf"])
def test_a_library_exception_is_a_failed_run(broken, home, tmp_path, source, line, step, said):
    models = _models_with(broken / source, tmp_path / "models")
    done = run_cli(["-c", line], home, models)
    _assert_failed_cleanly(done, home, models, source, step, said)


def test_a_gguf_llama_cpp_cannot_load_is_a_failed_run_with_its_reason(broken, home, tmp_path):
    models = _models_with(broken / "phi3-llama-tokenizer", tmp_path / "models")
    done = run_cli(["-c", "quantize phi3-llama-tokenizer to q8_0"], home, models)
    _assert_failed_cleanly(done, home, models, "phi3-llama-tokenizer", VERIFY_STEP,
                           ["llama.cpp cannot load phi3-llama-tokenizer-q8_0 (reading its vocabulary)",
                            "error loading model vocabulary"])


def test_kept_outputs_were_loaded_and_decoded_before_the_run_was_done(demo_dir, home, tmp_path):
    """A demo GGUF and a bitsandbytes folder pass the verify step, shown as the plan's last step."""
    from agents.quantization.factory import QuantizationAgent
    from agents.quantization.plan import QuantRequest
    from lqmf.base.settings import Settings
    from memory.store import Store
    from server.runtime.manager import ModelManager

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(demo_dir / "demo-hf", models / "demo-hf")
    settings = Settings(home=home, models_dir_override=models)
    manager, store = ModelManager(settings), Store(settings.db_path)
    try:
        agent = QuantizationAgent(settings, manager, store)
        for request, runtime in [(QuantRequest("demo-hf", level="q8_0", name="checked"), "llama.cpp"),
                                 (QuantRequest("demo-hf", level="int8", name="checked-int8"), "transformers (bnb)")]:
            seen: list[str] = []
            plan = agent.plan(request)
            assert plan.steps[-1] == VERIFY_STEP
            done = agent.run(plan, progress=lambda what, i, n, seen=seen: seen.append(what))
            assert seen[-2:] == [VERIFY_STEP, "done"]
            verified = done.manifest["details"]["verified"]
            assert verified["runtime"].startswith(runtime) and isinstance(verified["token"], int)
            assert verified["prompt_tokens"] >= 1
    finally:
        manager.close()
        store.close()
    assert [r["status"] for r in runs(home)] == ["done", "done"]
    assert sorted(p.name for p in models.iterdir()) == [
        "checked-int8", "checked.gguf", "checked.gguf.lqmf.json", "demo-hf"]
