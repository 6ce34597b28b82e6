"""Every demo format loads with its real library and decodes greedily, the same text twice."""

from __future__ import annotations

import math

import pytest

from tests.loaders import greedy_twice

FORMATS = [
    ("demo-f16.gguf", "gguf"),
    ("demo-q8_0.gguf", "gguf"),
    ("demo-q4_k_m.gguf", "gguf"),
    ("demo-gptq-4bit", "gptq"),
    ("demo-bnb-nf4", "bnb"),
    ("demo-bnb-int8", "bnb"),
    ("demo-hf", "hf"),
]


@pytest.mark.parametrize("name,fmt", FORMATS)
def test_loads_and_generates_deterministically(demo_dir, name, fmt):
    first, second = greedy_twice(demo_dir / name, fmt)
    assert first.strip(), f"{name} generated nothing"
    assert first == second


def test_demo_model_is_better_than_chance(demo_dir):
    """Held-out perplexity, measured again now, matches the manifest and is below vocab/2."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agents.demo.model import DemoSpec, heldout_perplexity
    from lqmf.base.corpus import load_corpus
    from lqmf.base.manifest import read_manifest

    spec = DemoSpec()
    path = demo_dir / "demo-hf"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = torch.tensor(tokenizer(load_corpus().heldout)["input_ids"])
    ppl = heldout_perplexity(model, ids, spec.train_seq_len)
    recorded = read_manifest(path)["details"]["training"]["heldout_perplexity"]
    assert math.isclose(ppl, recorded, rel_tol=1e-3)
    assert ppl < spec.vocab_size / 2
    assert tokenizer.vocab_size == spec.vocab_size


def test_demo_has_a_chat_template_with_single_token_markers(demo_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_dir / "demo-hf")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert len(tokenizer.encode("<|im_end|>", add_special_tokens=False)) == 1


def test_demo_matrices_are_k_quant_friendly(demo_dir):
    import json

    config = json.loads((demo_dir / "demo-hf" / "config.json").read_text())
    assert config["hidden_size"] % 256 == 0 and config["intermediate_size"] % 256 == 0
